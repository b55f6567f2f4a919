// Kernel-held state of a restored process (see restore_detail.hpp).
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <cstring>

#include <fmt/format.h>

#include "restore_detail.hpp"
#include "roam/error.hpp"
#include "roam/image_proc.hpp"
#include "roam/log.hpp"
#include "roam/restore.hpp"

namespace roam::restore::detail {
namespace {

using ptrace::RemotePtr;
using ptrace::RemoteSyscalls;
using ptrace::ScratchMem;

// struct prctl_mm_map with the auxv pointer as a plain word.
struct MmMap {
  uint64_t start_code, end_code, start_data, end_data, start_brk, brk, start_stack;
  uint64_t arg_start, arg_end, env_start, env_end;
  uint64_t auxv;
  uint32_t auxv_size;
  uint32_t exe_fd;
};
static_assert(sizeof(MmMap) == 104);

constexpr uint32_t kKeepExe = ~uint32_t{0};  // exe_fd -1: PR_SET_MM_MAP leaves exe alone (EPERM otherwise)
constexpr size_t kRobustListHeadBytes = 24;

uint64_t sigbit(int sig) { return uint64_t{1} << (sig - 1); }

}  // namespace

void set_rlimits(pid_t pid, const image::ProcessImage& image) {
  for (const image::Rlimit& r : image.rlimits) {
    struct rlimit64 lim {
      r.cur, r.max
    };
    if (::prlimit64(pid, static_cast<__rlimit_resource>(r.resource), &lim, nullptr) < 0) {
      log_warn("restore: rlimit {} of {} stays as it is: {}", r.resource, pid, std::strerror(errno));
    }
  }
}

void set_mm_map(RemoteSyscalls& rs, const image::ProcessImage& image) {
  const image::MmFields& mm = image.mm;
  std::vector<uint64_t> auxv;
  for (const image::AuxvEntry& e : mm.auxv) auxv.insert(auxv.end(), {e.type, e.value});
  auxv.insert(auxv.end(), {0, 0});  // AT_NULL
  ScratchMem auxv_mem(rs, std::as_bytes(std::span(auxv)));
  MmMap map{mm.start_code, mm.end_code,  mm.start_data, mm.end_data, mm.start_brk,
            mm.brk.value_or(mm.start_brk), mm.start_stack, mm.arg_start, mm.arg_end, mm.env_start,
            mm.env_end,    auxv_mem.get().addr(), static_cast<uint32_t>(auxv.size() * sizeof(uint64_t)), kKeepExe};
  ScratchMem map_mem = ScratchMem::holding(rs, map);
  rs.checked_syscall("prctl(PR_SET_MM_MAP)", SYS_prctl, PR_SET_MM, PR_SET_MM_MAP, map_mem.get(), sizeof map, 0);
}

void set_sigactions(RemoteSyscalls& rs, const image::ProcessImage& image) {
  if (!image.sigactions) throw RestoreError("the image has no signal handlers (capture without injection?)");
  // The stub's own dispositions: only those differing from SIG_DFL need resetting.
  std::string status = image::proc::read_file(rs.tracee().tid(), "status");
  uint64_t stub_set = image::proc::status_number(status, "SigCgt", 16) | image::proc::status_number(status, "SigIgn", 16);
  ScratchMem act(rs, sizeof(ptrace::KernelSigaction));
  auto act_ptr = act.get().cast<ptrace::KernelSigaction>();
  for (int sig = 1; sig <= static_cast<int>(image::kSignals); ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    const image::SigAction& a = (*image.sigactions)[static_cast<size_t>(sig - 1)];
    if (a == image::SigAction{} && (stub_set & sigbit(sig)) == 0) continue;
    rs.tracee().write(act_ptr, ptrace::KernelSigaction{a.handler, a.flags, a.restorer, a.mask});
    rs.checked_syscall("rt_sigaction", SYS_rt_sigaction, sig, act_ptr, 0, sizeof(uint64_t));
  }
}

void set_task_state(RemoteSyscalls& rs, const image::ProcessImage& image) {
  if (image.sigaltstack && !(image.sigaltstack->flags & SS_DISABLE)) {
    stack_t ss{};
    ss.ss_sp = reinterpret_cast<void*>(image.sigaltstack->sp);
    ss.ss_flags = image.sigaltstack->flags & ~SS_ONSTACK;
    ss.ss_size = image.sigaltstack->size;
    ScratchMem mem = ScratchMem::holding(rs, ss);
    rs.checked_syscall("sigaltstack", SYS_sigaltstack, mem.get(), 0);
  }
  rs.checked_syscall("set_tid_address", SYS_set_tid_address, image.clear_child_tid.value_or(0));
  if (image.robust_list && image.robust_list->len == kRobustListHeadBytes) {
    rs.checked_syscall("set_robust_list", SYS_set_robust_list, image.robust_list->head, image.robust_list->len);
  }
  rs.checked_syscall("personality", SYS_personality, image.personality);
  rs.checked_syscall("umask", SYS_umask, image.umask);
  if (!image.comm.empty()) {
    std::array<char, 16> name{};  // TASK_COMM_LEN, NUL included
    std::memcpy(name.data(), image.comm.data(), std::min(image.comm.size(), name.size() - 1));
    ScratchMem mem = ScratchMem::holding(rs, name);
    rs.checked_syscall("prctl(PR_SET_NAME)", SYS_prctl, PR_SET_NAME, mem.get(), 0, 0, 0);
  }
  if (image.misc.thp_disabled) rs.checked_syscall("prctl(PR_SET_THP_DISABLE)", SYS_prctl, PR_SET_THP_DISABLE, 1, 0, 0, 0);
  if (image.misc.no_new_privs) rs.checked_syscall("prctl(PR_SET_NO_NEW_PRIVS)", SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

// Armed last: itimers, then POSIX timers with their own ids (the kernel's
// PR_TIMER_CREATE_RESTORE_IDS, Linux 6.15+, takes the id from *timerid).
void set_timers(RemoteSyscalls& rs, const image::ProcessImage& image) {
  constexpr int kPrTimerCreateRestoreIds = 77;
  auto tv = [](uint64_t ns) { return timeval{static_cast<time_t>(ns / 1000000000), static_cast<suseconds_t>(ns % 1000000000 / 1000)}; };
  auto ts = [](uint64_t ns) { return timespec{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)}; };
  if (image.itimers) {
    for (int which = 0; which < 3; ++which) {
      const image::TimerValue& t = (*image.itimers)[static_cast<size_t>(which)];
      // A periodic timer caught right at its expiry reads 0 left, which
      // would disarm it: it fires at once instead.
      uint64_t left = t.value_ns == 0 && t.interval_ns != 0 ? 1000 : t.value_ns;
      itimerval v{tv(t.interval_ns), tv(left)};
      ScratchMem mem = ScratchMem::holding(rs, v);
      rs.checked_syscall("setitimer", SYS_setitimer, which, mem.get(), 0);
    }
  }
  if (image.posix_timers.empty()) return;
  long self = rs.syscall(SYS_gettid);
  long rc = rs.syscall(SYS_prctl, kPrTimerCreateRestoreIds, 1, 0, 0, 0);
  if (rc < 0) throw RestoreError("this kernel cannot recreate POSIX timers with their ids (PR_TIMER_CREATE_RESTORE_IDS)");
  for (const image::PosixTimer& t : image.posix_timers) {
    struct {
      uint64_t value;
      int32_t signo;
      int32_t notify;
      int32_t tid;
      int32_t pad[11];
    } ev{t.sigev_value, t.signo, t.sigev_notify, static_cast<int32_t>(self), {}};
    static_assert(sizeof ev == 64);
    ScratchMem evm = ScratchMem::holding(rs, ev);
    ScratchMem idm = ScratchMem::holding(rs, t.id);
    rc = rs.syscall(SYS_timer_create, t.clock, evm.get(), idm.get());
    if (rc < 0 || idm.read<int32_t>() != t.id)
      throw RestoreError(fmt::format("POSIX timer {} could not be recreated: {}", t.id, rc < 0 ? std::strerror(static_cast<int>(-rc)) : "another id"));
    if (t.time) {
      uint64_t left = t.time->value_ns == 0 && t.time->interval_ns != 0 ? 1000 : t.time->value_ns;
      itimerspec v{ts(t.time->interval_ns), ts(left)};
      ScratchMem vm = ScratchMem::holding(rs, v);
      rs.checked_syscall("timer_settime", SYS_timer_settime, t.id, 0, vm.get(), 0);
    }
  }
  rs.syscall(SYS_prctl, kPrTimerCreateRestoreIds, 0, 0, 0, 0);
}

void register_rseq(ptrace::Tracee& stub, RemotePtr<void> insn, const image::ProcessImage& image) {
  if (!image.rseq || image.rseq->addr == 0) return;
  // Registering makes the kernel check rseq_cs against the instruction
  // pointer on the way out, which is our syscall site: keep the saved field.
  auto cs = RemotePtr<uint64_t>(image.rseq->addr + 8);
  uint64_t saved_cs = stub.read(cs);
  {
    RemoteSyscalls rs(stub, insn);
    rs.checked_syscall("rseq (register)", SYS_rseq, image.rseq->addr, image.rseq->len, 0, image.rseq->signature);
  }
  if (stub.read(cs) != saved_cs) stub.write(cs, saved_cs);
}

void set_registers(ptrace::Tracee& stub, const image::ProcessImage& image) {
  if (!image.regs || image.regs->gp.size() != sizeof(ptrace::Regs)) {
    throw RestoreError("the image has no general registers (capture without injection?)");
  }
  ptrace::Regs r;
  std::memcpy(&r, image.regs->gp.data(), sizeof r);
  // A call interrupted at home is re-issued here: its restart state belongs
  // to the old task.
  stub.set_regs(ptrace::regs_for_restart(r));
  if (!image.regs->xstate.empty()) {
    stub.set_xstate(std::span(reinterpret_cast<const uint8_t*>(image.regs->xstate.data()), image.regs->xstate.size()));
  }
  stub.set_signal_mask(image.signals.blocked);
}

}  // namespace roam::restore::detail
