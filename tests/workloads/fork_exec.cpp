// Workload: forks and execs children continuously (forking is allowed here).
//   fork_exec
// Every ~50 ms until SIGUSR1: forks a child that runs
// /bin/sh -c 'echo child $$' with stdout on a pipe; the parent reads the
// child's output, checks it is "child <pid>\n" where <pid> is the pid fork()
// returned (the shell is the child itself: exec keeps the pid), waitpid()s it
// and checks that it exited with status 0. After SIGUSR1: "PASS N children".
#include <fcntl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "workload.hpp"

namespace {

[[noreturn]] void failf(const char* fmt, long a, long b = 0) {
  char why[300];
  std::snprintf(why, sizeof why, fmt, a, b);
  roam::workload::fail(why);
}

}  // namespace

int main() {
  using namespace roam::workload;
  ready();
  long children = 0;
  while (!go()) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) failf("pipe2 failed: errno %ld", errno);
    std::fflush(stdout);
    pid_t pid = ::fork();
    if (pid < 0) failf("fork failed: errno %ld", errno);
    if (pid == 0) {
      if (::dup2(p[1], 1) < 0) _exit(126);  // dup2 clears O_CLOEXEC on fd 1
      ::execl("/bin/sh", "sh", "-c", "echo child $$", static_cast<char*>(nullptr));
      _exit(127);
    }
    ::close(p[1]);
    std::string out;
    char buf[256];
    for (;;) {
      ssize_t n = ::read(p[0], buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) failf("read from child %ld failed: errno %ld", pid, errno);
      if (n == 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    ::close(p[0]);
    int status = 0;
    pid_t w;
    do w = ::waitpid(pid, &status, 0);
    while (w < 0 && errno == EINTR);
    if (w != pid) failf("waitpid(%ld) returned %ld", pid, w);
    if (!WIFEXITED(status)) failf("child %ld did not exit normally (status 0x%lx)", pid, status);
    if (WEXITSTATUS(status) != 0) failf("child %ld exited with %ld", pid, WEXITSTATUS(status));
    if (out.rfind("child ", 0) != 0) {
      char why[300];
      std::snprintf(why, sizeof why, "child %ld wrote \"%.200s\"", static_cast<long>(pid), out.c_str());
      fail(why);
    }
    char expect[64];
    std::snprintf(expect, sizeof expect, "child %ld\n", static_cast<long>(pid));
    if (out != expect) {
      char why[300];
      std::snprintf(why, sizeof why, "child %ld wrote \"%.200s\" (pid differs from fork's)", static_cast<long>(pid),
                    out.c_str());
      fail(why);
    }
    ++children;
    timespec ts{0, 50'000'000};
    ::nanosleep(&ts, nullptr);
  }
  if (children == 0) fail("no child ran");
  std::printf("PASS %ld children\n", children);
  std::fflush(stdout);
  return 0;
}
