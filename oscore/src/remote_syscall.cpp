#include "roam/remote_syscall.hpp"

#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include <fmt/format.h>

#include "roam/error.hpp"
#include "roam/log.hpp"

namespace roam::ptrace {
namespace {

constexpr uint64_t kUserCs64 = 0x33;  // __USER_CS: a 64-bit tracee
constexpr std::size_t kRedZone = 128;
constexpr std::size_t kMappedScratch = 64 * 1024;
constexpr std::array<std::byte, 2> kSyscallInsn{std::byte{0x0f}, std::byte{0x05}};

constexpr uint64_t sigbit(int sig) { return uint64_t{1} << (sig - 1); }

// Signals the kernel forces on a faulting instruction. They stay unblocked
// while we inject: forcing a blocked signal resets its handler to SIG_DFL.
constexpr uint64_t kSynchronous =
    sigbit(SIGSEGV) | sigbit(SIGBUS) | sigbit(SIGILL) | sigbit(SIGFPE) | sigbit(SIGTRAP) | sigbit(SIGSYS);
constexpr uint64_t kInjectionMask = ~kSynchronous;

bool is_synchronous(int sig) { return sig >= 1 && sig <= 64 && (kSynchronous & sigbit(sig)) != 0; }

// A number from /proc/TID/status ("SigIgn:" in base 16, "Seccomp:" in
// base 10), or `missing`.
uint64_t status_number(pid_t tid, std::string_view key, int base, uint64_t missing) {
  std::ifstream status(fmt::format("/proc/{}/status", tid));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(key, 0) == 0) return std::stoull(line.substr(key.size()), nullptr, base);
  }
  return missing;
}

// The signals the process ignores.
uint64_t ignored_signals(pid_t tid) { return status_number(tid, "SigIgn:", 16, 0); }

}  // namespace

RemoteSyscalls::RemoteSyscalls(Tracee& tracee, SyscallSite site, StepMode mode) : tracee_(tracee), mode_(mode) {
  setup(site, std::nullopt);
}

RemoteSyscalls::RemoteSyscalls(Tracee& tracee, RemotePtr<void> syscall_insn, StepMode mode)
    : tracee_(tracee), mode_(mode) {
  setup(SyscallSite::any, syscall_insn);
}

void RemoteSyscalls::setup(SyscallSite site, std::optional<RemotePtr<void>> insn) {
  ROAM_ASSERT(tracee_.stopped() && (tracee_.last_stop().kind == StopKind::interrupt ||
                                    tracee_.last_stop().kind == StopKind::group),
              fmt::format("RemoteSyscalls needs tracee {} in an interrupt- or group-stop", tracee_.tid()));
  ROAM_ASSERT(mode_ == StepMode::single_step || tracee_.options().has(TraceOption::sysgood),
              fmt::format("injecting into tracee {} by syscall-stops needs TraceOption::sysgood", tracee_.tid()));
  saved_regs_ = tracee_.regs();
  if (saved_regs_.cs != kUserCs64) {
    throw InjectionError(fmt::format("tracee {} is not running 64-bit code (cs {:#x})", tracee_.tid(), saved_regs_.cs));
  }
  stack_top_ = saved_regs_.rsp - kRedZone;
  if (mode_ == StepMode::single_step && (ignored_signals(tracee_.tid()) & sigbit(SIGTRAP)) != 0) {
    mode_ = StepMode::syscall_stops;
  }
  saved_mask_ = tracee_.signal_mask();
  tracee_.set_signal_mask(kInjectionMask);
  mask_changed_ = true;
  try {
    // The kernel clears struct rseq's rseq_cs when it returns to user mode
    // outside the critical section it names, as it will at our syscall
    // instruction; put it back so a thread stopped inside a critical
    // section is still aborted out of it when it resumes.
    if (auto rseq = tracee_.rseq_config()) {
      rseq_cs_ = (rseq->abi + 8).cast<uint64_t>();
      saved_rseq_cs_ = tracee_.read(rseq_cs_);
    }
    if (insn) {
      site_ = SyscallSite::any;
      insn_ = *insn;
    } else {
      pick_site(site);
    }
  } catch (...) {
    restore();
    throw;
  }
}

