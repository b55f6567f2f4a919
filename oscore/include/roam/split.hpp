// The deputy/body split on one machine (DESIGN.md "The split", first slice).
//
//   Split s(pid);            // pid: a running process, a child of the caller
//   kill(s.setup().body, SIGUSR1);   // signals to the home pid are not yet
//                                    // forwarded: reach the body directly
//   SplitOutcome o = s.wait();       // the body ended; the deputy replayed it
//   waitpid(pid, ...)                // the parent sees the body's status
//
// A thread of the caller (the agent) captures the process and leaves it
// frozen as the deputy (same pid, fds, cwd, credentials), restores a body
// into a stub that owns no file descriptors, installs the body seccomp filter
// in it by injection, takes the listener with pidfd_getfd and closes it in
// the body, resumes the body and serves its notified calls:
//   - calls on existing descriptors (read, write, pread64, pwrite64, lseek,
//     fstat, newfstatat with AT_EMPTY_PATH) run in the agent on its own
//     pidfd_getfd copies of the deputy's descriptors;
//   - calls that change the deputy's fd table or read paths (openat, close,
//     dup, dup2, dup3, newfstatat on a path) are injected into the deputy;
//   - getpid/gettid/getppid/get[e]uid/get[e]gid answer as the deputy would;
//   - exit and exit_group run in the body; when it is gone the deputy ends
//     the same way (exit_group(code), or the same signal).
// Anything else (home, unknown, forwarded calls not listed above) kills body
// and deputy and is reported in SplitOutcome::error; the real design takes the
// process home instead. Not yet: signals sent to the home pid (the deputy
// holds them), threads, a blocked forwarded read interrupted by a signal.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace roam::split {

struct SplitSetup {
  pid_t deputy = -1;
  pid_t body = -1;
  std::vector<std::string> body_fds_with_listener;  // /proc/BODY/fd right after seccomp()
  std::vector<std::string> body_fds_after_setup;    // once the listener was taken and closed
  bool sync_wake_up = false;                        // SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP took
};

struct SplitOutcome {
  int body_status = -1;   // waitpid's status for the body
  bool deputy_replayed = false;
  std::string error;      // empty when every notified call was served
  std::map<std::string, unsigned> served;  // notified calls by name
  std::vector<std::string> log;            // unusual events, one line each
};

class SplitAgent;

class Split {
 public:
  // Returns once the body runs. Until wait() returns, nothing in the calling
  // process may wait for the original (waitpid(-1) included): the agent
  // thread traces the deputy, and another thread's wait could take its
  // ptrace stops. Throws what capture or restore threw (the
  // original then runs on untouched) or SysError.
  explicit Split(pid_t original);
  // Kills the body (and so the deputy) if it still runs, then joins.
  ~Split();
  Split(const Split&) = delete;
  Split& operator=(const Split&) = delete;

  const SplitSetup& setup() const noexcept { return setup_; }
  // Waits until the body has ended and its death was replayed by the deputy.
  SplitOutcome wait();

 private:
  std::unique_ptr<SplitAgent> agent_;
  SplitSetup setup_;
};

}  // namespace roam::split
