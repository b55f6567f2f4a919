#include "roam/home/placements.hpp"

#include <set>

namespace roam::home {

const placement::Placement& Placements::of_job(uint64_t job) const {
  static const placement::Placement defaults;
  auto it = jobs_.find(job);
  return it == jobs_.end() ? defaults : it->second;
}

placement::Reason Placements::reason(uint64_t job, pid_t pid, bool away) const {
  using placement::Why;
  if (away) {
    auto it = moves_.find(pid);
    return it == moves_.end() ? placement::Reason{Why::user, {}} : it->second;
  }
  if (of_job(job).mobility != placement::Mobility::may_move) return {Why::pinned, {}};
  return {Why::home, {}};
}

placement::Reason Placements::take_reason(pid_t pid, uint32_t node, placement::Reason asked) {
  auto it = starts_.find(pid);
  if (it == starts_.end()) return asked;
  auto [start_node, why] = std::move(it->second);
  starts_.erase(it);
  return start_node == node ? why : asked;
}

void Placements::retain(const std::vector<JobProcess>& alive) {
  std::set<uint64_t> jobs;
  std::set<pid_t> pids;
  for (const auto& p : alive) {
    jobs.insert(p.job);
    pids.insert(p.pid);
  }
  std::erase_if(jobs_, [&](const auto& kv) { return !jobs.contains(kv.first); });
  std::erase_if(moves_, [&](const auto& kv) { return !pids.contains(kv.first); });
  std::erase_if(starts_, [&](const auto& kv) { return !pids.contains(kv.first); });
}

}  // namespace roam::home