RemoteSyscalls::~RemoteSyscalls() {
  ROAM_ASSERT(live_scratch_ == 0,
              fmt::format("ScratchMem outlives the RemoteSyscalls of tracee {}", tracee_.tid()));
  restore();
}

std::optional<RemotePtr<void>> RemoteSyscalls::find_syscall_in_vdso(Tracee& tracee) {
  std::ifstream maps(fmt::format("/proc/{}/maps", tracee.tid()));
  std::string line;
  while (std::getline(maps, line)) {
    if (line.size() < 6 || line.compare(line.size() - 6, 6, "[vdso]") != 0) continue;
    std::uintptr_t start = 0, end = 0;
    char dash = 0;
    std::istringstream in(line);
    in >> std::hex >> start >> dash >> end;
    if (!in || dash != '-' || end <= start) return std::nullopt;
    std::vector<std::byte> text(end - start);
    tracee.read_mem(RemotePtr<void>(start), text);
    auto it = std::search(text.begin(), text.end(), kSyscallInsn.begin(), kSyscallInsn.end());
    if (it == text.end()) return std::nullopt;
    return RemotePtr<void>(start + static_cast<std::uintptr_t>(it - text.begin()));
  }
  return std::nullopt;
}

void RemoteSyscalls::pick_site(SyscallSite site) {
  if (site == SyscallSite::any || site == SyscallSite::vdso) {
    if (auto found = find_syscall_in_vdso(tracee_)) {
      site_ = SyscallSite::vdso;
      insn_ = *found;
      return;
    }
    if (site == SyscallSite::vdso) throw InjectionError(fmt::format("tracee {} has no [vdso]", tracee_.tid()));
  }
  if (site == SyscallSite::any || site == SyscallSite::current_syscall) {
    if (static_cast<int64_t>(saved_regs_.orig_rax) >= 0) {
      RemotePtr<void> at(saved_regs_.rip - 2);
      std::array<std::byte, 2> bytes{};
      tracee_.read_mem(at, bytes);
      if (bytes == kSyscallInsn) {
        site_ = SyscallSite::current_syscall;
        insn_ = at;
        return;
      }
    }
    if (site == SyscallSite::current_syscall) {
      throw InjectionError(fmt::format("tracee {} is not stopped in a syscall instruction", tracee_.tid()));
    }
  }
  // Last resort: write the instruction at rip (through /proc/PID/mem, which
  // reaches read-only text). Another running thread could execute it.
  RemotePtr<void> at(saved_regs_.rip);
  std::array<std::byte, 2> old{};
  tracee_.read_mem(at, old);
  tracee_.write_mem(at, kSyscallInsn);
  patched_bytes_ = old;
  site_ = SyscallSite::patch_at_ip;
  insn_ = at;
}

Stop RemoteSyscalls::advance(Resume how) {
  tracee_.resume_as(how, 0);
  for (;;) {
    Stop s = tracee_.wait_stop();
    if (is_ours(s, how)) return s;
  }
}

// A stop met while an injected call runs: a syscall-stop (or, stepping,
// the step's SIGTRAP) is the call's; anything else is dealt with here and
// the tracee resumed `how`.
bool RemoteSyscalls::is_ours(const Stop& s, Resume how) {
  if (s.kind == StopKind::syscall) return true;
  if (s.kind == StopKind::signal_delivery) {
    if (mode_ == StepMode::single_step && s.sig == SIGTRAP) return true;
    siginfo_t info = tracee_.siginfo();
    if (is_synchronous(info.si_signo) && info.si_code > 0) {
      // Raised by our own instruction; resuming with no signal drops it.
      throw InjectionError(fmt::format("injected call faulted in tracee {}: signal {} code {} at {:#x}",
                                       tracee_.tid(), info.si_signo, info.si_code,
                                       reinterpret_cast<std::uintptr_t>(info.si_addr)));
    }
    if (info.si_signo == SIGSTOP) {
      stop_held_ = true;
    } else {
      held_.push_back(info);
    }
  }
  // An interrupt-, group- or event-stop is none of ours: carry on.
  tracee_.resume_as(how, 0);
  return false;
}

