// One owner per traced thread (ptrace, PTRACE_SEIZE mode), and the strong
// type for an address in another process. Everything that runs code inside
// the tracee (system-call injection) lives in remote_syscall.hpp and goes
// through an RAII scope that puts back what it changed.
//
// Threading: ptrace belongs to the tracer *thread*, so every method of a
// Tracee must be called from the thread that seized it (asserted).
//
// Errors: methods throw SysError for a failed request, and TraceeDied when the
// tracee has gone (it exited or was killed); TraceeDied carries its wait status.
// A running tracee stops at every signal sent to it until someone calls
// interrupt() or detach(), which pass such signals on.
#pragma once

#include <signal.h>
#include <sys/types.h>
#include <sys/user.h>

#include <compare>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "roam/fd.hpp"

namespace roam::ptrace {

// An address in another process. RemotePtr<T> steps by sizeof(T),
// RemotePtr<void> (the default) by bytes; any RemotePtr<T> converts to
// RemotePtr<void>, other conversions are explicit (cast<U>()).
template <typename T = void>
class RemotePtr {
 public:
  constexpr RemotePtr() noexcept = default;
  constexpr explicit RemotePtr(std::uintptr_t addr) noexcept : addr_(addr) {}

  constexpr std::uintptr_t addr() const noexcept { return addr_; }
  constexpr bool is_null() const noexcept { return addr_ == 0; }
  constexpr explicit operator bool() const noexcept { return addr_ != 0; }

  template <typename U>
  constexpr RemotePtr<U> cast() const noexcept {
    return RemotePtr<U>(addr_);
  }
  constexpr operator RemotePtr<void>() const noexcept
    requires(!std::is_void_v<T>)
  {
    return RemotePtr<void>(addr_);
  }

  constexpr RemotePtr operator+(std::ptrdiff_t n) const noexcept {
    return RemotePtr(addr_ + static_cast<std::uintptr_t>(n) * stride());
  }
  constexpr RemotePtr operator-(std::ptrdiff_t n) const noexcept {
    return RemotePtr(addr_ - static_cast<std::uintptr_t>(n) * stride());
  }
  friend constexpr bool operator==(RemotePtr, RemotePtr) noexcept = default;
  friend constexpr auto operator<=>(RemotePtr, RemotePtr) noexcept = default;

 private:
  static constexpr std::uintptr_t stride() noexcept {
    if constexpr (std::is_void_v<T>) {
      return 1;
    } else {
      return sizeof(T);
    }
  }
  std::uintptr_t addr_ = 0;
};

// The tracee has exited or was killed. wait_status is waitpid's status.
class TraceeDied : public std::runtime_error {
 public:
  TraceeDied(pid_t tid, int wait_status);
  pid_t tid() const noexcept { return tid_; }
  int wait_status() const noexcept { return status_; }
  bool exited() const noexcept;   // _exit/exit: exit_code() is valid
  int exit_code() const noexcept;
  bool killed() const noexcept;   // by a signal: signal() is valid
  int signal() const noexcept;

 private:
  pid_t tid_;
  int status_;
};

using Regs = user_regs_struct;

// PTRACE_O_* options for seize. sysgood is on by default: system-call
// injection tells its syscall-stops from real SIGTRAPs by it.
enum class TraceOption : unsigned {
  sysgood = 0x01,    // PTRACE_O_TRACESYSGOOD
  exit_kill = 0x02,  // PTRACE_O_EXITKILL: the tracee dies when the tracer does
  // PTRACE_O_SUSPEND_SECCOMP: the tracee's seccomp filters pass everything
  // while it is traced, our injected calls included (CAP_SYS_ADMIN). A
  // program's own filter could otherwise refuse, or kill it for, a call we
  // inject; it is back in force once the tracee is detached.
  suspend_seccomp = 0x04,
};
class TraceOptions {
 public:
  constexpr TraceOptions(std::initializer_list<TraceOption> opts) {
    for (TraceOption o : opts) bits_ |= static_cast<unsigned>(o);
  }
  constexpr bool has(TraceOption o) const { return (bits_ & static_cast<unsigned>(o)) != 0; }
  constexpr TraceOptions with(TraceOption o) const {
    TraceOptions t = *this;
    t.bits_ |= static_cast<unsigned>(o);
    return t;
  }
  unsigned long ptrace_bits() const;  // as PTRACE_SETOPTIONS wants them

