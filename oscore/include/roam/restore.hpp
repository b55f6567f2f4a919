// Restore: recreate a captured process inside a fresh stub process by ptrace
// system-call injection alone (DESIGN.md "The split"). The same code serves a
// stub on a remote node and, later, the deputy coming home.
//
//   Frozen f = capture(pid);          // capture.hpp
//   kill_frozen(f);                   // the migration commits
//   pid_t body = restore::restore(f.image, {.fds = {{out_fd, 1}}});
//
// Restored: the address space (regions at their exact addresses, private
// file mappings re-mapped from the same file when it matches, page
// contents), vDSO/vvar placement, PR_SET_MM_MAP fields and auxv, rlimits,
// 64 sigactions, blocked mask, sigaltstack, clear_child_tid, robust list,
// rseq, personality, umask, comm, no_new_privs, THP-disable, general
// registers (fs/gs base included) and xstate, with a system call interrupted
// at home re-issued (regs_for_restart). Not yet: pending signals, itimers
// and POSIX timers, VM flags set by madvise (DONTDUMP, HUGEPAGE...), the
// exe link (PR_SET_MM_MAP refuses exe_fd to the unprivileged), threads,
// identity (the body has its own pid; glibc's cached tid is the home one).
//
// File descriptors do not travel in the image. A stub is given its fd table
// by whoever spawns it (StubOptions::fds); on one machine a test hands it the
// original's pipes, which stands in for the deputy's forwarded I/O.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <span>
#include <stdexcept>
#include <utility>
#include <vector>

#include "roam/image.hpp"
#include "roam/ptrace.hpp"

namespace roam::restore {

// The image cannot be restored here (a vDSO of another size, a shared
// mapping, a file that is not the one the image names and no content for it).
class RestoreError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct StubOptions {
  // (fd in the caller, fd number in the stub); every other fd is closed.
  std::vector<std::pair<int, int>> fds;
  // Non-zero: the stub gets this pid in the PID namespace the calling
  // thread's children go to (clone3 with set_tid). The caller created that
  // namespace and its init; CAP_SYS_ADMIN (or CAP_CHECKPOINT_RESTORE) there.
  pid_t set_tid = 0;
};

// A forked child of the calling process that set up its fds and now waits
// in pause(), already seized and in an interrupt-stop. It dies when the
// tracer dies before resuming it (PTRACE_O_EXITKILL), and the body it
// becomes dies with the thread that spawned it (PR_SET_PDEATHSIG survives
// the restore): a body must never outlive its agent.
ptrace::Tracee spawn_stub(const StubOptions& options);

struct RestoreTimes {
  std::chrono::microseconds layout{};  // unmapping the stub, moving the vDSO
  std::chrono::microseconds mapping{};  // mapping the image's regions
  std::chrono::microseconds pages{};    // writing page contents
  std::chrono::microseconds state{};    // kernel-held state and registers
  uint64_t page_bytes = 0;
};

// Turns a seized stub (in an interrupt-stop, of the same architecture) into
// the process of `image`; it is left stopped with the image's registers,
// ready to resume (detach or resume()).
void restore_into(ptrace::Tracee& stub, const image::ProcessImage& image, RestoreTimes* times = nullptr);

// The next run of page contents (address, whole pages), or nothing once
// all came; the span stays valid until the next call. For a restore that
// writes pages as they arrive from the network.
using PageSource = std::function<std::optional<std::pair<uint64_t, std::span<const std::byte>>>()>;
// As above; after image.pages, the pages `more` yields are written too.
void restore_into(ptrace::Tracee& stub, const image::ProcessImage& image, const PageSource& more,
                  RestoreTimes* times = nullptr);

// A stub made ready for a process before the process is frozen, from a
// capture of it still running (`plan`): its address space laid out and the
// pages the plan carries faulted in (MADV_POPULATE_WRITE). Fresh pages are
// the dearest part of a restore (4 KiB faults run at ~2 GB/s on the dev VM,
// below loopback TCP), and this takes them out of the freeze: the
// restore_into that follows only copies. Regions that changed in between
// are mapped again there; everything else of the plan is discarded.
struct Prepared {
  std::vector<image::Vma> regions;  // as mapped, kernel pieces included
  uint64_t insn = 0;                // the syscall site in the moved [vdso]
  uint64_t scratch_start = 0, scratch_end = 0;
  uint64_t populated_bytes = 0;
  // differing_files(plan): mapped anonymous here; the sender sends their
  // contents whole (pages_to_send's `mismatched`) and restore_into writes
  // them there.
  std::vector<uint64_t> mismatched;
};
Prepared prepare(ptrace::Tracee& stub, const image::ProcessImage& plan);

// The private file regions of `image` (by start) whose file this node has
// another version of, or lacks: a process keeps the version it mapped, so
// their contents must travel whole and are restored as anonymous memory.
// (A shared read-only mapping of a differing file stays a RestoreError.)
std::vector<uint64_t> differing_files(const image::ProcessImage& image);

// restore_into a stub prepare() made ready. When the image's kernel pieces
// ([vdso], [vvar]) are not where the plan had them, it starts afresh.
void restore_into(ptrace::Tracee& stub, const image::ProcessImage& image, const PageSource& more,
                  const Prepared& prepared, RestoreTimes* times = nullptr);
// restore_into a fresh stub from an image whose sender sent the regions at
// `sent_whole` (differing_files) whole.
void restore_into(ptrace::Tracee& stub, const image::ProcessImage& image, const PageSource& more,
                  const std::vector<uint64_t>& sent_whole, RestoreTimes* times = nullptr);

// spawn_stub, restore_into, detach: the body runs. Returns its pid (a child
// of the calling process: wait for it as for any child).
pid_t restore(const image::ProcessImage& image, const StubOptions& options = {}, RestoreTimes* times = nullptr);

}  // namespace roam::restore
