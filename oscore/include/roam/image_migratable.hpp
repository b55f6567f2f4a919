// Whether a process can be captured and moved away from its home, and if not
// the first reason why, as one line a user can act on. Everything refused
// here is something only the home node can serve: the process stays (and
// keeps running) at home.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "roam/image_maps.hpp"

namespace roam::image {

struct Migratability {
  bool ok = false;
  std::string reason;  // empty when ok; otherwise e.g. "has 3 threads"
  explicit operator bool() const { return ok; }
};

// `own_tracer`: a tracer PID that is ours (the capturing agent already
// attached) and so not a reason to refuse; 0 refuses any tracer.
// Never throws for a process that is gone: that is a reason too.
Migratability migratable(pid_t pid, pid_t own_tracer = 0);
// The same, judging the regions `vmas` (read_maps of the process) instead of
// reading them again: a capture reads smaps, which walks every page table,
// once.
Migratability migratable(pid_t pid, pid_t own_tracer, const std::vector<Vma>& vmas);

}  // namespace roam::image
