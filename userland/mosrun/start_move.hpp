// The move of a job that starts elsewhere (mosrun -r/-b): decided by mosd at
// registration, made right after PROG's exec. A helper outside the job (a
// double fork made before registering, so it is not in the job's cgroup and
// PROG never has a child it did not make) waits until the exec closes a
// close-on-exec pipe, then asks for the move as `migrate` would, and prints
// one line on stderr if the job could not go there (it then runs at home).
#pragma once

#include <sys/types.h>

#include <string>

#include "roam/fd.hpp"

namespace roam::mosrun {

class StartMove {
 public:
  // Forks the helper for process `job` (this process). Throws SysError.
  explicit StartMove(pid_t job);
  // Where to go once PROG runs ("" stays home). Call once, before the exec.
  void go_to(const std::string& target);
  // The exec failed: no move.
  void cancel();

 private:
  FileDesc to_helper_;
};

}  // namespace roam::mosrun