 private:
  unsigned bits_ = 0;
};

// What the last waitpid reported.
enum class StopKind {
  none,             // not stopped (running, detached or dead)
  interrupt,        // PTRACE_EVENT_STOP with SIGTRAP: our PTRACE_INTERRUPT
  group,            // PTRACE_EVENT_STOP with a stop signal: job-control stop
  syscall,          // syscall-enter or syscall-exit stop (SIGTRAP|0x80)
  signal_delivery,  // a signal is about to be delivered; sig says which
  ptrace_event,     // another PTRACE_EVENT_*; event says which
};
struct Stop {
  StopKind kind = StopKind::none;
  int sig = 0;
  int event = 0;
};

// How to resume from a ptrace-stop.
enum class Resume { cont, syscall, single_step, listen };

// PTRACE_GET_RSEQ_CONFIGURATION.
struct RseqConfig {
  RemotePtr<void> abi;  // struct rseq in the tracee
  uint32_t size = 0;
  uint32_t signature = 0;
  uint32_t flags = 0;
};

struct RobustList {
  RemotePtr<void> head;
  std::size_t len = 0;
};

class Tracee {
 public:
  // PTRACE_SEIZE: the tracee keeps running until interrupt().
  static Tracee seize(pid_t tid, TraceOptions opts = {TraceOption::sysgood});

  Tracee(Tracee&& other) noexcept;
  Tracee& operator=(Tracee&& other) noexcept;
  Tracee(const Tracee&) = delete;
  Tracee& operator=(const Tracee&) = delete;
  // Detaches if still attached (interrupting first if running), passing
  // pending signals on. Restores nothing: that is RemoteSyscalls' job.
  ~Tracee();

  pid_t tid() const noexcept { return tid_; }
  pid_t tgid() const noexcept { return tgid_; }
  bool stopped() const noexcept { return state_ == State::stopped; }
  bool alive() const noexcept { return state_ == State::running || state_ == State::stopped; }
  const Stop& last_stop() const noexcept { return stop_; }
  const TraceOptions& options() const noexcept { return options_; }
  // After TraceeDied: waitpid's status for the death.
  std::optional<int> death_status() const noexcept { return death_status_; }

  // PTRACE_INTERRUPT, then waits until the tracee is in an interrupt- or
  // group-stop. A signal-delivery-stop met on the way is passed on at once
  // (the tracee then stops at its handler's first instruction, exactly as if
  // the signal had come just before the interrupt): nothing is lost, and the
  // tracee holds no half-delivered signal while we work on it.
  void interrupt();
  // interrupt() in two halves, for a tracee that cannot stop until the
  // caller does something in between (a body waiting for its seccomp
  // notification to be answered): PTRACE_INTERRUPT alone, then the wait.
  void request_interrupt();
  void settle();
  // PTRACE_CONT (PTRACE_LISTEN from a group-stop, so a stopped job stays
  // stopped); from a signal-delivery-stop the signal is delivered.
  void resume();
  // Interrupts a running tracee first; afterwards the kernel delivers
  // whatever is pending as if we had never been there.
  void detach();
  // PTRACE_SETOPTIONS: replaces the options seize() set (stopped tracee).
  void set_options(TraceOptions opts);

  // Registers. fs_base and gs_base are part of Regs.
  Regs regs();
  void set_regs(const Regs& regs);
  // The XSAVE area in the standard (uncompacted) format; legacy FXSAVE area
  // first (xmm0 at byte 160), XSAVE header at 512. Its size depends on the CPU.
  std::vector<uint8_t> xstate();
  void set_xstate(std::span<const uint8_t> xstate);
  // CPUID leaf 0xD: the largest XSAVE area this CPU can produce, and the
  // offset of one state component (e.g. 2 = the upper halves of ymm0..15).
  static std::size_t xstate_size_hint();
  static std::size_t xstate_component_offset(unsigned component);

  // The signal mask the thread will run with (PTRACE_GETSIGMASK reports the
  // saved mask of sigsuspend/ppoll, the real one), bit N-1 = signal N.
  uint64_t signal_mask();
  void set_signal_mask(uint64_t mask);
  siginfo_t siginfo();  // only in a signal-delivery-stop
  std::optional<RseqConfig> rseq_config();
  RobustList robust_list();  // get_robust_list(tid): readable from outside

