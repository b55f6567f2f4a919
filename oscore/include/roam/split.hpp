// The deputy/body split on one machine (DESIGN.md "The split", first slice).
//
//   Split s(pid);            // pid: a running process, a child of the caller
//   kill(pid, SIGUSR1);              // a signal to the home pid: its handler
//                                    // runs in the body
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
// process home instead.
//
// Signals sent to the home pid (kill, sigqueue, ^C) are taken off the frozen
// deputy (which never runs a handler) and queued to the body with
// rt_tgsigqueueinfo; the agent finds them by PTRACE_PEEKSIGINFO before each
// notified call and every millisecond while idle (no kernel event exists for
// a signal queued to a task in a ptrace-stop). The body's handler sees the
// sender's si_pid, si_uid and si_value, but si_code SI_QUEUE where the
// sender's was SI_USER, SI_TKILL or a kernel code (the kernel accepts no
// other from another process). A default action happens in the body, and
// the deputy replays the death. SIGSTOP/SIGCONT stop and continue the body
// (a group stop of the body; the deputy stays in its ptrace-stop, so the
// home parent's waitpid(WUNTRACED) sees no stop). SIGKILL kills the deputy
// at once: the agent then kills the body and reports the deputy's status
// (SplitOutcome::deputy_status). Not yet: threads; a body blocked in a
// forwarded call (a read on a pipe) runs its handler only once the call
// completes (the notification wait is killable only), so SA_RESTART and
// EINTR semantics of such calls are not reproduced.
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
  unsigned signals_forwarded = 0;          // sent to the home pid, passed to the body
  int deputy_status = -1;  // when the deputy died on its own (SIGKILL): its wait status
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
