// Capture: freeze a process with ptrace and fill a complete ProcessImage,
// the part /proc shows (capture_from_proc) plus what only injection into the
// frozen process can read (registers, xstate, 64 sigactions, sigaltstack,
// brk, clear_child_tid, rseq), and the page contents restore needs.
//
// The process is left frozen in an interrupt-stop, held by the returned
// Frozen: the caller decides whether it dies (the migration committed) or
// carries on (the migration was abandoned; letting Frozen go detaches).
#pragma once

#include <sys/types.h>

#include <chrono>

#include "roam/image.hpp"
#include "roam/ptrace.hpp"

namespace roam::image {

struct CaptureTimes {
  std::chrono::microseconds proc{};      // capture_from_proc (maps, page map, file identities)
  std::chrono::microseconds injected{};  // fill_injected
  std::chrono::microseconds pages{};     // reading page contents
};

struct Frozen {
  ptrace::Tracee tracee;
  ProcessImage image;  // complete, with page contents in image.pages unless options.contents is off
  std::chrono::steady_clock::time_point frozen_at;  // when the interrupt-stop was reached
  CaptureTimes times;
};

// Seizes and interrupts `pid`, refuses (UserError) a process that is not
// migratable, then captures everything. Must be called from the thread that
// will later use the Tracee. On failure the process is detached and runs on.
Frozen capture(pid_t pid, const CaptureOptions& options = {});
// The same for a tracee the caller already holds in an interrupt-stop.
Frozen capture_stopped(ptrace::Tracee tracee, const CaptureOptions& options = {});

// Fills the injection-only fields of `image` (regs, sigactions, sigaltstack,
// mm.brk, clear_child_tid, rseq, robust_list when /proc could not, and the
// blocked mask as the thread will really run with it) from a tracee in an
// interrupt-stop. Puts everything it changed in the tracee back.
// `body_filter`: as CaptureOptions::body_filter.
void fill_injected(ptrace::Tracee& tracee, ProcessImage& image, bool body_filter = false);

// The runs whose contents an image must carry (runs_to_send, with the
// regions of deleted files, which a restore cannot open, sent whole, and so
// are those starting at `mismatched`: files the target has another version
// of, as its prepare found).
std::vector<PageRun> pages_to_send(const ProcessImage& image, std::span<const uint64_t> mismatched = {});
// The bytes of page contents the image carries: in image.pages, or, for an
// image captured without contents, those pages_to_send() names.
uint64_t content_bytes(const ProcessImage& image, std::span<const uint64_t> mismatched = {});
// Reads the contents pages_to_send() names into image.pages.
void fill_pages(pid_t pid, ProcessImage& image);

// SIGKILLs a frozen original and collects its death (the migration
// committed). Returns waitpid's status.
int kill_frozen(Frozen& frozen);

}  // namespace roam::image
