// Running system calls inside a stopped tracee (ptrace injection), in an RAII
// scope that puts back everything it changed, as rr's AutoRemoteSyscalls.
//
//   Tracee t = Tracee::seize(pid);
//   t.interrupt();
//   {
//     RemoteSyscalls rs(t);
//     pid_t p = remote_getpid(rs);
//     ScratchMem out(rs, sizeof(KernelSigaction));
//     rs.syscall(SYS_rt_sigaction, SIGINT, nullptr, out.get(), 8);
//   }             // registers, mask, scratch bytes and rseq state restored
//   t.detach();
//
// While the scope is open every signal except the synchronous ones (SEGV,
// BUS, ILL, FPE, TRAP, SYS) and the unblockable ones is blocked with
// PTRACE_SETSIGMASK, so signals sent meanwhile simply stay pending, with
// their siginfo, and are delivered after the tracee resumes. The few that
// still stop the tracee are held: a synchronous signal sent with kill is
// re-queued with its original siginfo (by an injected rt_tgsigqueueinfo,
// which a process may send itself), a SIGSTOP is re-sent last, after the
// final injected call. Injected calls must be allowed by the tracee's own seccomp
// filter.
//
// The scope ends by putting the saved registers back and taking the tracee
// through one more interrupt-stop, so it is left in the very state
// interrupt() left it in: if it was stopped inside a system call that
// returned -ERESTART*, the kernel itself applies the restart rule when it
// resumes (SA_RESTART or not, and restart_syscall with the task's own
// restart_block). regs_for_restart() is the rule for restoring such
// registers into a *different* task.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "roam/ptrace.hpp"

namespace roam::ptrace {

// The injected code misbehaved (it faulted, or its site is unusable); the
// scope still restores the tracee.
class InjectionError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Where the `syscall` instruction (0f 05) we point rip at comes from.
enum class SyscallSite {
  any,              // vdso, then current_syscall, then patch_at_ip
  vdso,             // one in the tracee's [vdso]: changes nothing in the tracee
  current_syscall,  // the one the tracee is stopped in (needs orig_rax >= 0)
  patch_at_ip,      // write 0f 05 over the two bytes at rip, put back after;
                    // other threads of the process must be stopped too
};

enum class StepMode {
  // PTRACE_SYSCALL to the syscall-entry and -exit stops: two stops a call.
  syscall_stops,
  // PTRACE_SINGLESTEP over the instruction: one stop (a forced SIGTRAP) a
  // call. Falls back to syscall_stops when the tracee ignores SIGTRAP, since
  // forcing an ignored signal resets its disposition.
  single_step,
};

// What signals sent to the tracee do to a call run with start_syscall().
enum class SignalsDuring {
  // Blocked, as during every injected call: they stay pending until it
  // returns (SIGSTOP and SIGKILL, which nothing blocks, still interrupt it).
  held,
  // Unblocked while it runs, so that one arriving interrupts it as it would
  // a native call (-EINTR or a restart code); blocked again at its return,
  // before the kernel could deliver it, so it stays pending for the caller.
  interrupt,
};

// The kernel-internal codes a system call interrupted by a signal returns
// (include/linux/errno.h). User code never sees them: as it delivers the
// signal the kernel restarts the call or turns the code into EINTR.
inline constexpr long kERestartSys = 512;
inline constexpr long kERestartNoIntr = 513;
inline constexpr long kERestartNoHand = 514;
inline constexpr long kERestartRestartBlock = 516;
// `rc` (a raw return value) is minus one of them.
constexpr bool is_restart_code(long rc) {
  return rc == -kERestartSys || rc == -kERestartNoIntr || rc == -kERestartNoHand || rc == -kERestartRestartBlock;
}

namespace detail {
template <typename T>
  requires(std::is_integral_v<T> || std::is_enum_v<T>)
constexpr uint64_t to_word(T v) {
  return static_cast<uint64_t>(v);
}
template <typename T>
constexpr uint64_t to_word(RemotePtr<T> p) {
  return p.addr();
}
constexpr uint64_t to_word(std::nullptr_t) { return 0; }
// A pointer into *our* address space means nothing to the tracee.
template <typename T>
uint64_t to_word(T*) = delete;
}  // namespace detail

class RemoteSyscalls {
 public:
  // The tracee must be in an interrupt- or group-stop (after interrupt()).
  explicit RemoteSyscalls(Tracee& tracee, SyscallSite site = SyscallSite::any,
                          StepMode mode = StepMode::syscall_stops);
  RemoteSyscalls(Tracee& tracee, RemotePtr<void> syscall_insn, StepMode mode = StepMode::syscall_stops);
  // Restores on every path; a tracee that died meanwhile is left alone.
  ~RemoteSyscalls();
  RemoteSyscalls(const RemoteSyscalls&) = delete;
  RemoteSyscalls& operator=(const RemoteSyscalls&) = delete;

