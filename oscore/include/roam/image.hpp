// The process image: everything a restore needs to recreate a process
// elsewhere, as one versioned schema (encoded by image_codec.hpp).
//
// Who fills what:
//   capture_from_proc() (this module, no ptrace, the process need not stop):
//     pid, comm, exe, personality, umask, mm fields but brk, auxv, vmas with
//     file identities (named and deleted files alike), page_map, signal masks (blocked, pending, ignored,
//     caught), robust_list (get_robust_list works from outside), rlimits
//     (prlimit), POSIX timer definitions (/proc/PID/timers), misc.
//   The injection module (ptrace, process frozen), into the optional fields:
//     regs (PTRACE_GETREGS: user_regs_struct incl. fs_base/gs_base) and xstate
//     (PTRACE_GETREGSET NT_X86_XSTATE); sigactions (rt_sigaction(sig, NULL,
//     &old) x 64); sigaltstack (sigaltstack(NULL, &old)); mm.brk (brk(0));
//     clear_child_tid (prctl PR_GET_TID_ADDRESS); rseq
//     (PTRACE_GET_RSEQ_CONFIGURATION); itimers (getitimer x 3: /proc shows
//     no itimer); each POSIX timer's time (timer_gettime(id)); pending
//     siginfo (PTRACE_PEEKSIGINFO, shared and private queues).
//   Page contents travel separately, streamed (image_codec.hpp); `pages`
//   holds them only for images kept whole in memory.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "roam/image_file.hpp"
#include "roam/image_maps.hpp"
#include "roam/image_pages.hpp"

namespace roam::image {

inline constexpr size_t kSignals = 64;  // _NSIG - 1: signal n is index n-1 / mask bit n-1

struct ImageVma {
  Vma vma;
  // For file and deleted_file regions: how the target checks its own copy
  // (content-based, so a deleted file still matches a target copy of the
  // same bytes).
  std::optional<FileIdentity> file;
  bool operator==(const ImageVma&) const = default;
};

struct AuxvEntry {
  uint64_t type = 0;
  uint64_t value = 0;
  bool operator==(const AuxvEntry&) const = default;
};

// What PR_SET_MM_MAP takes (besides exe_fd), from /proc/PID/stat fields
// 26-28 and 45-51 and /proc/PID/auxv.
struct MmFields {
  uint64_t start_code = 0, end_code = 0, start_data = 0, end_data = 0;
  uint64_t start_brk = 0, start_stack = 0;
  uint64_t arg_start = 0, arg_end = 0, env_start = 0, env_end = 0;
  std::optional<uint64_t> brk;  // injected: brk(0); /proc shows only start_brk
  std::vector<AuxvEntry> auxv;  // without the AT_NULL terminator
  bool operator==(const MmFields&) const = default;
};

struct SignalMasks {  // bit n-1 is signal n
  uint64_t blocked = 0;
  uint64_t pending_private = 0;  // SigPnd: queued to the thread
  uint64_t pending_shared = 0;   // ShdPnd: queued to the process
  uint64_t ignored = 0;          // SigIgn/SigCgt: a summary of the dispositions,
  uint64_t caught = 0;           // to check the injected sigactions against
  bool operator==(const SignalMasks&) const = default;
};

struct SigAction {  // the kernel's struct sigaction for rt_sigaction on x86_64
  uint64_t handler = 0;
  uint64_t flags = 0;
  uint64_t restorer = 0;
  uint64_t mask = 0;
  bool operator==(const SigAction&) const = default;
};

struct SigAltStack {
  uint64_t sp = 0;
  int32_t flags = 0;
  uint64_t size = 0;
  bool operator==(const SigAltStack&) const = default;
};

struct PendingSiginfo {  // one queued signal as PTRACE_PEEKSIGINFO returns it
  bool shared = false;
  std::vector<std::byte> siginfo;  // 128 bytes
  bool operator==(const PendingSiginfo&) const = default;
};

struct Registers {
  std::vector<std::byte> gp;      // struct user_regs_struct (216 bytes; fs_base, gs_base inside)
  std::vector<std::byte> xstate;  // NT_X86_XSTATE; its size depends on the CPU (2432 bytes on the probe host)
  bool operator==(const Registers&) const = default;
};

struct RobustList {
  uint64_t head = 0;
  uint64_t len = 0;
  bool operator==(const RobustList&) const = default;
};

struct Rseq {
  uint64_t addr = 0;
  uint32_t len = 0;
  uint32_t signature = 0;
  uint32_t flags = 0;
  bool operator==(const Rseq&) const = default;
};

struct Rlimit {
  uint32_t resource = 0;  // RLIMIT_*
  uint64_t cur = 0;       // RLIM_INFINITY is ~0
  uint64_t max = 0;
  bool operator==(const Rlimit&) const = default;
};

struct TimerValue {
  uint64_t interval_ns = 0;
  uint64_t value_ns = 0;  // time left; 0 when disarmed
  bool operator==(const TimerValue&) const = default;
};

enum ITimerWhich : size_t { kItimerReal = 0, kItimerVirtual = 1, kItimerProf = 2 };

struct PosixTimer {
  int32_t id = 0;
  int32_t clock = 0;          // CLOCK_*
  int32_t signo = 0;
  uint64_t sigev_value = 0;   // sival_ptr / sival_int
  int32_t sigev_notify = 0;   // SIGEV_SIGNAL / SIGEV_NONE / SIGEV_THREAD, | SIGEV_THREAD_ID
  int32_t notify_pid = 0;     // the thread or process it signals
  std::optional<TimerValue> time;  // injected: timer_gettime(id)
  bool operator==(const PosixTimer&) const = default;
};

struct MiscState {
  bool no_new_privs = false;
  bool thp_disabled = false;  // PR_SET_THP_DISABLE
  // mlockall()'s MCL_FUTURE and MCL_ONFAULT as the process set them (the
  // mm's default flags, which /proc does not show; fill_injected probes).
  uint32_t mlockall_future = 0;
  // CAP_IPC_LOCK was effective: the process locked beyond RLIMIT_MEMLOCK.
  bool ipc_lock = false;
  bool operator==(const MiscState&) const = default;
};

// A seccomp filter the program installed: classic BPF, each instruction
// packed as code | jt << 16 | jf << 24 | k << 32 (ptrace::SeccompProgram).
struct SeccompFilter {
  uint32_t flags = 0;  // SECCOMP_FILTER_FLAG_LOG, as installed
  std::vector<uint64_t> insns;
  bool operator==(const SeccompFilter&) const = default;
};

struct PageData {
  uint64_t addr = 0;
  std::vector<std::byte> bytes;  // whole pages
  bool operator==(const PageData&) const = default;
};

struct ProcessImage {
  int32_t pid = 0;  // at home; the body keeps answering with it
  std::string comm;
  std::string exe;  // readlink of /proc/PID/exe, as the home saw it
  uint32_t personality = 0;
  uint32_t umask = 0;  // status "Umask:" (Linux 4.7+), so no injection needed
  MmFields mm;
  std::vector<ImageVma> vmas;
  std::vector<PageRun> page_map;  // every non-absent page, sorted
  SignalMasks signals;
  std::optional<std::array<SigAction, kSignals>> sigactions;
  std::optional<SigAltStack> sigaltstack;
  std::optional<std::vector<PendingSiginfo>> pending_siginfo;
  std::optional<Registers> regs;
  std::optional<RobustList> robust_list;
  std::optional<Rseq> rseq;
  std::optional<uint64_t> clear_child_tid;
  std::vector<Rlimit> rlimits;
  std::optional<std::array<TimerValue, 3>> itimers;  // indexed by ITimerWhich
  std::vector<PosixTimer> posix_timers;
  MiscState misc;
  // The program's seccomp filters, the oldest first; a body installs them
  // over roam's own. Empty for a body's image (its only filter is roam's,
  // and the deputy at home kept the program's).
  std::vector<SeccompFilter> seccomp_filters;
  std::vector<PageData> pages;  // content carried in memory (small images, tests); usually streamed instead