Regs RemoteSyscalls::enter(long nr, const std::array<uint64_t, 6>& args) {
  if (!tracee_.alive() && tracee_.death_status()) throw TraceeDied(tracee_.tid(), *tracee_.death_status());
  ROAM_ASSERT(tracee_.stopped() && !at_entry_ && !running_,
              fmt::format("injecting syscall {} into tracee {} that is not stopped between calls", nr, tracee_.tid()));
  Regs r = saved_regs_;
  r.rip = insn_.addr();
  r.rax = static_cast<uint64_t>(nr);
  // No syscall in progress as far as the kernel's restart logic goes.
  r.orig_rax = ~uint64_t{0};
  r.rdi = args[0];
  r.rsi = args[1];
  r.rdx = args[2];
  r.r10 = args[3];
  r.r8 = args[4];
  r.r9 = args[5];
  tracee_.set_regs(r);
  resumed_ = true;
  return r;
}

long RemoteSyscalls::syscall_args(long nr, const std::array<uint64_t, 6>& args) {
  Regs r = enter(nr, args);
  if (mode_ == StepMode::single_step) {
    for (;;) {
      Stop s = advance(Resume::single_step);
      Regs after = tracee_.regs();
      bool stepped = after.rip == insn_.addr() + kSyscallInsn.size();
      if (s.kind == StopKind::signal_delivery) {
        siginfo_t info = tracee_.siginfo();
        // A SIGTRAP someone sent with kill is not our step trap: hold it.
        if (info.si_code <= 0) held_.push_back(info);
      }
      if (stepped) return static_cast<long>(after.rax);
      tracee_.set_regs(r);
    }
  }

  advance(Resume::syscall);  // to the syscall-entry stop
  at_entry_ = true;
  advance(Resume::syscall);  // to the syscall-exit stop
  return exited();
}

// At the call's syscall-exit stop.
long RemoteSyscalls::exited() {
  at_entry_ = false;
  running_ = false;
  if (unblocked_) {
    // Before the kernel can deliver what interrupted the call.
    tracee_.set_signal_mask(kInjectionMask);
    unblocked_ = false;
  }
  return static_cast<long>(tracee_.regs().rax);
}

void RemoteSyscalls::run_code(RemotePtr<void> entry, RemotePtr<void> trap, const std::array<uint64_t, 6>& args) {
  Regs r = enter(0, args);
  r.rip = entry.addr();
  tracee_.set_regs(r);
  tracee_.resume_as(Resume::cont, 0);
  for (;;) {
    Stop s = tracee_.wait_stop();
    if (s.kind == StopKind::signal_delivery && s.sig == SIGTRAP) {
      siginfo_t info = tracee_.siginfo();
      if (info.si_code <= 0) {  // sent with kill: not our int3
        held_.push_back(info);
        tracee_.resume_as(Resume::cont, 0);
        continue;
      }
      uint64_t at = tracee_.regs().rip;
      if (at == trap.addr() + 1) return;  // resuming with no signal drops the trap
      throw InjectionError(fmt::format("code run in tracee {} trapped at {:#x}, not at its end {:#x}", tracee_.tid(), at, trap.addr()));
    }
    if (s.kind == StopKind::syscall)
      throw InjectionError(fmt::format("code run in tracee {} stopped at a system call", tracee_.tid()));
    is_ours(s, Resume::cont);  // holds signals, throws on a fault, resumes
  }
}

