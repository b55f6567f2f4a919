// capture: the ptrace half of a process image (see capture.hpp).
#include "roam/capture.hpp"

#include <signal.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "roam/error.hpp"
#include "roam/image_migratable.hpp"
#include "roam/image_proc.hpp"
#include "roam/remote_syscall.hpp"

namespace roam::image {

void fill_timers(ptrace::RemoteSyscalls& rs, ProcessImage& image);

namespace {

// mlockall(MCL_FUTURE) lives in the mm's default flags, which /proc does not
// show: a page is mapped in the process to see whether it comes locked (its
// VmLck grows) and, if so, whether it was faulted in (MCL_ONFAULT: not).
// Only asked when some region is locked: a process that set MCL_FUTURE and
// has mapped nothing since (nor had MCL_CURRENT) is taken for one without.
uint32_t mlockall_flags(ptrace::RemoteSyscalls& rs, pid_t pid) {
  auto locked_kib = [&] {
    auto v = proc::status_field(proc::read_file(pid, "status"), "VmLck");  // "32 kB"
    return v ? std::strtoull(v->c_str(), nullptr, 10) : 0;
  };
  uint64_t before = locked_kib();
  long page = rs.syscall(SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (page < 0 && page > -4096) return 0;  // no memory for the probe: nothing learnt
  uint32_t flags = 0;
  if (locked_kib() > before) {
    flags = MCL_FUTURE;
    ptrace::ScratchMem vec(rs, 1);
    if (rs.syscall(SYS_mincore, page, 4096, vec.get()) == 0 && (vec.read<uint8_t>() & 1) == 0) flags |= MCL_ONFAULT;
  }
  rs.syscall(SYS_munmap, page, 4096);
  return flags;
}

}  // namespace

void fill_injected(ptrace::Tracee& tracee, ProcessImage& image, bool body_filter) {
  ptrace::Regs regs = tracee.regs();
  Registers r;
  r.gp.resize(sizeof regs);
  std::memcpy(r.gp.data(), &regs, sizeof regs);
  std::vector<uint8_t> xs = tracee.xstate();
  r.xstate.resize(xs.size());
  std::memcpy(r.xstate.data(), xs.data(), xs.size());
  image.regs = std::move(r);
  // /proc's SigBlk is the temporary mask of a thread in sigsuspend/ppoll;
  // PTRACE_GETSIGMASK gives the one it returns to.
  image.signals.blocked = tracee.signal_mask();

  if (auto rseq = tracee.rseq_config()) {
    image.rseq = Rseq{rseq->abi.addr(), rseq->size, rseq->signature, rseq->flags};
  }
  if (!image.robust_list) {
    ptrace::RobustList rl = tracee.robust_list();
    image.robust_list = RobustList{rl.head.addr(), rl.len};
  }

  ptrace::RemoteSyscalls rs(tracee, ptrace::SyscallSite::any, ptrace::StepMode::single_step);
  static_assert(kSignals == 64);
  std::array<SigAction, kSignals> actions{};
  std::array<ptrace::KernelSigaction, 64> all = ptrace::all_sigactions(rs, body_filter);
  for (size_t i = 0; i < kSignals; ++i) actions[i] = SigAction{all[i].handler, all[i].flags, all[i].restorer, all[i].mask};
  image.sigactions = actions;
  image.mm.brk = ptrace::current_brk(rs).addr();
  image.clear_child_tid = ptrace::tid_address(rs).addr();
  ptrace::AltStack ss = ptrace::sigaltstack_of(rs);
  image.sigaltstack = SigAltStack{ss.sp.addr(), ss.flags, ss.size};
  fill_timers(rs, image);
  if (std::any_of(image.vmas.begin(), image.vmas.end(), [](const ImageVma& iv) { return iv.vma.has(kVmLocked); }))
    image.misc.mlockall_future = mlockall_flags(rs, tracee.tid());
}

// itimers (getitimer x 3: /proc shows none) and each POSIX timer's time.
void fill_timers(ptrace::RemoteSyscalls& rs, ProcessImage& image) {
  auto ns = [](const timeval& tv) { return static_cast<uint64_t>(tv.tv_sec) * 1000000000 + static_cast<uint64_t>(tv.tv_usec) * 1000; };
  auto ns_ts = [](const timespec& ts) { return static_cast<uint64_t>(ts.tv_sec) * 1000000000 + static_cast<uint64_t>(ts.tv_nsec); };
  std::array<TimerValue, 3> it{};
  for (int which = 0; which < 3; ++which) {
    ptrace::ScratchMem out(rs, sizeof(itimerval));
    rs.checked_syscall("getitimer", SYS_getitimer, which, out.get());
    auto v = out.read<itimerval>();
    it[static_cast<size_t>(which)] = TimerValue{ns(v.it_interval), ns(v.it_value)};
  }
  image.itimers = it;
  for (PosixTimer& t : image.posix_timers) {
    ptrace::ScratchMem out(rs, sizeof(itimerspec));
    long rc = rs.syscall(SYS_timer_gettime, t.id, out.get());
    if (rc < 0) continue;  // deleted meanwhile
    auto v = out.read<itimerspec>();
    t.time = TimerValue{ns_ts(v.it_interval), ns_ts(v.it_value)};
  }
}

bool future_locking_needs_privilege(const ProcessImage& image) {
  if (!image.misc.ipc_lock || (image.misc.mlockall_future & MCL_FUTURE) == 0) return false;
  for (const Rlimit& r : image.rlimits)
    if (r.resource == RLIMIT_MEMLOCK) return r.cur != RLIM_INFINITY;
  return false;
}

std::vector<PageRun> pages_to_send(const ProcessImage& image, std::span<const uint64_t> mismatched) {
  // A deleted file has no name a restore could open: its content travels.
  std::vector<uint64_t> unmappable(mismatched.begin(), mismatched.end());
  for (const ImageVma& iv : image.vmas)
    if (iv.vma.kind == VmaKind::deleted_file) unmappable.push_back(iv.vma.start);
  return runs_to_send(image, unmappable);
}

uint64_t content_bytes(const ProcessImage& image, std::span<const uint64_t> mismatched) {
  uint64_t n = 0;
  if (!image.pages.empty()) {
    for (const PageData& p : image.pages) n += p.bytes.size();
    return n;
  }
  for (const PageRun& r : pages_to_send(image, mismatched)) n += r.bytes();
  return n;
}

void fill_pages(pid_t pid, ProcessImage& image) {
  std::vector<PageRun> runs = pages_to_send(image);
  // One PageData per stretch of contiguous runs, reserved up front, so
  // pages are copied once and no buffer is reallocated on the way.
  std::vector<std::pair<uint64_t, uint64_t>> stretches;  // start, end
  for (const PageRun& r : runs) {
    if (!stretches.empty() && stretches.back().second == r.start) {
      stretches.back().second = r.end();
    } else {
      stretches.emplace_back(r.start, r.end());
    }
  }
  image.pages.clear();
  image.pages.resize(stretches.size());
  for (size_t i = 0; i < stretches.size(); ++i) {
    image.pages[i].addr = stretches[i].first;
    image.pages[i].bytes.reserve(stretches[i].second - stretches[i].first);
  }
  size_t at = 0;
  read_pages(pid, runs, [&](uint64_t addr, std::span<const std::byte> data) {
    while (at < stretches.size() && stretches[at].second <= addr) ++at;
    ROAM_ASSERT(at < stretches.size() && image.pages[at].addr + image.pages[at].bytes.size() == addr &&
                    addr + data.size() <= stretches[at].second,
                fmt::format("read_pages delivered {:#x}+{} out of order", addr, data.size()));
    auto& bytes = image.pages[at].bytes;
    bytes.insert(bytes.end(), data.begin(), data.end());
  });
}

Frozen capture(pid_t pid, const CaptureOptions& options) {
  ptrace::Tracee t = ptrace::Tracee::seize(pid);
  t.interrupt();
  return capture_stopped(std::move(t), options);
}

namespace {

// Whether a filter can hand a call to a supervisor (SECCOMP_RET_USER_NOTIF):
// that supervisor holds the listener at home, and no body can reach it. A
// computed return value (BPF_RET | BPF_A) is taken as one that could.
bool notifies_supervisor(const SeccompFilter& f) {
  for (uint64_t insn : f.insns) {
    auto code = static_cast<uint16_t>(insn & 0xffff);
    auto k = static_cast<uint32_t>(insn >> 32);
    if (BPF_CLASS(code) != BPF_RET) continue;
    if (BPF_RVAL(code) == BPF_A) return true;
    if ((k & SECCOMP_RET_ACTION_FULL) == SECCOMP_RET_USER_NOTIF) return true;
  }
  return false;
}

// A process under seccomp filters other than a body's own: they are
// suspended while we trace it (our injections could be refused, or kill
// it), and, unless it is a body, read for the image, the oldest first.
void take_seccomp_filters(Frozen& f, const std::string& status, bool body_filter) {
  if (proc::status_number(status, "Seccomp") != 2) return;
  auto count = proc::status_field(status, "Seccomp_filters");
  bool only_roams = body_filter && count && std::strtoull(count->c_str(), nullptr, 10) == 1;
  if (only_roams) return;  // roam's body filter lets every injection through
  if (!f.tracee.options().has(ptrace::TraceOption::suspend_seccomp))
    f.tracee.set_options(f.tracee.options().with(ptrace::TraceOption::suspend_seccomp));
  if (body_filter) return;  // the deputy at home kept the program's
  for (ptrace::SeccompProgram& p : ptrace::seccomp_filters(f.tracee)) {
    SeccompFilter filter{static_cast<uint32_t>(p.flags), std::move(p.insns)};
    if (notifies_supervisor(filter))
      throw UserError(fmt::format("process {} cannot migrate: runs under a seccomp filter that hands calls to a "
                                  "supervisor (SECCOMP_RET_USER_NOTIF), which roam cannot carry",
                                  f.tracee.tid()));
    f.image.seccomp_filters.push_back(std::move(filter));
  }
}

}  // namespace

Frozen capture_stopped(ptrace::Tracee tracee, const CaptureOptions& options) {
  using Clock = std::chrono::steady_clock;
  auto since = [](Clock::time_point& mark) {
    auto now = Clock::now();
    auto d = std::chrono::duration_cast<std::chrono::microseconds>(now - mark);
    mark = now;
    return d;
  };
  pid_t pid = tracee.tid();
  Frozen f{std::move(tracee), {}, {}, {}};
  f.frozen_at = std::chrono::steady_clock::now();
  auto mark = Clock::now();
  std::vector<Vma> vmas;
  Migratability m;
  try {
    vmas = read_maps(pid);
    m = migratable(pid, static_cast<pid_t>(::gettid()), vmas);
  } catch (const SysError&) {
    m = migratable(pid, static_cast<pid_t>(::gettid()));  // the reason, for a process that went
    if (m) throw;
  }
  if (!m) throw UserError(fmt::format("process {} cannot migrate: {}", pid, m.reason));
  f.image = capture_from_proc(pid, options, std::move(vmas));
  take_seccomp_filters(f, proc::read_file(pid, "status"), options.body_filter);
  f.times.proc = since(mark);
  fill_injected(f.tracee, f.image, options.body_filter);
  f.times.injected = since(mark);
  if (options.contents) fill_pages(pid, f.image);
  f.times.pages = since(mark);
  return f;
}

int kill_frozen(Frozen& frozen) {
  pid_t pid = frozen.tracee.tid();
  if (::kill(pid, SIGKILL) < 0) throw SysError(fmt::format("kill({}, SIGKILL)", pid), errno);
  try {
    frozen.tracee.resume_as(ptrace::Resume::cont, 0);
    for (;;) frozen.tracee.wait_stop();
  } catch (const ptrace::TraceeDied& d) {
    return d.wait_status();
  }
}

}  // namespace roam::image
