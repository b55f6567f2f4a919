// Job tracking at the home node: every `mosrun` job gets a cgroup (v2
// hierarchy, which needs no controllers) so that mosd knows every descendant
// of it without tracing forks. Layout under mosd's own cgroup BASE:
//   BASE/roam-mosd/          mosd itself (a leaf, so BASE may enable controllers)
//   BASE/roam-jobs/job-ID/   one per job; removed once empty
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace roam::home {

struct JobProcess {
  uint64_t job = 0;
  pid_t pid = 0;
  std::string command;  // argv joined by spaces (or [comm])
  uint64_t rss = 0;     // bytes
  char state = '?';     // /proc state letter
};

class JobTracker {
 public:
  // Finds the v2 hierarchy and mosd's cgroup; moves mosd into its leaf.
  // Throws UserError when no cgroup v2 hierarchy is mounted.
  JobTracker();
  const std::filesystem::path& jobs_dir() const { return jobs_dir_; }

  // Puts pid into a new job cgroup; returns the job id. Throws SysError.
  uint64_t add(pid_t pid);
  std::vector<JobProcess> processes() const;
  // How many processes the jobs hold (cgroup.procs only: cheap enough for
  // every load sample).
  size_t count() const;
  // Removes job cgroups that no process uses any more; returns how many.
  size_t sweep();

 private:
  std::filesystem::path jobs_dir_;
  uint64_t next_id_ = 1;
};

// The mount point of the cgroup v2 hierarchy (/sys/fs/cgroup on pure v2,
// /sys/fs/cgroup/unified on hybrid hosts), or empty.
std::filesystem::path cgroup2_mount();
// This process's path in the v2 hierarchy ("/..."), from /proc/self/cgroup.
std::string own_cgroup2_path();

}  // namespace roam::home