  bool operator==(const ProcessImage&) const = default;
};

struct CaptureOptions {
  bool page_map = true;         // classify every region's pages
  bool file_identities = true;  // identify every mapped file (hashes files without a build id)
  ScanMethod scan = ScanMethod::automatic;
  // capture(): read the page contents into image.pages. Off, they stay in
  // the stopped process, for a sender that reads them as it sends
  // (pages_to_send, read_pages), so no copy of the whole image is made.
  bool contents = true;
  // The process runs under roam's body filter (a body going home): its
  // filters are roam's and copies of the program's, which the capture does
  // not read (the deputy at home kept the program's), and roam's lets
  // rt_sigaction reads through from anywhere (all_sigactions).
  bool body_filter = false;
};

// Everything /proc and a few ptrace-free calls (prlimit, get_robust_list)
// show. The process should be stopped for the page map and the masks to be a
// consistent snapshot; the rest is stable anyway. SysError when the process
// is gone or not ours.
ProcessImage capture_from_proc(pid_t pid, const CaptureOptions& options = {});
// The same with the regions already read (read_maps of the process).
ProcessImage capture_from_proc(pid_t pid, const CaptureOptions& options, std::vector<Vma> vmas);

// Whether a run's content must be sent: anon pages always; file_clean pages
// when the region has no file identity or the target said its copy does not
// match.
bool content_required(const ImageVma& vma, const PageRun& run, bool target_file_matches = true);

// The process set mlockall(MCL_FUTURE) while it could lock without bound
// (CAP_IPC_LOCK) under a finite RLIMIT_MEMLOCK: an unprivileged body must
// run without it, or its mmaps would fail with EAGAIN past the limit where
// the process's did not.
bool future_locking_needs_privilege(const ProcessImage& image);

// What a sender reads and sends, as runs for read_pages(). `mismatched`
// holds the start addresses of regions whose file the target could not match
// (FileIdentity). Anon pages always travel. A private file mapping that the
// target cannot re-map from its own copy (mismatched, or no identity) sends
// its whole file-backed range, touched or not: pages the process never
// touched would otherwise have nothing to come from there. Without an
// identity the file's size is unknown, so only its present pages go (the
// capture identifies deleted files and memfds through map_files, so this
// needs a file that could not be read at all).
std::vector<PageRun> runs_to_send(const ProcessImage& image, std::span<const uint64_t> mismatched = {});

}  // namespace roam::image
