// spawn_stub: the empty process a restore fills (see restore.hpp).
#include <fcntl.h>
#include <linux/close_range.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <climits>

#include <fmt/format.h>

#include "roam/error.hpp"
#include "roam/fd.hpp"
#include "roam/restore.hpp"

namespace roam::restore {
namespace {

constexpr int kHighFd = 512;  // sources are parked above the targets, so dup2 never clobbers one

// Runs in the forked child: async-signal-safe calls only.
// `targets` holds the target fds sorted and `parked` one slot per fd, both
// sized before fork: nothing here may allocate.
[[noreturn]] void stub_main(const std::vector<std::pair<int, int>>& fds, const std::vector<int>& targets,
                            std::vector<int>& parked, int ready_fd) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  ready_fd = ::fcntl(ready_fd, F_DUPFD_CLOEXEC, kHighFd);  // out of the targets' way too
  if (ready_fd < 0) ::_exit(119);
  for (size_t i = 0; i < fds.size(); ++i) {
    parked[i] = ::fcntl(fds[i].first, F_DUPFD, kHighFd);
    if (parked[i] < 0) ::_exit(120);
  }
  for (size_t i = 0; i < fds.size(); ++i) {
    if (::dup2(parked[i], fds[i].second) < 0) ::_exit(121);
  }
  char ok = 1;
  if (::write(ready_fd, &ok, 1) != 1) ::_exit(122);
  // Close everything else, the ready pipe included: the parent sees EOF.
  unsigned next = 0;
  for (int t : targets) {
    if (static_cast<unsigned>(t) > next) ::syscall(SYS_close_range, next, static_cast<unsigned>(t) - 1, 0);
    next = static_cast<unsigned>(t) + 1;
  }
  ::syscall(SYS_close_range, next, UINT_MAX, 0);
  for (;;) ::pause();
}

}  // namespace

ptrace::Tracee spawn_stub(const StubOptions& options) {
  std::vector<int> targets;
  for (const auto& fd : options.fds) targets.push_back(fd.second);
  std::sort(targets.begin(), targets.end());
  std::vector<int> parked(options.fds.size());
  int p[2];
  check_sys(::pipe2(p, O_CLOEXEC), "pipe2 for the stub");
  FileDesc rd(p[0]), wr(p[1]);
  pid_t pid;
  if (options.set_tid > 0) {
    pid_t tid = options.set_tid;
    clone_args args{};
    args.exit_signal = SIGCHLD;
    args.set_tid = reinterpret_cast<uint64_t>(&tid);
    args.set_tid_size = 1;
    pid = static_cast<pid_t>(::syscall(SYS_clone3, &args, sizeof args));
    if (pid < 0) throw SysError(fmt::format("clone3 (stub with pid {})", tid), errno);
  } else {
    pid = ::fork();
    if (pid < 0) throw SysError("fork (stub)", errno);
  }
  if (pid == 0) stub_main(options.fds, targets, parked, wr.get());
  wr.reset();
  char ok = 0;
  ssize_t n;
  do n = ::read(rd.get(), &ok, 1);
  while (n < 0 && errno == EINTR);
  if (n != 1) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    throw SysError(fmt::format("stub {} failed to set up its fds (status {:#x})", pid, status), EIO);
  }
  char rest;
  do n = ::read(rd.get(), &rest, 1);  // EOF: the stub closed its fds
  while (n < 0 && errno == EINTR);
  ptrace::Tracee t = ptrace::Tracee::seize(pid, {ptrace::TraceOption::sysgood, ptrace::TraceOption::exit_kill});
  t.interrupt();
  return t;
}

}  // namespace roam::restore