void RemoteSyscalls::start_syscall(long nr, const std::array<uint64_t, 6>& args, SignalsDuring signals) {
  ROAM_ASSERT(mode_ == StepMode::syscall_stops,
              fmt::format("start_syscall({}) in tracee {} needs StepMode::syscall_stops", nr, tracee_.tid()));
  enter(nr, args);
  advance(Resume::syscall);  // to the syscall-entry stop
  at_entry_ = true;
  if (signals == SignalsDuring::interrupt) {
    tracee_.set_signal_mask(0);
    unblocked_ = true;
  }
  tracee_.resume_as(Resume::syscall, 0);
  running_ = true;
}

std::optional<long> RemoteSyscalls::syscall_result() {
  ROAM_ASSERT(running_, fmt::format("syscall_result with no call running in tracee {}", tracee_.tid()));
  while (std::optional<Stop> s = tracee_.try_wait_stop()) {
    if (is_ours(*s, Resume::syscall)) return exited();
  }
  return std::nullopt;
}

void RemoteSyscalls::interrupt_syscall() {
  ROAM_ASSERT(running_, fmt::format("interrupt_syscall with no call running in tracee {}", tracee_.tid()));
  // If the call has just returned and the tracee already sits at its exit
  // stop, the request stays pending and ends in an interrupt-stop of its own
  // the next time the tracee runs, which every resume here steps over.
  tracee_.request_interrupt();
}

// The scope closes while a call still runs (its caller was thrown out):
// the call ends as if a signal had come, and is waited for.
void RemoteSyscalls::finish_running() {
  if (!running_) return;
  tracee_.request_interrupt();
  for (;;) {
    Stop s = tracee_.wait_stop();
    if (is_ours(s, Resume::syscall)) break;
  }
  exited();
}

uint64_t RemoteSyscalls::check(const char* name, long rc) {
  if (rc < 0 && rc >= -4095) {
    throw SysError(fmt::format("{} injected into tracee {}", name, tracee_.tid()), static_cast<int>(-rc));
  }
  return static_cast<uint64_t>(rc);
}

void RemoteSyscalls::requeue_held() {
  if (held_.empty()) return;
  // Keep what we re-queue pending while we still inject.
  tracee_.set_signal_mask(~uint64_t{0});
  std::vector<siginfo_t> held = std::move(held_);
  held_.clear();
  for (const siginfo_t& info : held) {
    ScratchMem si = ScratchMem::holding(*this, info);
    long rc = syscall(SYS_rt_tgsigqueueinfo, tracee_.tgid(), tracee_.tid(), info.si_signo, si.get());
    if (rc < 0) {
      log_warn("ptrace: re-queueing signal {} into tracee {} failed: {}", info.si_signo, tracee_.tid(),
               std::strerror(static_cast<int>(-rc)));
    }
  }
}