  // Runs one system call in the tracee; returns its rax (-errno on failure).
  // Throws TraceeDied if the tracee goes, InjectionError if it faults.
  template <typename... Args>
    requires(sizeof...(Args) <= 6)
  long syscall(long nr, Args... args) {
    return syscall_args(nr, {detail::to_word(args)...});
  }
  long syscall_args(long nr, const std::array<uint64_t, 6>& args);
  // As syscall(), but a -errno result throws SysError naming `name`.
  template <typename... Args>
    requires(sizeof...(Args) <= 6)
  uint64_t checked_syscall(const char* name, long nr, Args... args) {
    return check(name, syscall_args(nr, {detail::to_word(args)...}));
  }

  // A call that may block for long (poll, accept, wait4...), in steps, so
  // that the caller can watch other things while it runs and interrupt it:
  //
  //   rs.start_syscall(SYS_accept4, args, SignalsDuring::interrupt);
  //   std::optional<long> rc;
  //   while (!(rc = rs.syscall_result())) {
  //     ... poll a signalfd for SIGCHLD (the tracer gets one at every
  //     ptrace-stop) and whatever else; maybe rs.interrupt_syscall() ...
  //   }
  //
  // start_syscall() returns once the call is in the kernel; syscall_result()
  // never blocks; interrupt_syscall() has the kernel interrupt the call as a
  // signal would (PTRACE_INTERRUPT): it then returns at once with -EINTR or
  // a restart code (is_restart_code), or with what it did before it noticed
  // (a partial count, an accepted connection). Nothing else may be injected
  // while it runs; a call still running when the scope closes is
  // interrupted and waited for first. Not with StepMode::single_step.
  void start_syscall(long nr, const std::array<uint64_t, 6>& args, SignalsDuring signals = SignalsDuring::held);
  std::optional<long> syscall_result();
  void interrupt_syscall();

  // Runs code the caller placed in the tracee (in executable memory it
  // mapped there), entered at `entry` with rdi, rsi, rdx, r10, r8, r9 =
  // args and the saved registers otherwise, until it executes the int3 at
  // `trap`: one resume for a whole sequence of calls instead of a stop or
  // two per call. Its system calls come from that code, not from the
  // syscall site, so only for a tracee whose own seccomp filter (if any)
  // allows them. Signals are held as for injected calls; InjectionError if
  // the code faults.
  void run_code(RemotePtr<void> entry, RemotePtr<void> trap, const std::array<uint64_t, 6>& args);
  bool syscall_running() const noexcept { return running_; }

  Tracee& tracee() noexcept { return tracee_; }
  const Regs& saved_regs() const noexcept { return saved_regs_; }
  uint64_t saved_sigmask() const noexcept { return saved_mask_; }
  RemotePtr<void> syscall_insn() const noexcept { return insn_; }
  SyscallSite site() const noexcept { return site_; }  // `any` when the caller named it
  StepMode step_mode() const noexcept { return mode_; }
  std::size_t held_signals() const noexcept { return held_.size() + (stop_held_ ? 1 : 0); }

  // The first 0f 05 in the tracee's [vdso], if it has one.
  static std::optional<RemotePtr<void>> find_syscall_in_vdso(Tracee& tracee);

 private:
  friend class ScratchMem;
  struct ScratchSlot {
    RemotePtr<void> addr;
    bool on_stack = false;
    std::uintptr_t prev = 0;
  };

  void setup(SyscallSite site, std::optional<RemotePtr<void>> insn);
  void pick_site(SyscallSite site);
  Regs enter(long nr, const std::array<uint64_t, 6>& args);
  Stop advance(Resume how);
  bool is_ours(const Stop& s, Resume how);
  long exited();
  void finish_running();
  uint64_t check(const char* name, long rc);
  void restore() noexcept;
  void requeue_held();
  ScratchSlot scratch_alloc(std::size_t size, std::vector<std::byte>& saved);
  void scratch_free(const ScratchSlot& slot) noexcept;

