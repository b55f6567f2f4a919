// What a process has used (CPU time, faults, context switches, peak RSS),
// read from /proc for any process, so that a moved process's own usage
// calls (getrusage, times, its CPU-time clocks) answer with what it used at
// home before it moved plus what its body used since.
#pragma once

#include <sys/resource.h>
#include <sys/times.h>
#include <sys/types.h>

#include <cstdint>
#include <optional>

namespace roam {

struct CpuUsage {
  uint64_t user_ns = 0, sys_ns = 0;              // the process's own
  uint64_t child_user_ns = 0, child_sys_ns = 0;  // of the children it reaped
  uint64_t minflt = 0, majflt = 0;
  uint64_t nvcsw = 0, nivcsw = 0;
  uint64_t maxrss_kib = 0;  // peak resident size

  uint64_t cpu_ns() const { return user_ns + sys_ns; }
  // Sums everything but the peak, which is the larger of the two.
  CpuUsage& operator+=(const CpuUsage& o);
};

// What `total` counts beyond `part` (each field at least 0; the peak is
// total's when it is higher, else 0).
CpuUsage beyond(const CpuUsage& total, const CpuUsage& part);

// The usage of process `pid` now (all its threads), or nullopt when it is
// gone. The CPU total comes from the process's CPU clock (ns); it is split
// into user and system time in the proportion of the tick counts in
// /proc/PID/stat, as the kernel's getrusage does, so user + system is the
// clock exactly.
std::optional<CpuUsage> usage_of(pid_t pid);

// The process's CPU clock (all its threads, ns), or nullopt when it is gone:
// one clock_gettime, for answers that need no more than that.
std::optional<uint64_t> cpu_clock_ns(pid_t pid);

// How long the process (its main thread) has run or waited to run, in ns
// (/proc/PID/schedstat); 0 when it is gone. A CPU-bound process's grows as
// fast as the wall clock however many share its CPU: the policies' demand.
uint64_t run_wait_ns(pid_t pid);

// As getrusage(2) fills it: RUSAGE_SELF (children = false) or
// RUSAGE_CHILDREN (true; only the CPU times are known here).
rusage to_rusage(const CpuUsage& u, bool children);
// As times(2) fills it, in clock ticks.
tms to_tms(const CpuUsage& u);

}  // namespace roam
