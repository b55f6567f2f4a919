// The deputy/body split on one machine (DESIGN.md "The split"): both
// migration agents (migration.hpp) in threads of the calling process,
// connected by a socketpair instead of a sealed TCP connection. The same code
// serves a move between nodes; this is how unit tests drive it.
//
//   Split s(pid);            // pid: a running process, a child of the caller
//   kill(pid, SIGUSR1);              // a signal to the home pid: its handler
//                                    // runs in the body
//   SplitOutcome o = s.wait();       // the body ended (the deputy replayed
//                                    // its death) or came home
//   waitpid(pid, ...)                // the parent sees the truth
//
// The home thread captures the process and keeps it frozen as the deputy
// (same pid, fds, cwd, credentials); the body thread restores a body in its
// own PID namespace (its pid there is the home pid) and time namespace, as
// nobody, with no descriptors, under the body seccomp filter, and serves its
// notifications. Calls the remote side cannot serve bring the process home,
// where it re-issues the call natively (SplitOutcome::went_home says why).
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace roam::split {

struct SplitSetup {
  pid_t deputy = -1;
  pid_t body = -1;                                // in the caller's PID namespace
  std::vector<std::string> body_fds_after_setup;  // /proc/BODY/fd once it runs
  long deputy_rss_kib = -1;                       // after its memory was released
};

struct SplitOutcome {
  int body_status = -1;   // waitpid's status for the body
  bool deputy_replayed = false;
  std::string error;      // empty when every notified call was served
  std::map<std::string, unsigned> served;  // notified calls by name
  std::vector<std::string> log;            // unusual events, one line each
  unsigned signals_forwarded = 0;          // sent to the home pid, passed to the body
  int deputy_status = -1;  // when the deputy died on its own (SIGKILL): its wait status
  std::string went_home;   // non-empty: the process came home, and why; it runs there now
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
  // Asks the body to come home (as `migrate PID home` does).
  void bring_home();
  // Waits until the body has ended and its death was replayed by the
  // deputy, or it came home.
  SplitOutcome wait();

 private:
  std::unique_ptr<SplitAgent> agent_;
  SplitSetup setup_;
};

}  // namespace roam::split
