// What a node measures about itself for the information service: runnable
// processes (normalized by CPUs and speed) and free memory, both as seen from
// inside this node (its PID namespace, its cpuset, its memory cgroup), so that
// the nodes of a local cluster on one machine each see their own share.
#pragma once

#include <cstdint>
#include <string>

namespace roam {

// Tasks (threads) in state R visible in this PID namespace's /proc, not
// counting the calling thread.
uint32_t count_runnable_tasks();

// CPUs this process may run on (its affinity mask, which follows the cpuset).
uint32_t usable_cpus();

struct MemoryInfo {
  uint64_t total = 0;  // bytes
  uint64_t free = 0;   // bytes available without swapping
};

// MemAvailable/MemTotal, narrowed by the memory limits of this process's
// cgroup and its ancestors (cgroup v2 memory.max, or v1 memory.limit_in_bytes).
MemoryInfo memory_info();

// Exponentially smoothed load in fixed point: 100 = one runnable task per CPU
// of reference speed (10000).
class LoadMeter {
 public:
  static constexpr double kAlpha = 0.25;
  LoadMeter(uint32_t speed, double alpha = kAlpha) : speed_(speed), alpha_(alpha) {}
  void sample(uint32_t runnable, uint32_t cpus);
  // The smoothing's time constant for samples every `sample_ms`: a step in
  // the runnable count shows 63% after it, 95% after three.
  static double time_constant_ms(uint32_t sample_ms, double alpha = kAlpha);
  uint32_t load() const;

 private:
  uint32_t speed_;
  double alpha_;
  double smoothed_ = 0;
  bool primed_ = false;
};

}  // namespace roam
