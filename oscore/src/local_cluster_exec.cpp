// exec(): run a command inside a node, as a shell runs a foreground job.
//
// Joining: the caller's own namespaces never change. It points its
// pid_for_children at the node (setns with the init's pidfd and CLONE_NEWPID),
// forks, and sets pid_for_children back; the child, already a process of the
// node's PID namespace, joins the node's cgroups and then, through the same
// pidfd, every other namespace of the init at once (mount, UTS, IPC, net,
// time, cgroup) and execs the command. The pidfd makes all of this refer to
// exactly the recorded init, never to a process that reused its PID.
//
// Terminal and signals (the choice the design asked to document):
//  - stdin is a terminal and we are its foreground job: the command becomes a
//    process group of its own and the terminal's foreground group, as a job
//    control shell would make it. ^C and ^\ reach only the command; an
//    interactive shell run in the node gets working job control. When the
//    command stops (^Z), we take the terminal back and stop ourselves, so the
//    calling shell sees its job stop; on `fg` we hand the terminal back and
//    continue the command.
//  - otherwise: the command stays in our process group (a signal to the group,
//    as from `timeout` or a test harness, reaches both of us), and we ignore
//    SIGINT and SIGQUIT while waiting, as system(3) does.
// In both cases SIGTERM and SIGHUP sent to us are passed on to the command.
// The exit status is the command's, or 128+N when signal N killed it.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "local_cluster_detail.hpp"
#include "roam/error.hpp"
#include "roam/local_cluster.hpp"

extern char** environ;

namespace roam::cluster {
namespace {
using namespace detail;

constexpr int kJoinedNamespaces =
    CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWTIME | CLONE_NEWCGROUP;

volatile sig_atomic_t g_command_pid = 0;

void forward_signal(int sig) {
  if (g_command_pid > 0) ::kill(g_command_pid, sig);
}

// tcsetpgrp from a background process group raises SIGTTOU unless blocked.
void give_terminal(pid_t pgrp) {
  sigset_t ttou, old;
  sigemptyset(&ttou);
  sigaddset(&ttou, SIGTTOU);
  ::sigprocmask(SIG_BLOCK, &ttou, &old);
  ::tcsetpgrp(STDIN_FILENO, pgrp);
  ::sigprocmask(SIG_SETMASK, &old, nullptr);
}

// Saved dispositions, put back when exec() returns.
class SignalScope {
 public:
  void set(int sig, void (*handler)(int)) {
    struct sigaction sa {};
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    struct sigaction old {};
    if (::sigaction(sig, &sa, &old) == 0) saved_.push_back({sig, old});
  }
  ~SignalScope() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) ::sigaction(it->first, &it->second, nullptr);
  }

 private:
  std::vector<std::pair<int, struct sigaction>> saved_;
};

[[noreturn]] void run_in_node(int node, int pidfd, const std::vector<int>& cgroup_procs, bool foreground,
                              const std::string& cwd, char* const* argv, char* const* envp) {
  if (foreground) {
    ::setpgid(0, 0);
    give_terminal(::getpgrp());
  }
  // Cgroups first: once in the node's cgroup namespace a move could be refused.
  for (int fd : cgroup_procs)
    if (::write(fd, "0", 1) < 0) {
      std::fprintf(stderr, "mosctl: cannot join %s's cgroup: %s\n", node_name(node).c_str(), std::strerror(errno));
      ::_exit(126);
    }
  if (::setns(pidfd, kJoinedNamespaces) < 0) {
    std::fprintf(stderr, "mosctl: cannot enter %s's namespaces: %s\n", node_name(node).c_str(), std::strerror(errno));
    ::_exit(126);
  }
  // Same working directory when the node has that path, else its root.
  if (cwd.empty() || ::chdir(cwd.c_str()) < 0) {
    if (::chdir("/") < 0) {
    }
  }
  ::execvpe(argv[0], argv, envp);
  int err = errno;
  std::fprintf(stderr, "mosctl: cannot run %s in %s: %s\n", argv[0], node_name(node).c_str(), std::strerror(err));
  ::_exit(err == ENOENT ? 127 : 126);
}

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 255;
}

}  // namespace

