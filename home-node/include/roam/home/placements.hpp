// The placement state of this node's jobs, kept by mosd and read by whoever
// decides moves (the `migrate` checks, mosrun's start, the policies): what
// each job asked for (mosrun flags, inherited by every process of the job),
// and why each moved process went where it is.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "roam/home/jobs.hpp"
#include "roam/placement.hpp"

namespace roam::home {

class Placements {
 public:
  void set_job(uint64_t job, placement::Placement p) { jobs_[job] = std::move(p); }
  // The job's placement (the defaults for a job registered without one).
  const placement::Placement& of_job(uint64_t job) const;

  // A move of `pid` was asked for this reason (by the user, mosrun's start,
  // or a policy); shown while the process is away.
  void moving(pid_t pid, placement::Reason r) { moves_[pid] = std::move(r); }
  // mosrun's start move (-r, -b, or a home that does not fit the job),
  // decided at registration and asked by mosrun right after exec: its
  // reason is kept for that move.
  void starting(pid_t pid, uint32_t node, placement::Reason r) { starts_[pid] = {node, std::move(r)}; }
  // The reason for a move of `pid` to `node` now asked: the start's when
  // this is the start move, else `asked`.
  placement::Reason take_reason(pid_t pid, uint32_t node, placement::Reason asked);
  // Why `pid` of `job` is where it is now.
  placement::Reason reason(uint64_t job, pid_t pid, bool away) const;

  // Forgets the jobs and processes that are not in `alive`.
  void retain(const std::vector<JobProcess>& alive);

 private:
  std::map<uint64_t, placement::Placement> jobs_;
  std::map<pid_t, placement::Reason> moves_;
  std::map<pid_t, std::pair<uint32_t, placement::Reason>> starts_;
};

}  // namespace roam::home