  Tracee& tracee_;
  StepMode mode_;
  Regs saved_regs_{};
  uint64_t saved_mask_ = 0;
  bool mask_changed_ = false;
  SyscallSite site_ = SyscallSite::any;
  RemotePtr<void> insn_;
  std::optional<std::array<std::byte, 2>> patched_bytes_;  // site patch_at_ip
  RemotePtr<uint64_t> rseq_cs_;                            // struct rseq's rseq_cs field
  uint64_t saved_rseq_cs_ = 0;
  bool resumed_ = false;   // the tracee ran since we saved its registers
  bool at_entry_ = false;  // stopped between syscall-entry and -exit
  bool running_ = false;   // in a call from start_syscall(), not yet returned
  bool unblocked_ = false; // ... with SignalsDuring::interrupt
  std::vector<siginfo_t> held_;  // to re-queue by injection
  bool stop_held_ = false;       // a SIGSTOP to re-send at the very end
  // Scratch: stack below the red zone, or (if that is not mapped) a region
  // we map with an injected mmap and unmap at the end.
  std::uintptr_t stack_top_ = 0;
  RemotePtr<void> mapped_;
  std::size_t mapped_size_ = 0;
  std::size_t mapped_used_ = 0;
  int live_scratch_ = 0;
};

// A buffer in the tracee, for passing structs to injected calls and getting
// them back (rr's AutoRestoreMem). Lives on the tracee's stack below the red
// zone (rsp - 128 - size, 16-aligned); the bytes it covers are put back when
// it goes. Must be destroyed before its RemoteSyscalls, in reverse order of
// creation (which C++ scopes give for free).
class ScratchMem {
 public:
  ScratchMem(RemoteSyscalls& rs, std::span<const std::byte> contents);
  ScratchMem(RemoteSyscalls& rs, std::size_t size);  // zero-filled
  template <typename T>
  static ScratchMem holding(RemoteSyscalls& rs, const T& value) {
    static_assert(std::is_trivially_copyable_v<T>);
    return ScratchMem(rs, std::as_bytes(std::span(&value, 1)));
  }
  ~ScratchMem();
  ScratchMem(const ScratchMem&) = delete;
  ScratchMem& operator=(const ScratchMem&) = delete;

  RemotePtr<void> get() const noexcept { return slot_.addr; }
  std::size_t size() const noexcept { return size_; }
  template <typename T>
  T read() const {
    static_assert(std::is_trivially_copyable_v<T>);
    return rs_.tracee().read(slot_.addr.cast<T>());
  }

 private:
  RemoteSyscalls& rs_;
  RemoteSyscalls::ScratchSlot slot_;
  std::size_t size_;
  std::vector<std::byte> saved_;
};

// The kernel's struct sigaction on x86_64 (rt_sigaction's layout).
struct KernelSigaction {
  uint64_t handler = 0;  // SIG_DFL = 0, SIG_IGN = 1, or an address
  uint64_t flags = 0;    // SA_*; glibc adds SA_RESTORER
  uint64_t restorer = 0;
  uint64_t mask = 0;  // bit N-1 = signal N
};

struct AltStack {
  RemotePtr<void> sp;
  int flags = 0;  // SS_DISABLE, SS_ONSTACK, SS_AUTODISARM
  std::size_t size = 0;
};

// State with no read interface from outside, read by injection. Each throws
// SysError if the call fails in the tracee.
pid_t remote_getpid(RemoteSyscalls& rs);
KernelSigaction sigaction_of(RemoteSyscalls& rs, int sig);  // rt_sigaction(sig, NULL, &old, 8)
// The dispositions of signals 1-64. A tracee without a seccomp filter (or
// whose filter lets rt_sigaction(sig, NULL, &old) through from anywhere:
// `filter_allows_reads`, roam's body filter) runs a small loop placed in a
// page mapped for it (three stops in all: mmap, the run, munmap); otherwise,
// or if that page cannot be mapped executable (MDWE, an LSM), one injected
// rt_sigaction each (64 stops).
std::array<KernelSigaction, 64> all_sigactions(RemoteSyscalls& rs, bool filter_allows_reads = false);
RemotePtr<void> current_brk(RemoteSyscalls& rs);            // brk(0)
RemotePtr<void> tid_address(RemoteSyscalls& rs);            // prctl(PR_GET_TID_ADDRESS)
AltStack sigaltstack_of(RemoteSyscalls& rs);                // sigaltstack(NULL, &old)
unsigned long personality_of(RemoteSyscalls& rs);           // personality(0xffffffff)
mode_t umask_of(RemoteSyscalls& rs);                        // umask(0), then set back
// The mask the tracee runs with once the scope closes. An injected
// rt_sigprocmask would see the scope's own blocking mask instead.
uint64_t sigmask_of(const RemoteSyscalls& rs);

// Registers saved while a thread was stopped inside a system call that
// returned -ERESTARTSYS/-ERESTARTNOINTR/-ERESTARTNOHAND/-ERESTART_RESTARTBLOCK,
// made ready to be set into a task that will just run (a restored body): rip
// back on the syscall instruction and rax = the original call, as the kernel
// does when no handler runs. -ERESTART_RESTARTBLOCK re-issues the original
// call too, because the restart block belongs to the old task. A relative
// nanosleep or clock_nanosleep given a `rem` pointer sleeps only what was
// left: the kernel wrote the remaining time there when it stopped the call,
// so the call is re-issued with `rem` as its request too (rdi, resp. rdx,
// changed: a register the call may clobber). Without `rem` a relative sleep
// starts over. Other registers come back unchanged.
Regs regs_for_restart(const Regs& stopped);

}  // namespace roam::ptrace
