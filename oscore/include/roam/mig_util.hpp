// Small pieces both migration agents (and the one-machine split) use.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "roam/fd.hpp"

namespace roam::mig {

// A process's identity as /proc/PID/status shows it.
struct Identity {
  pid_t ppid = -1;
  long uid = -1, euid = -1, gid = -1, egid = -1;
};
Identity identity_of(pid_t pid);

FileDesc pidfd_of(pid_t pid);
// The system call's name from the table, or "unknown".
const char* syscall_name(int nr);
// /proc/PID/fd entries, sorted.
std::vector<std::string> list_fds(pid_t pid);
// [begin, end) of the process's [vdso].
struct Range {
  uint64_t begin = 0, end = 0;
};
Range vdso_of(pid_t pid);
// VmRSS in KiB, -1 if unreadable.
long rss_kib(pid_t pid);
// SigBlk, SigIgn, SigCgt of /proc/PID/status (bit N-1 = signal N).
struct SignalSets {
  uint64_t blocked = 0, ignored = 0, caught = 0;
};
SignalSets signal_sets(pid_t pid);
int64_t clock_ns(clockid_t clock);

}  // namespace roam::mig