int exec(const fs::path& dir_in, int node, const std::vector<std::string>& args) {
  if (args.empty()) throw UserError("no command given to run in the node (mosctl cluster exec NODE -- CMD ARGS...)");
  fs::path dir = fs::absolute(dir_in).lexically_normal();
  State st = load_state_or_fail(dir);
  const NodeRecord& rec = node_or_fail(st, node);
  FileDesc pidfd = open_pidfd(rec.init);
  if (!pidfd)
    throw UserError(fmt::format("{} is down: its init (pid {}) has exited; run 'mosctl cluster down', then up again",
                                node_name(node), rec.init.pid));

  std::vector<FileDesc> cgroup_files;
  for (const fs::path& cg : st.node_cgroups(node)) {
    FileDesc fd(::open((cg / "cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd) throw SysError(fmt::format("open {}", (cg / "cgroup.procs").string()), errno);
    cgroup_files.push_back(std::move(fd));
  }
  std::vector<int> cgroup_procs;
  for (const auto& f : cgroup_files) cgroup_procs.push_back(f.get());

  // Everything the child needs is built before the fork.
  std::vector<std::string> args_copy = args;
  std::vector<char*> argv;
  for (auto& a : args_copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::string node_var = fmt::format("{}={}", kNodeEnv, node);
  std::vector<std::string> env_copy;
  for (char** e = environ; *e; ++e)
    if (std::strncmp(*e, kNodeEnv, std::strlen(kNodeEnv)) != 0 || (*e)[std::strlen(kNodeEnv)] != '=')
      env_copy.emplace_back(*e);
  env_copy.push_back(node_var);
  std::vector<char*> envp;
  for (auto& e : env_copy) envp.push_back(e.data());
  envp.push_back(nullptr);
  char cwd_buf[PATH_MAX];
  std::string cwd = ::getcwd(cwd_buf, sizeof cwd_buf) ? cwd_buf : "";
  bool foreground = ::isatty(STDIN_FILENO) && ::tcgetpgrp(STDIN_FILENO) == ::getpgrp();

  FileDesc own_pid_ns(::open("/proc/self/ns/pid_for_children", O_RDONLY | O_CLOEXEC));
  if (!own_pid_ns) throw SysError("open /proc/self/ns/pid_for_children", errno);
  if (::setns(pidfd.get(), CLONE_NEWPID) < 0) throw SysError(fmt::format("setns into {}'s PID namespace", node_name(node)), errno);
  pid_t child = ::fork();
  int fork_errno = errno;
  if (child == 0) run_in_node(node, pidfd.get(), cgroup_procs, foreground, cwd, argv.data(), envp.data());
  ROAM_ASSERT(::setns(own_pid_ns.get(), CLONE_NEWPID) == 0, std::strerror(errno));
  if (child < 0) throw SysError("fork", fork_errno);

  g_command_pid = child;
  SignalScope signals;
  signals.set(SIGTERM, forward_signal);
  signals.set(SIGHUP, forward_signal);
  if (foreground) {
    ::setpgid(child, child);  // also here: whichever of us runs first
    give_terminal(child);
  } else {
    signals.set(SIGINT, SIG_IGN);
    signals.set(SIGQUIT, SIG_IGN);
  }

  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(child, &status, foreground ? WUNTRACED : 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw SysError("waitpid", errno);
    }
    if (!WIFSTOPPED(status)) break;
    give_terminal(::getpgrp());
    ::kill(::getpid(), SIGSTOP);
    // Continued: by `fg` (we own the terminal again) or by `bg`.
    if (::tcgetpgrp(STDIN_FILENO) == ::getpgrp()) give_terminal(child);
    ::kill(child, SIGCONT);
  }
  g_command_pid = 0;
  if (foreground) give_terminal(::getpgrp());
  return exit_code(status);
}

}  // namespace roam::cluster
