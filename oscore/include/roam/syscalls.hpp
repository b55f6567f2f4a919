// How a migrated process's system calls are served while its body runs on a
// remote node: run there (local), executed at home in the deputy (forward),
// answered by the remote agent (virtual), sent home with the whole process
// (home), decided from the arguments (inspect), or the end of the process
// (exit). The table itself is syscalls.def; everything here reads it.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace roam {

enum class Disposition : uint8_t {
  local,     // runs in the body, unchanged
  forward,   // executed at home in the deputy's context
  virtual_,  // answered by the remote agent from cached home values, no round trip
  home,      // the process goes home and runs it natively
  inspect,   // depends on the arguments: see decide()
  exit,      // ends the process; the deputy exits with the same status
};

// "local", "forward", "virtual", "home", "inspect", "exit" (the .def's words).
std::string_view to_string(Disposition how);

struct SyscallInfo {
  const char* name;    // as in the kernel's table: "read", "_sysctl"
  int nr;              // x86_64 number
  Disposition how;
  const char* family;  // documentation group: "file_io", "memory", "signal"...
};

// Every listed call, in ascending number order.
std::span<const SyscallInfo> all_syscalls();

// nullptr for a number that is not listed: negative, in a gap, newer than the
// table, or an x32 number (bit 30 set).
const SyscallInfo* syscall_info(int nr);

// The listed disposition; `home` for an unlisted number. May be `inspect`.
Disposition disposition_of(int nr);

// The number of a listed name, or -1.
int syscall_number(std::string_view name);

// The final disposition of one call with its six argument registers: never
// `inspect`. For a call that is not `inspect` this is disposition_of(nr).
// `self_pid` is the process's home PID (the PID the body holds in its own PID
// namespace); a PID argument of 0 always means the caller itself, and so does
// self_pid when it is non-zero. Calls naming the caller's other threads by tid
// are treated as naming another process (forward); the agent, which knows the
// tids, may serve them in the body instead.
Disposition decide(int nr, const uint64_t args[6], int64_t self_pid = 0);

// The listed numbers with exactly this disposition, ascending (for `inspect`:
// the calls whose arguments the filter must look at).
std::vector<int> numbers_with(Disposition how);

}  // namespace roam