void RemoteSyscalls::restore() noexcept {
  // Each step on its own: one that fails must not keep the registers and
  // the mask from going back. Only the tracee's death ends it early.
  auto attempt = [this](const char* what, auto&& step) {
    if (!tracee_.alive()) return;
    try {
      step();
    } catch (const TraceeDied&) {
    } catch (const std::exception& e) {
      log_error("ptrace: {} in tracee {} after injection failed: {}", what, tracee_.tid(), e.what());
    }
  };
  attempt("ending the running call", [this] { finish_running(); });
  if (tracee_.alive() && !tracee_.stopped()) {
    log_error("ptrace: tracee {} is running; its registers cannot be restored", tracee_.tid());
    return;
  }
  attempt("finishing the interrupted call", [this] {
    if (!at_entry_) return;
    // Thrown out between entry and exit: skip the call, go to its exit.
    Regs r = tracee_.regs();
    r.orig_rax = ~uint64_t{0};
    tracee_.set_regs(r);
    at_entry_ = false;
    advance(Resume::syscall);
  });
  attempt("re-queueing held signals", [this] { requeue_held(); });
  attempt("unmapping scratch", [this] {
    if (!mapped_) return;
    long rc = syscall(SYS_munmap, mapped_, mapped_size_);
    if (rc < 0) log_warn("ptrace: unmapping scratch in tracee {} failed: {}", tracee_.tid(), -rc);
    mapped_ = {};
  });
  attempt("putting back patched text", [this] {
    if (!patched_bytes_) return;
    tracee_.write_mem(insn_, *patched_bytes_);
    patched_bytes_.reset();
  });
  attempt("putting back rseq_cs", [this] {
    if (rseq_cs_ && tracee_.read(rseq_cs_) != saved_rseq_cs_) tracee_.write(rseq_cs_, saved_rseq_cs_);
  });
  attempt("re-sending SIGSTOP", [this] {
    // SIGSTOP cannot be blocked, so it goes back only once no injected call
    // is left to run (it would stop the tracee again); its siginfo never
    // reaches a handler, so a plain tgkill from here loses nothing.
    if (!stop_held_) return;
    if (::syscall(SYS_tgkill, tracee_.tgid(), tracee_.tid(), SIGSTOP) != 0) {
      throw SysError(fmt::format("tgkill SIGSTOP to tracee {}", tracee_.tid()), errno);
    }
    stop_held_ = false;
  });
  attempt("restoring registers", [this] {
    if (!resumed_) return;
    tracee_.set_regs(saved_regs_);
    tracee_.reinterrupt();
    resumed_ = false;
  });
  attempt("restoring the signal mask", [this] {
    if (!mask_changed_) return;
    tracee_.set_signal_mask(saved_mask_);
    mask_changed_ = false;
  });
}

