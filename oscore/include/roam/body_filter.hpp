// The seccomp filter a body runs under at the remote node, generated from the
// system-call table (syscalls.def): calls whose disposition is `local` are
// allowed in the kernel at full speed; everything else (forward, virtual,
// home, exit, inspect, unknown numbers, other ABIs) becomes a
// SECCOMP_RET_USER_NOTIF for the remote agent. Two exceptions are decided in
// the filter itself because they are frequent and cheap to check:
//   - anonymous private mmap (malloc's big blocks) is allowed;
//   - rt_sigaction is allowed unless it sets SIGCHLD's action (reading any
//     action, or setting another, is the body's own business);
//   - any call made from the agent's trampoline (an instruction-pointer
//     range) is allowed, so the agent can inject calls into the body.
#pragma once

#include <linux/filter.h>

#include <cstdint>
#include <vector>

#include "roam/fd.hpp"

namespace roam {

struct BodyFilterOptions {
  // Calls whose instruction pointer (the address after the syscall
  // instruction) lies in [trampoline_begin, trampoline_end) are allowed. Empty
  // range: no exception.
  uint64_t trampoline_begin = 0;
  uint64_t trampoline_end = 0;
};

// The BPF program. Local numbers are found by a balanced binary search over
// ranges of equal action, so a lookup costs O(log ranges) instructions.
std::vector<sock_filter> build_body_filter(const BodyFilterOptions& options);

// Installs it on the calling thread (sets no_new_privs first) and returns the
// notification listener. Flags: NEW_LISTENER | WAIT_KILLABLE_RECV where the
// kernel has it. Throws SysError.
FileDesc install_body_filter(const BodyFilterOptions& options);

// Runs the program on one call outside the kernel, for tests: returns the
// seccomp action (SECCOMP_RET_ALLOW, SECCOMP_RET_USER_NOTIF, ...).
uint32_t evaluate_body_filter(const std::vector<sock_filter>& program, uint32_t arch, int nr, uint64_t ip,
                              const uint64_t args[6]);

}  // namespace roam
