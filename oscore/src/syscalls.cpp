#include "roam/syscalls.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>

#include <array>
#include <cassert>
#include <cstddef>

namespace roam {
namespace {

#define ROAM_DISPOSITION_local Disposition::local
#define ROAM_DISPOSITION_forward Disposition::forward
#define ROAM_DISPOSITION_virtual Disposition::virtual_
#define ROAM_DISPOSITION_home Disposition::home
#define ROAM_DISPOSITION_inspect Disposition::inspect
#define ROAM_DISPOSITION_exit Disposition::exit

constexpr SyscallInfo kTable[] = {
#define ROAM_SYSCALL(name, nr, how, family) {#name, nr, ROAM_DISPOSITION_##how, #family},
#include "roam/syscalls.def"
#undef ROAM_SYSCALL
};

#undef ROAM_DISPOSITION_local
#undef ROAM_DISPOSITION_forward
#undef ROAM_DISPOSITION_virtual
#undef ROAM_DISPOSITION_home
#undef ROAM_DISPOSITION_inspect
#undef ROAM_DISPOSITION_exit

constexpr bool strictly_ascending() {
  for (size_t i = 1; i < std::size(kTable); ++i)
    if (kTable[i].nr <= kTable[i - 1].nr) return false;
  return kTable[0].nr >= 0;
}
static_assert(strictly_ascending(), "syscalls.def must list each number once, in ascending order");

constexpr int kMaxNr = kTable[std::size(kTable) - 1].nr;

// Number -> position in kTable, -1 where the number is not listed.
constexpr auto kIndex = [] {
  std::array<int16_t, kMaxNr + 1> index{};
  for (auto& i : index) i = -1;
  for (size_t i = 0; i < std::size(kTable); ++i) index[static_cast<size_t>(kTable[i].nr)] = static_cast<int16_t>(i);
  return index;
}();

constexpr int number_of(std::string_view name) {
  for (const auto& s : kTable)
    if (name == s.name) return s.nr;
  return -1;
}

// The kernel reads pid_t, clockid_t, int signal numbers, advice values and
// prctl options from the low 32 bits of their registers.
int32_t low32(uint64_t reg) { return static_cast<int32_t>(static_cast<uint32_t>(reg)); }

bool names_self(uint64_t pid_reg, int64_t self_pid) {
  int32_t pid = low32(pid_reg);
  return pid == 0 || (self_pid != 0 && pid == self_pid);
}

// ---- clocks ----
//
// Static clocks (CLOCK_REALTIME, MONOTONIC, BOOTTIME, TAI, *_ALARM...) read the
// node's time; the body's time namespace keeps MONOTONIC and BOOTTIME
// continuous across moves, so they are served in the body. CPU-time clocks
// start again from zero in every body (the kernel cannot be told a task's past
// CPU time): reading the caller's own must add the CPU time used before this
// body (virtual). A negative clockid names another process's CPU clock
// (forward: that process is at home) or a dynamic posix clock by descriptor
// (forward: descriptors live at home).
enum class ClockKind { fixed, own_process_cpu, own_thread_cpu, other_cpu, fd };

constexpr int32_t kCpuClockPerThread = 4;  // CPUCLOCK_PERTHREAD_MASK
constexpr int32_t kClockFd = 3;            // CLOCKFD
constexpr int32_t kClockFdMask = 7;        // CLOCKFD_MASK

ClockKind classify_clock(uint64_t clock_reg, int64_t self_pid) {
  int32_t id = low32(clock_reg);
  if (id >= 0) {
    if (id == CLOCK_PROCESS_CPUTIME_ID) return ClockKind::own_process_cpu;
    if (id == CLOCK_THREAD_CPUTIME_ID) return ClockKind::own_thread_cpu;
    return ClockKind::fixed;  // unknown ids included: EINVAL here as at home
  }
  if ((id & kClockFdMask) == kClockFd) return ClockKind::fd;
  int32_t pid = ~(id >> 3);  // CPUCLOCK_PID
  if (pid != 0 && pid != self_pid) return ClockKind::other_cpu;
  return (id & kCpuClockPerThread) ? ClockKind::own_thread_cpu : ClockKind::own_process_cpu;
}

Disposition decide_clock_gettime(const uint64_t* a, int64_t self) {
  switch (classify_clock(a[0], self)) {
    case ClockKind::fixed: return Disposition::local;
    case ClockKind::own_process_cpu:
    case ClockKind::own_thread_cpu: return Disposition::virtual_;
    case ClockKind::other_cpu:
    case ClockKind::fd: break;
  }
  return Disposition::forward;
}

// A resolution is the same in the body as at home; only a clock that must be
// looked up at home (another process, a descriptor) is forwarded.
Disposition decide_clock_getres(const uint64_t* a, int64_t self) {
  switch (classify_clock(a[0], self)) {
    case ClockKind::fixed:
    case ClockKind::own_process_cpu:
    case ClockKind::own_thread_cpu: return Disposition::local;
    case ClockKind::other_cpu:
    case ClockKind::fd: break;
  }
  return Disposition::forward;
}

// A relative sleep on the caller's own CPU clock waits for CPU time the body
// spends, so it runs there; an absolute one names a total the body's clock
// does not know, so it runs at home where the clock is whole.
Disposition decide_clock_nanosleep(const uint64_t* a, int64_t self) {
  switch (classify_clock(a[0], self)) {
    case ClockKind::fixed:
    case ClockKind::own_thread_cpu: return Disposition::local;  // thread CPU clock: EINVAL everywhere
    case ClockKind::own_process_cpu: return (low32(a[1]) & TIMER_ABSTIME) ? Disposition::home : Disposition::local;
    case ClockKind::other_cpu:
    case ClockKind::fd: break;
  }
  return Disposition::forward;
}

// A timer on a static clock fires in the body and signals it there. A timer on
// a CPU-time clock could later be armed with an absolute CPU time (which the
// body's clock, restarted from zero, would reach late), one on another
// process's clock or a posix clock descriptor belongs at home: all go home.
Disposition decide_timer_create(const uint64_t* a, int64_t self) {
  return classify_clock(a[0], self) == ClockKind::fixed ? Disposition::local : Disposition::home;
}

// ---- memory ----

// MAP_SHARED (or MAP_SHARED_VALIDATE), anonymous or not: home. The body's
// memory is private to it by construction; sharing with a file's other users or
// with children forked later only works where the other side is, at home.
// MAP_ANONYMOUS and not shared (private, MAP_DROPPABLE, or an invalid type the
// kernel rejects with EINVAL everywhere): local; no descriptor is involved.
// Private file mapping: forward. The body owns no descriptors, so the agents
// serve it: home says which file the descriptor opens (path and identity, or
// the error its kernel would give), and the agent places a file in the body
// under the same descriptor number for the body's own call to run on: the
// node's copy when it is the same file, as migration checks for clean file
// pages, else a copy read at home (up to 64 MiB). dlopen() and friends stay
// away from home. A bigger file the node lacks, or a descriptor that is not
// a regular file with content (a device such as a GPU or /dev/mem maps more
// than bytes), sends the process home.
Disposition decide_mmap(const uint64_t* a, int64_t /*self_pid*/) {
  uint64_t flags = a[3];
  uint64_t type = flags & MAP_TYPE;
  if (type == MAP_SHARED || type == MAP_SHARED_VALIDATE) return Disposition::home;
  if (flags & MAP_ANONYMOUS) return Disposition::local;
  return Disposition::forward;
}

constexpr int32_t kMadvHwpoison = 100;     // MADV_HWPOISON (asm-generic/mman-common.h)
constexpr int32_t kMadvSoftOffline = 101;  // MADV_SOFT_OFFLINE (not in glibc's headers)

// Advice changes the caller's own memory, which lives here; the VMA flags some
// set (MADV_DONTFORK -> "dc", WIPEONFORK -> "wf", DONTDUMP -> "dd") are read
// back from smaps VmFlags when the process moves again or goes home, so a later
// fork at home honours them. MADV_HWPOISON and MADV_SOFT_OFFLINE act on the
// node's physical pages and need CAP_SYS_ADMIN, which a body never has: home.
Disposition decide_madvise(const uint64_t* a, int64_t /*self_pid*/) {
  int32_t advice = low32(a[2]);
  if (advice == kMadvHwpoison || advice == kMadvSoftOffline) return Disposition::home;
  return Disposition::local;
}

// ---- signals ----

// Handlers run in the body, so sigaction is local, except when it sets
// SIGCHLD: the children live at home, and SIG_IGN, SA_NOCLDWAIT and
// SA_NOCLDSTOP change what the home kernel does when they stop or die
// (auto-reaping, whether SIGCHLD is sent at all). The agent sets the action in
// the deputy and installs the same handler in the body. Reading an action
// (act == NULL) stays local.
Disposition decide_rt_sigaction(const uint64_t* a, int64_t /*self_pid*/) {
  return (low32(a[0]) == SIGCHLD && a[1] != 0) ? Disposition::forward : Disposition::local;
}

// ---- prctl ----
//
// Options that act on the running code or its memory run in the body (the
// image carries their state when it moves on); those on identity, credentials,
// the process tree or anything the home kernel must know are forwarded to the
// deputy; a few that change how the body itself must be built go home.
// Options of other architectures fail with EINVAL everywhere: local. An option
// this table does not know (a newer kernel's) goes home.
struct PrctlRule {
  uint32_t option;
  Disposition how;
};

constexpr Disposition L = Disposition::local, F = Disposition::forward, H = Disposition::home;

constexpr PrctlRule kPrctlRules[] = {
    {1, F},  {2, F},    // PR_SET/GET_PDEATHSIG: the deputy's parent is the one that dies
    {3, F},  {4, F},    // PR_GET/SET_DUMPABLE: who may ptrace or read /proc at home
    {5, L},  {6, L},    // PR_GET/SET_UNALIGN (EINVAL on x86)
    {7, F},  {8, F},    // PR_GET/SET_KEEPCAPS: credentials
    {9, L},  {10, L},   // PR_GET/SET_FPEMU (ia64)
    {11, L}, {12, L},   // PR_GET/SET_FPEXC (powerpc)
    {13, L}, {14, L},   // PR_GET/SET_TIMING
    {15, F}, {16, F},   // PR_SET/GET_NAME: comm as ps and /proc show it at home
    {19, L}, {20, L},   // PR_GET/SET_ENDIAN (powerpc)
    {21, F}, {22, H},   // PR_GET_SECCOMP: the deputy's mode (the body's shows roam's filter)
                        // PR_SET_SECCOMP: a filter of its own, like seccomp(2)
    {23, F}, {24, F},   // PR_CAPBSET_READ/DROP: credentials
    {25, L}, {26, L},   // PR_GET/SET_TSC: whether rdtsc faults in the running code
    {27, F}, {28, F},   // PR_GET/SET_SECUREBITS: credentials
    {29, L}, {30, L},   // PR_SET/GET_TIMERSLACK: the body's sleeps
    {31, F}, {32, F},   // PR_TASK_PERF_EVENTS_DISABLE/ENABLE: perf descriptors live at home
    {33, L}, {34, L},   // PR_MCE_KILL/_GET: memory errors hit the memory, which is here
    {35, H},            // PR_SET_MM: rewrites the mm, privileged, may take a descriptor
    {36, F}, {37, F},   // PR_SET/GET_CHILD_SUBREAPER: the process tree at home
    {38, F}, {39, F},   // PR_SET/GET_NO_NEW_PRIVS: for execve at home (the body always has it)
    {40, L},            // PR_GET_TID_ADDRESS: set_tid_address is local
    {41, L}, {42, L},   // PR_SET/GET_THP_DISABLE: the mm
    {43, L}, {44, L},   // PR_MPX_*_MANAGEMENT (gone, EINVAL)
    {45, L}, {46, L},   // PR_SET/GET_FP_MODE (mips)
    {47, F},            // PR_CAP_AMBIENT: credentials
    {50, L}, {51, L},   // PR_SVE_SET/GET_VL (arm64)
    {52, L}, {53, L},   // PR_GET/SET_SPECULATION_CTRL: the running code
    {54, L},            // PR_PAC_RESET_KEYS (arm64)
    {55, L}, {56, L},   // PR_SET/GET_TAGGED_ADDR_CTRL (arm64)
    {57, F}, {58, F},   // PR_SET/GET_IO_FLUSHER: the I/O is done at home
    {59, H},            // PR_SET_SYSCALL_USER_DISPATCH: would intercept the agent's injected calls
    {60, L}, {61, L},   // PR_PAC_SET/GET_ENABLED_KEYS (arm64)
    {62, H},            // PR_SCHED_CORE: cookies shared with other processes by PID
    {63, L}, {64, L},   // PR_SME_SET/GET_VL (arm64)
    {65, H}, {66, L},   // PR_SET_MDWE: forbids the write-then-exec the agent uses to fill
                        // file mappings; PR_GET_MDWE: the mm
    {67, H}, {68, L},   // PR_SET_MEMORY_MERGE: needs CAP_SYS_RESOURCE; PR_GET_MEMORY_MERGE: the mm
    {69, L}, {70, L},   // PR_RISCV_V_SET/GET_CONTROL
    {71, L},            // PR_RISCV_SET_ICACHE_FLUSH_CTX
    {72, L}, {73, L},   // PR_PPC_GET/SET_DEXCR
    {74, L}, {75, L}, {76, L},  // PR_GET/SET/LOCK_SHADOW_STACK_STATUS (arm64 GCS)
    {77, L},            // PR_TIMER_CREATE_RESTORE_IDS: timers are local
    {78, L},            // PR_FUTEX_HASH: futexes are local
    {0x41555856, L},    // PR_GET_AUXV: restored with PR_SET_MM_MAP
    {0x53564d41, L},    // PR_SET_VMA: names of the body's anonymous memory
    {0x59616d61, F},    // PR_SET_PTRACER (Yama): who may trace it at home
};

Disposition decide_prctl(const uint64_t* a, int64_t /*self_pid*/) {
  auto option = static_cast<uint32_t>(a[0]);
  for (const auto& r : kPrctlRules)
    if (r.option == option) return r.how;
  return Disposition::home;
}

// ---- calls that name a process ----

// The caller's own session and process group are cached by the agent; another
// process's are at home.
Disposition decide_own_ids(const uint64_t* a, int64_t self) {
  return names_self(a[0], self) ? Disposition::virtual_ : Disposition::forward;
}

// Scheduling, robust list, NUMA placement and memory of the caller itself
// (first argument 0 or its PID): it runs here, on this node's CPUs and memory.
// Any other process is at home.
Disposition decide_pid_first(const uint64_t* a, int64_t self) {
  return names_self(a[0], self) ? Disposition::local : Disposition::forward;
}

// The caller's own nice value (PRIO_PROCESS, itself): it competes for this
// node's CPUs. Process groups, users and other processes are at home.
Disposition decide_priority(const uint64_t* a, int64_t self) {
  return (low32(a[0]) == PRIO_PROCESS && names_self(a[1], self)) ? Disposition::local : Disposition::forward;
}

struct InspectRule {
  int nr;
  Disposition (*decide)(const uint64_t* args, int64_t self_pid);
};

constexpr InspectRule kInspectRules[] = {
    {number_of("mmap"), decide_mmap},
    {number_of("madvise"), decide_madvise},
    {number_of("rt_sigaction"), decide_rt_sigaction},
    {number_of("prctl"), decide_prctl},
    {number_of("clock_gettime"), decide_clock_gettime},
    {number_of("clock_getres"), decide_clock_getres},
    {number_of("clock_nanosleep"), decide_clock_nanosleep},
    {number_of("timer_create"), decide_timer_create},
    {number_of("getpgid"), decide_own_ids},
    {number_of("getsid"), decide_own_ids},
    {number_of("getpriority"), decide_priority},
    {number_of("setpriority"), decide_priority},
    {number_of("sched_setaffinity"), decide_pid_first},
    {number_of("sched_getaffinity"), decide_pid_first},
    {number_of("sched_setparam"), decide_pid_first},
    {number_of("sched_getparam"), decide_pid_first},
    {number_of("sched_setscheduler"), decide_pid_first},
    {number_of("sched_getscheduler"), decide_pid_first},
    {number_of("sched_setattr"), decide_pid_first},
    {number_of("sched_getattr"), decide_pid_first},
    {number_of("sched_rr_get_interval"), decide_pid_first},
    {number_of("get_robust_list"), decide_pid_first},
    {number_of("migrate_pages"), decide_pid_first},
    {number_of("move_pages"), decide_pid_first},
    {number_of("process_vm_readv"), decide_pid_first},
    {number_of("process_vm_writev"), decide_pid_first},
};

// Every `inspect` entry of the .def has exactly one rule, and every rule is
// for an `inspect` entry.
constexpr bool inspect_rules_complete() {
  for (const auto& r : kInspectRules) {
    int found = 0;
    for (const auto& s : kTable)
      if (s.nr == r.nr && s.how == Disposition::inspect) ++found;
    if (found != 1) return false;
  }
  for (const auto& s : kTable) {
    if (s.how != Disposition::inspect) continue;
    int rules = 0;
    for (const auto& r : kInspectRules)
      if (r.nr == s.nr) ++rules;
    if (rules != 1) return false;
  }
  return true;
}
static_assert(inspect_rules_complete(), "each `inspect` call in syscalls.def needs exactly one rule in kInspectRules");

}  // namespace

std::string_view to_string(Disposition how) {
  switch (how) {
    case Disposition::local: return "local";
    case Disposition::forward: return "forward";
    case Disposition::virtual_: return "virtual";
    case Disposition::home: return "home";
    case Disposition::inspect: return "inspect";
    case Disposition::exit: return "exit";
  }
  return "?";
}

std::span<const SyscallInfo> all_syscalls() { return kTable; }

const SyscallInfo* syscall_info(int nr) {
  if (nr < 0 || nr > kMaxNr) return nullptr;
  int16_t i = kIndex[static_cast<size_t>(nr)];
  return i < 0 ? nullptr : &kTable[i];
}

Disposition disposition_of(int nr) {
  const SyscallInfo* info = syscall_info(nr);
  return info ? info->how : Disposition::home;
}

int syscall_number(std::string_view name) { return number_of(name); }

Disposition decide(int nr, const uint64_t args[6], int64_t self_pid) {
  Disposition how = disposition_of(nr);
  if (how != Disposition::inspect) return how;
  for (const auto& r : kInspectRules)
    if (r.nr == nr) return r.decide(args, self_pid);
  assert(false && "inspect call without a rule (checked at compile time)");
  return Disposition::home;
}

std::vector<int> numbers_with(Disposition how) {
  std::vector<int> out;
  for (const auto& s : kTable)
    if (s.how == how) out.push_back(s.nr);
  return out;
}

}  // namespace roam