RemoteSyscalls::ScratchSlot RemoteSyscalls::scratch_alloc(std::size_t size, std::vector<std::byte>& saved) {
  ScratchSlot slot;
  std::size_t rounded = (size + 15) & ~std::size_t{15};
  if (!mapped_) {
    std::uintptr_t at = (stack_top_ - rounded) & ~std::uintptr_t{15};
    saved.resize(size);
    try {
      tracee_.read_mem(RemotePtr<void>(at), saved);
      slot = {RemotePtr<void>(at), true, stack_top_};
      stack_top_ = at;
      ++live_scratch_;
      return slot;
    } catch (const SysError&) {
      // The stack is not mapped that far down: use a mapping of our own.
    }
    saved.clear();
    std::size_t len = std::max(kMappedScratch, (rounded + 4095) & ~std::size_t{4095});
    uint64_t addr = checked_syscall("mmap (scratch)", SYS_mmap, 0, len, PROT_READ | PROT_WRITE,
                                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    mapped_ = RemotePtr<void>(addr);
    mapped_size_ = len;
    mapped_used_ = 0;
  }
  if (mapped_used_ + rounded > mapped_size_) {
    throw InjectionError(fmt::format("scratch of {} bytes does not fit in tracee {}", size, tracee_.tid()));
  }
  slot = {mapped_ + static_cast<std::ptrdiff_t>(mapped_used_), false, mapped_used_};
  mapped_used_ += rounded;
  ++live_scratch_;
  return slot;
}

void RemoteSyscalls::scratch_free(const ScratchSlot& slot) noexcept {
  if (slot.on_stack) {
    stack_top_ = slot.prev;
  } else {
    mapped_used_ = slot.prev;
  }
  --live_scratch_;
}

ScratchMem::ScratchMem(RemoteSyscalls& rs, std::span<const std::byte> contents) : rs_(rs), size_(contents.size()) {
  slot_ = rs_.scratch_alloc(size_, saved_);
  try {
    rs_.tracee().write_mem(slot_.addr, contents);
  } catch (...) {
    rs_.scratch_free(slot_);
    throw;
  }
}

ScratchMem::ScratchMem(RemoteSyscalls& rs, std::size_t size)
    : ScratchMem(rs, std::vector<std::byte>(size)) {}

ScratchMem::~ScratchMem() {
  try {
    if (slot_.on_stack && rs_.tracee().alive()) rs_.tracee().write_mem(slot_.addr, saved_);
  } catch (const std::exception& e) {
    log_warn("ptrace: putting back {} bytes of stack in tracee {} failed: {}", saved_.size(), rs_.tracee().tid(),
             e.what());
  }
  rs_.scratch_free(slot_);
}

pid_t remote_getpid(RemoteSyscalls& rs) { return static_cast<pid_t>(rs.checked_syscall("getpid", SYS_getpid)); }

KernelSigaction sigaction_of(RemoteSyscalls& rs, int sig) {
  ScratchMem old(rs, sizeof(KernelSigaction));
  rs.checked_syscall("rt_sigaction", SYS_rt_sigaction, sig, nullptr, old.get(), sizeof(uint64_t));
  return old.read<KernelSigaction>();
}

namespace {

// for (sig = 1; sig <= 64; ++sig, ++out) out->rc = rt_sigaction(sig, NULL, &out->act, 8);
// then int3. rdi = out, an array of SigactionSlot.
constexpr std::array<uint8_t, 48> kSigactionLoop{
    0x48, 0x89, 0xfb,                    // mov rbx, rdi
    0x41, 0xbc, 0x01, 0x00, 0x00, 0x00,  // mov r12d, 1
    0xb8, 0x0d, 0x00, 0x00, 0x00,        // 1: mov eax, 13 (SYS_rt_sigaction)
    0x44, 0x89, 0xe7,                    // mov edi, r12d
    0x31, 0xf6,                          // xor esi, esi
    0x48, 0x89, 0xda,                    // mov rdx, rbx
    0x41, 0xba, 0x08, 0x00, 0x00, 0x00,  // mov r10d, 8
    0x0f, 0x05,                          // syscall
    0x48, 0x89, 0x43, 0x20,              // mov [rbx + 32], rax
    0x48, 0x83, 0xc3, 0x28,              // add rbx, 40
    0x41, 0xff, 0xc4,                    // inc r12d
    0x41, 0x83, 0xfc, 0x41,              // cmp r12d, 65
    0x75, 0xda,                          // jne 1b
    0xcc,                                // int3
};
struct SigactionSlot {
  KernelSigaction act;
  int64_t rc;
};
static_assert(sizeof(SigactionSlot) == 40);

std::optional<std::array<KernelSigaction, 64>> sigactions_by_loop(RemoteSyscalls& rs, bool filter_allows_reads) {
  pid_t tid = rs.tracee().tid();
  // The loop ends in an int3, whose SIGTRAP the kernel forces: that would
  // reset an ignored SIGTRAP's disposition (not a blocked one: SIGTRAP
  // stays unblocked while we inject).
  // A foreign seccomp filter could refuse the loop's calls, unless it is
  // suspended while we trace (PTRACE_O_SUSPEND_SECCOMP).
  bool filtered = !filter_allows_reads && !rs.tracee().options().has(TraceOption::suspend_seccomp) &&
                  status_number(tid, "Seccomp:", 10, 1) != 0;
  if (filtered || (ignored_signals(tid) & sigbit(SIGTRAP)) != 0) return std::nullopt;
  long page = rs.syscall(SYS_mmap, 0, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (page < 0 && page > -4096) return std::nullopt;
  RemotePtr<void> code(static_cast<std::uintptr_t>(page));
  std::optional<std::array<KernelSigaction, 64>> out;
  try {
    // /proc/PID/mem writes the read-only page (as a debugger sets a breakpoint).
    rs.tracee().write_mem(code, std::as_bytes(std::span(kSigactionLoop)));
    std::array<SigactionSlot, 64> slots{};
    ScratchMem mem(rs, sizeof slots);
    rs.run_code(code, code + static_cast<std::ptrdiff_t>(kSigactionLoop.size() - 1), {mem.get().addr(), 0, 0, 0, 0, 0});
    rs.tracee().read_mem(mem.get(), std::as_writable_bytes(std::span(slots)));
    if (std::all_of(slots.begin(), slots.end(), [](const SigactionSlot& s) { return s.rc == 0; })) {
      out.emplace();
      for (size_t i = 0; i < slots.size(); ++i) (*out)[i] = slots[i].act;
    }
  } catch (const InjectionError& e) {
    log_warn("ptrace: reading the signal handlers of tracee {} in one run failed ({}): one call each", rs.tracee().tid(), e.what());
  }
  rs.syscall(SYS_munmap, code, 4096);
  return out;
}

}  // namespace

std::array<KernelSigaction, 64> all_sigactions(RemoteSyscalls& rs, bool filter_allows_reads) {
  if (auto fast = sigactions_by_loop(rs, filter_allows_reads)) return *fast;
  std::array<KernelSigaction, 64> out{};
  for (int sig = 1; sig <= 64; ++sig) out[static_cast<size_t>(sig - 1)] = sigaction_of(rs, sig);
  return out;
}

RemotePtr<void> current_brk(RemoteSyscalls& rs) {
  return RemotePtr<void>(rs.checked_syscall("brk", SYS_brk, 0));
}

RemotePtr<void> tid_address(RemoteSyscalls& rs) {
  ScratchMem out(rs, sizeof(uint64_t));
  rs.checked_syscall("prctl(PR_GET_TID_ADDRESS)", SYS_prctl, PR_GET_TID_ADDRESS, out.get(), 0, 0, 0);
  return RemotePtr<void>(out.read<uint64_t>());
}

AltStack sigaltstack_of(RemoteSyscalls& rs) {
  struct KernelStack {  // the kernel's stack_t on x86_64
    uint64_t sp;
    int32_t flags;
    int32_t pad;
    uint64_t size;
  };
  ScratchMem old(rs, sizeof(KernelStack));
  rs.checked_syscall("sigaltstack", SYS_sigaltstack, nullptr, old.get());
  auto k = old.read<KernelStack>();
  return AltStack{RemotePtr<void>(k.sp), k.flags, k.size};
}

unsigned long personality_of(RemoteSyscalls& rs) {
  return rs.checked_syscall("personality", SYS_personality, 0xffffffffu);
}

mode_t umask_of(RemoteSyscalls& rs) {
  auto old = static_cast<mode_t>(rs.checked_syscall("umask", SYS_umask, 0));
  rs.checked_syscall("umask (put back)", SYS_umask, old);
  return old;
}

uint64_t sigmask_of(const RemoteSyscalls& rs) { return rs.saved_sigmask(); }

Regs regs_for_restart(const Regs& stopped) {
  Regs r = stopped;
  if (static_cast<int64_t>(r.orig_rax) < 0) return r;
  switch (-static_cast<long>(r.rax)) {
    case kERestartSys:
    case kERestartNoIntr:
    case kERestartNoHand:
    case kERestartRestartBlock:
      // The remaining time of a relative sleep is in its `rem`: the rest
      // of the sleep is asked for, not all of it again.
      if (r.rax == static_cast<uint64_t>(-kERestartRestartBlock)) {
        if (r.orig_rax == SYS_nanosleep && r.rsi != 0) r.rdi = r.rsi;
        if (r.orig_rax == SYS_clock_nanosleep && (r.rsi & TIMER_ABSTIME) == 0 && r.r10 != 0) r.rdx = r.r10;
      }
      r.rax = r.orig_rax;
      r.rip -= 2;
      r.orig_rax = ~uint64_t{0};
      break;
    default:
      break;
  }
  return r;
}

}  // namespace roam::ptrace