  // Memory through /proc/TID/mem (opened once; writes reach read-only pages,
  // as the tracer may); reads of 16 KiB and more try process_vm_readv first.
  void read_mem(RemotePtr<void> addr, std::span<std::byte> out);
  void write_mem(RemotePtr<void> addr, std::span<const std::byte> in);
  template <typename T>
  T read(RemotePtr<T> addr) {
    static_assert(std::is_trivially_copyable_v<T>);
    T value;
    read_mem(addr, std::as_writable_bytes(std::span(&value, 1)));
    return value;
  }
  template <typename T>
  void write(RemotePtr<T> addr, const T& value) {
    static_assert(std::is_trivially_copyable_v<T>);
    write_mem(addr, std::as_bytes(std::span(&value, 1)));
  }

  // Low level, for RemoteSyscalls and an owner's event loop: resume from the
  // current stop (sig is injected where the kernel honours it), and wait for
  // the next stop. wait_stop throws TraceeDied when the tracee goes.
  void resume_as(Resume how, int sig = 0);
  Stop wait_stop();
  // wait_stop() that never blocks: nothing while the tracee still runs.
  std::optional<Stop> try_wait_stop();
  // From any ptrace-stop: PTRACE_INTERRUPT, PTRACE_CONT with no signal, and
  // wait for the interrupt-stop. The tracee does not reach user mode in
  // between (the kernel takes the trap before it dequeues any signal), so
  // it ends up in the same kind of stop as after interrupt().
  void reinterrupt();

 private:
  enum class State { running, stopped, dead, detached };
  Tracee(pid_t tid, pid_t tgid, TraceOptions opts);
  void release() noexcept;  // detach if attached, never throwing
  long request(int req, void* addr, void* data, const char* what);
  [[noreturn]] void fail(const char* what, int err);
  [[noreturn]] void wait_for_death();
  std::optional<Stop> wait_stop_as(int flags);
  void throw_if_killed();  // TraceeDied if a tracee we hold stopped was killed
  void settle_in_interrupt_stop();
  void assert_tracer_thread() const;
  void assert_stopped(const char* what) const;

  pid_t tid_ = 0;
  pid_t tgid_ = 0;
  pid_t tracer_tid_ = 0;
  State state_ = State::detached;
  Stop stop_;
  TraceOptions options_{};
  FileDesc mem_;
  std::optional<int> death_status_;
};

// A descriptor that becomes readable when a tracee of this thread stops or
// dies, so that a tracer can poll() for that and other things at once. The
// kernel sends the tracer SIGCHLD at each ptrace-stop; while this object
// lives SIGCHLD is blocked in the creating thread and read through a
// signalfd. It is a hint only: SIGCHLDs coalesce, another thread of the
// process that does not block it may take one first, and SIG_IGN or
// SA_NOCLDSTOP for SIGCHLD suppress it. So look (Tracee::try_wait_stop)
// after every wake-up and at a regular interval anyway. Destroy it on the
// thread that made it.
class StopWakeups {
 public:
  StopWakeups();
  ~StopWakeups();
  StopWakeups(const StopWakeups&) = delete;
  StopWakeups& operator=(const StopWakeups&) = delete;

  int fd() const noexcept { return fd_.get(); }
  void drain() noexcept;  // before looking, so that a later stop wakes poll() again

 private:
  FileDesc fd_;
  bool was_blocked_ = false;
};

// One seccomp filter program of a stopped tracee: its flags
// (PTRACE_SECCOMP_GET_METADATA reports SECCOMP_FILTER_FLAG_LOG only) and its
// classic BPF instructions, each packed as code | jt << 16 | jf << 24 |
// k << 32.
struct SeccompProgram {
  uint64_t flags = 0;
  std::vector<uint64_t> insns;
};
// Every filter of the stopped tracee, the first installed first (index 0 of
// PTRACE_SECCOMP_GET_FILTER is the oldest; needs CAP_SYS_ADMIN and a caller
// under no filter of its own). Empty when it has none.
std::vector<SeccompProgram> seccomp_filters(Tracee& t);

}  // namespace roam::ptrace
