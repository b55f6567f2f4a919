// Internal steps of restore_into (restore.hpp), one file each.
#pragma once

#include <span>

#include <cstdint>
#include <vector>

#include "roam/image.hpp"
#include "roam/ptrace.hpp"
#include "roam/remote_syscall.hpp"

namespace roam::restore::detail {

struct Range {
  uint64_t start = 0;
  uint64_t end = 0;
  uint64_t size() const { return end - start; }
};

// What clear_stub leaves: an address space holding only the kernel's pieces
// (vDSO, vvar, vvar_vclock, already at the image's addresses) and a scratch
// mapping the stub's rsp points into, so ScratchMem works before the image's
// own stack exists and never lands on the image's memory.
struct Layout {
  ptrace::RemotePtr<void> insn;  // a syscall instruction in the moved [vdso]
  Range scratch;
};

// restore_layout.cpp: unregisters the stub's inherited rseq, unmaps all its
// own regions, maps the scratch, moves the vDSO pieces to the image's
// addresses (RestoreError when their sizes differ).
Layout clear_stub(ptrace::Tracee& stub, const image::ProcessImage& image);

// restore_regions.cpp: maps every region of the image at its address with
// its final protection (private files from the same file when it matches,
// otherwise anonymous), then writes the page contents.
// With `already` (the regions a prepare() mapped): those the image has
// unchanged stay, stale ones are unmapped, new ones mapped. Regions starting
// at `sent_whole` map files that differ here (differing_files): anonymous
// memory, their contents come with the image; any other differing file is
// a RestoreError.
void map_regions(ptrace::RemoteSyscalls& rs, const image::ProcessImage& image, Range scratch,
                 const std::vector<image::Vma>* already = nullptr, const std::vector<uint64_t>* sent_whole = nullptr);
// Faults in (MADV_POPULATE_WRITE) the writable private anonymous pages the
// image carries (and those of regions `sent_whole`), gaps under 64 KiB
// bridged; returns the bytes populated. Stops quietly where the kernel
// refuses: it only saves time.
uint64_t populate(ptrace::RemoteSyscalls& rs, const image::ProcessImage& image, const std::vector<uint64_t>& sent_whole = {});
uint64_t write_pages(ptrace::RemoteSyscalls& rs, const image::ProcessImage& image);
// The advice each region carries in its VmFlags (MADV_DONTFORK, WIPEONFORK,
// DONTDUMP, HUGEPAGE, NOHUGEPAGE, SEQUENTIAL, RANDOM, MERGEABLE; mlock and
// mlock2(MLOCK_ONFAULT)), applied once the contents are in. What this
// kernel refuses (KSM or THP not built in) is logged and left out.
void set_advice(ptrace::RemoteSyscalls& rs, const image::ProcessImage& image);
// mlockall(MCL_FUTURE[|MCL_ONFAULT]) as the image says, where the process
// may lock as much as it could where it was captured (called by set_advice).
void set_mlockall_future(ptrace::RemoteSyscalls& rs, const image::ProcessImage& image);
// One run of page contents at `addr` (whole pages inside the image's regions).
void write_run(ptrace::RemoteSyscalls& rs, const image::ProcessImage& image, uint64_t addr,
               std::span<const std::byte> bytes);

// restore_state.cpp: kernel-held state. set_rlimits works from outside;
// the others inject.
void set_rlimits(pid_t pid, const image::ProcessImage& image);
void set_mm_map(ptrace::RemoteSyscalls& rs, const image::ProcessImage& image);
void set_sigactions(ptrace::RemoteSyscalls& rs, const image::ProcessImage& image);
void set_task_state(ptrace::RemoteSyscalls& rs, const image::ProcessImage& image);
void set_timers(ptrace::RemoteSyscalls& rs, const image::ProcessImage& image);
void register_rseq(ptrace::Tracee& stub, ptrace::RemotePtr<void> insn, const image::ProcessImage& image);
void set_registers(ptrace::Tracee& stub, const image::ProcessImage& image);

}  // namespace roam::restore::detail
