// Workload: puts itself in a seccomp sandbox, as a program hardening itself
// does (no_new_privs, then two filters, each allowing everything else):
//   1. getcwd fails with EACCES (SECCOMP_RET_ERRNO), its flags LOG;
//   2. getppid raises SIGSYS (SECCOMP_RET_TRAP), getitimer kills the process
//      (SECCOMP_RET_KILL_PROCESS: roam's capture calls getitimer in it).
// Argument "notify": a third filter hands getpriority to a supervisor
// (SECCOMP_RET_USER_NOTIF, listener kept, never called): roam refuses it.
// Checks the sandbox before READY and again after SIGUSR1.
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <initializer_list>
#include <utility>
#include <vector>

#include "workload.hpp"

namespace {

volatile sig_atomic_t g_sigsys = 0;
volatile sig_atomic_t g_sigsys_nr = -1;

void on_sigsys(int, siginfo_t* si, void*) {
  g_sigsys = g_sigsys + 1;
  g_sigsys_nr = si->si_syscall;
}

// A filter: on x86_64, each listed syscall gets its action; all else passes.
void install(std::initializer_list<std::pair<long, unsigned>> rules, unsigned flags = 0, int* listener = nullptr) {
  std::vector<sock_filter> f;
  f.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)));
  f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0));
  f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  f.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)));
  for (const auto& [nr, action] : rules) {
    f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<unsigned>(nr), 0, 1));
    f.push_back(BPF_STMT(BPF_RET | BPF_K, action));
  }
  f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  sock_fprog prog{static_cast<unsigned short>(f.size()), f.data()};
  long rc = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
  if (rc < 0) roam::workload::fail("seccomp(SECCOMP_SET_MODE_FILTER)");
  if (listener) *listener = static_cast<int>(rc);
}

void check_sandbox(const char* when) {
  char buf[4096];
  errno = 0;
  if (syscall(SYS_getcwd, buf, sizeof buf) != -1 || errno != EACCES) {
    char why[128];
    std::snprintf(why, sizeof why, "getcwd was not refused with EACCES %s", when);
    roam::workload::fail(why);
  }
  int before = g_sigsys;
  syscall(SYS_getppid);
  if (g_sigsys != before + 1 || g_sigsys_nr != SYS_getppid) {
    char why[128];
    std::snprintf(why, sizeof why, "getppid did not raise SIGSYS %s", when);
    roam::workload::fail(why);
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace roam::workload;
  struct sigaction sa {};
  sa.sa_sigaction = on_sigsys;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGSYS, &sa, nullptr) != 0) fail("sigaction(SIGSYS)");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail("prctl(PR_SET_NO_NEW_PRIVS)");
  install({{SYS_getcwd, SECCOMP_RET_ERRNO | EACCES}}, SECCOMP_FILTER_FLAG_LOG);
  install({{SYS_getppid, SECCOMP_RET_TRAP}, {SYS_getitimer, SECCOMP_RET_KILL_PROCESS}});
  int listener = -1;
  if (argc > 1 && std::strcmp(argv[1], "notify") == 0)
    install({{SYS_getpriority, SECCOMP_RET_USER_NOTIF}}, SECCOMP_FILTER_FLAG_NEW_LISTENER, &listener);
  check_sandbox("before any move");
  ready();
  while (!go()) usleep(10000);
  check_sandbox("at the end");
  pass();
}
