#include "roam/ptrace.hpp"

#include <cpuid.h>
#include <elf.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <pthread.h>
#include <sys/ptrace.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

#include <fmt/format.h>

#include "roam/error.hpp"
#include "roam/log.hpp"

namespace roam::ptrace {
namespace {

// Reads and writes of at least this many bytes try process_vm_readv /
// process_vm_writev first: they copy straight to or from the tracee's
// pages, where /proc/PID/mem goes through a bounce page per 4 KiB (3.0
// against 1.7-2.5 GB/s into fresh pages on the dev VM). They stop at a page
// the tracee may not access that way (read-only, PROT_NONE): /proc/PID/mem,
// which forces access, does the rest.
constexpr std::size_t kBulkRead = 16 * 1024;

pid_t tgid_of(pid_t tid) {
  std::ifstream status(fmt::format("/proc/{}/status", tid));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Tgid:", 0) == 0) return static_cast<pid_t>(std::stol(line.substr(5)));
  }
  throw SysError(fmt::format("reading Tgid of thread {}", tid), ESRCH);
}

Stop decode_stop(int status) {
  Stop s;
  s.sig = WSTOPSIG(status);
  s.event = (status >> 16) & 0xff;
  if (s.event == PTRACE_EVENT_STOP) {
    s.kind = s.sig == SIGTRAP ? StopKind::interrupt : StopKind::group;
  } else if (s.event != 0) {
    s.kind = StopKind::ptrace_event;
  } else if (s.sig == (SIGTRAP | 0x80)) {
    s.kind = StopKind::syscall;
  } else {
    s.kind = StopKind::signal_delivery;
  }
  return s;
}

std::string describe_death(pid_t tid, int status) {
  if (WIFEXITED(status)) return fmt::format("tracee {} exited with status {}", tid, WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("tracee {} was killed by signal {}", tid, WTERMSIG(status));
  return fmt::format("tracee {} is gone", tid);
}

}  // namespace

TraceeDied::TraceeDied(pid_t tid, int wait_status)
    : std::runtime_error(describe_death(tid, wait_status)), tid_(tid), status_(wait_status) {}
bool TraceeDied::exited() const noexcept { return WIFEXITED(status_); }
int TraceeDied::exit_code() const noexcept { return WEXITSTATUS(status_); }
bool TraceeDied::killed() const noexcept { return WIFSIGNALED(status_); }
int TraceeDied::signal() const noexcept { return WTERMSIG(status_); }

unsigned long TraceOptions::ptrace_bits() const {
  unsigned long bits = 0;
  if (has(TraceOption::sysgood)) bits |= PTRACE_O_TRACESYSGOOD;
  if (has(TraceOption::exit_kill)) bits |= PTRACE_O_EXITKILL;
  if (has(TraceOption::suspend_seccomp)) bits |= PTRACE_O_SUSPEND_SECCOMP;
  return bits;
}

Tracee::Tracee(pid_t tid, pid_t tgid, TraceOptions opts)
    : tid_(tid), tgid_(tgid), tracer_tid_(static_cast<pid_t>(::gettid())), state_(State::running), options_(opts) {}

Tracee Tracee::seize(pid_t tid, TraceOptions opts) {
  pid_t tgid = tgid_of(tid);
  if (::ptrace(PTRACE_SEIZE, tid, nullptr, reinterpret_cast<void*>(opts.ptrace_bits())) < 0) {
    throw SysError(fmt::format("PTRACE_SEIZE of thread {}", tid), errno);
  }
  Tracee t(tid, tgid, opts);
  // Opened as the tracer: on kernels that allow forced writes only to a
  // ptracer (proc_mem.force_override=ptrace) this is what makes writes to
  // read-only pages work.
  int fd = ::open(fmt::format("/proc/{}/mem", tid).c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) throw SysError(fmt::format("opening /proc/{}/mem", tid), errno);
  t.mem_.reset(fd);
  return t;
}

Tracee::Tracee(Tracee&& other) noexcept
    : tid_(other.tid_),
      tgid_(other.tgid_),
      tracer_tid_(other.tracer_tid_),
      state_(std::exchange(other.state_, State::detached)),
      stop_(other.stop_),
      options_(other.options_),
      mem_(std::move(other.mem_)),
      death_status_(other.death_status_) {}

Tracee& Tracee::operator=(Tracee&& other) noexcept {
  if (this != &other) {
    release();
    tid_ = other.tid_;
    tgid_ = other.tgid_;
    tracer_tid_ = other.tracer_tid_;
    state_ = std::exchange(other.state_, State::detached);
    stop_ = other.stop_;
    options_ = other.options_;
    mem_ = std::move(other.mem_);
    death_status_ = other.death_status_;
  }
  return *this;
}

Tracee::~Tracee() { release(); }

void Tracee::release() noexcept {
  if (!alive()) return;
  try {
    detach();
  } catch (const TraceeDied&) {
    // Gone already; nothing to give back.
  } catch (const std::exception& e) {
    log_warn("ptrace: detaching from {} failed: {}", tid_, e.what());
  }
}

void Tracee::assert_tracer_thread() const {
  ROAM_ASSERT(static_cast<pid_t>(::gettid()) == tracer_tid_,
              fmt::format("tracee {} used from thread {}, seized by {}", tid_, ::gettid(), tracer_tid_));
}

void Tracee::assert_stopped(const char* what) const {
  ROAM_ASSERT(state_ == State::stopped, fmt::format("{} needs tracee {} in a ptrace-stop", what, tid_));
}

long Tracee::request(int req, void* addr, void* data, const char* what) {
  assert_tracer_thread();
  long rc = ::ptrace(static_cast<__ptrace_request>(req), tid_, addr, data);
  if (rc < 0) fail(what, errno);
  return rc;
}

void Tracee::fail(const char* what, int err) {
  // A tracee we hold in a ptrace-stop only stops answering (ESRCH) when it
  // has been killed: collect its death.
  if (err == ESRCH && state_ == State::stopped) wait_for_death();
  throw SysError(fmt::format("{} on tracee {}", what, tid_), err);
}

void Tracee::wait_for_death() {
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(tid_, &status, __WALL);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      state_ = State::dead;
      mem_.reset();
      throw SysError(fmt::format("waitpid for tracee {}", tid_), errno);
    }
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
      state_ = State::dead;
      stop_ = {};
      mem_.reset();
      death_status_ = status;
      throw TraceeDied(tid_, status);
    }
    if (WIFSTOPPED(status)) {
      state_ = State::stopped;
      stop_ = decode_stop(status);
      throw SysError(fmt::format("tracee {} was not in a ptrace-stop", tid_), ESRCH);
    }
  }
}

void Tracee::throw_if_killed() {
  if (state_ != State::stopped) return;
  uint64_t mask = 0;
  if (::ptrace(PTRACE_GETSIGMASK, tid_, sizeof mask, &mask) < 0 && errno == ESRCH) wait_for_death();
}

Stop Tracee::wait_stop() { return *wait_stop_as(__WALL); }

std::optional<Stop> Tracee::try_wait_stop() { return wait_stop_as(__WALL | WNOHANG); }

std::optional<Stop> Tracee::wait_stop_as(int flags) {
  assert_tracer_thread();
  ROAM_ASSERT(state_ == State::running, fmt::format("wait_stop on tracee {} that is not running", tid_));
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(tid_, &status, flags);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw SysError(fmt::format("waitpid for tracee {}", tid_), errno);
    }
    if (r == 0) return std::nullopt;  // WNOHANG: still running
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
      state_ = State::dead;
      stop_ = {};
      mem_.reset();
      death_status_ = status;
      throw TraceeDied(tid_, status);
    }
    if (!WIFSTOPPED(status)) continue;
    state_ = State::stopped;
    stop_ = decode_stop(status);
    return stop_;
  }
}

void Tracee::resume_as(Resume how, int sig) {
  assert_stopped("resume");
  int req = PTRACE_CONT;
  switch (how) {
    case Resume::cont: req = PTRACE_CONT; break;
    case Resume::syscall: req = PTRACE_SYSCALL; break;
    case Resume::single_step: req = PTRACE_SINGLESTEP; break;
    case Resume::listen: req = PTRACE_LISTEN; sig = 0; break;
  }
  request(req, nullptr, reinterpret_cast<void*>(static_cast<long>(sig)), "resuming");
  state_ = State::running;
  stop_ = {};
}

void Tracee::interrupt() {
  assert_tracer_thread();
  ROAM_ASSERT(state_ == State::running, fmt::format("interrupt of tracee {} that is not running", tid_));
  if (::ptrace(PTRACE_INTERRUPT, tid_, nullptr, nullptr) < 0) {
    // Only a tracee on its way out refuses: its death is what wait reports.
    if (errno != ESRCH) throw SysError(fmt::format("PTRACE_INTERRUPT on tracee {}", tid_), errno);
  }
  settle_in_interrupt_stop();
}

void Tracee::request_interrupt() {
  assert_tracer_thread();
  ROAM_ASSERT(state_ == State::running, fmt::format("interrupt of tracee {} that is not running", tid_));
  if (::ptrace(PTRACE_INTERRUPT, tid_, nullptr, nullptr) < 0 && errno != ESRCH)
    throw SysError(fmt::format("PTRACE_INTERRUPT on tracee {}", tid_), errno);
}

void Tracee::settle() { settle_in_interrupt_stop(); }

void Tracee::reinterrupt() {
  assert_stopped("reinterrupt");
  request(PTRACE_INTERRUPT, nullptr, nullptr, "PTRACE_INTERRUPT");
  resume_as(Resume::cont, 0);
  settle_in_interrupt_stop();
}

void Tracee::settle_in_interrupt_stop() {
  for (;;) {
    Stop s = wait_stop();
    if (s.kind == StopKind::interrupt || s.kind == StopKind::group) return;
    // Any ptrace-stop clears a pending PTRACE_INTERRUPT (ptrace_stop: "any
    // trap clears pending STOP trap"): a syscall- or event-stop reached
    // after our request would swallow it. Asking again from inside a stop
    // guarantees one more trap once it ends. A signal is passed on at once:
    // that trap then comes right after the kernel has set up the handler
    // frame (or applied the default action), before any user instruction.
    request(PTRACE_INTERRUPT, nullptr, nullptr, "PTRACE_INTERRUPT");
    resume_as(Resume::cont, s.kind == StopKind::signal_delivery ? s.sig : 0);
  }
}

void Tracee::resume() {
  assert_stopped("resume");
  switch (stop_.kind) {
    case StopKind::group: resume_as(Resume::listen); break;
    case StopKind::signal_delivery: resume_as(Resume::cont, stop_.sig); break;
    default: resume_as(Resume::cont, 0); break;
  }
}

void Tracee::detach() {
  if (!alive()) return;
  if (state_ == State::running) interrupt();
  int sig = stop_.kind == StopKind::signal_delivery ? stop_.sig : 0;
  request(PTRACE_DETACH, nullptr, reinterpret_cast<void*>(static_cast<long>(sig)), "PTRACE_DETACH");
  state_ = State::detached;
  stop_ = {};
  mem_.reset();
}

void Tracee::set_options(TraceOptions opts) {
  assert_stopped("set_options");
  request(PTRACE_SETOPTIONS, nullptr, reinterpret_cast<void*>(opts.ptrace_bits()), "PTRACE_SETOPTIONS");
  options_ = opts;
}

std::vector<SeccompProgram> seccomp_filters(Tracee& t) {
  std::vector<SeccompProgram> out;
  for (unsigned long index = 0;; ++index) {
    long n = ::ptrace(PTRACE_SECCOMP_GET_FILTER, t.tid(), reinterpret_cast<void*>(index), nullptr);
    if (n < 0 && errno == ENOENT) break;  // past the oldest
    if (n < 0 && errno == EINVAL && index == 0) break;  // no filter at all (seccomp mode 0)
    if (n < 0) throw SysError(fmt::format("PTRACE_SECCOMP_GET_FILTER {} of thread {}", index, t.tid()), errno);
    std::vector<sock_filter> prog(static_cast<size_t>(n));
    long got = ::ptrace(PTRACE_SECCOMP_GET_FILTER, t.tid(), reinterpret_cast<void*>(index), prog.data());
    if (got != n) throw SysError(fmt::format("PTRACE_SECCOMP_GET_FILTER {} of thread {}", index, t.tid()), errno);
    __ptrace_seccomp_metadata meta{index, 0};
    if (::ptrace(PTRACE_SECCOMP_GET_METADATA, t.tid(), reinterpret_cast<void*>(sizeof meta), &meta) < 0)
      throw SysError(fmt::format("PTRACE_SECCOMP_GET_METADATA {} of thread {}", index, t.tid()), errno);
    SeccompProgram p;
    p.flags = meta.flags;
    p.insns.reserve(prog.size());
    for (const sock_filter& f : prog)
      p.insns.push_back(uint64_t{f.code} | uint64_t{f.jt} << 16 | uint64_t{f.jf} << 24 | uint64_t{f.k} << 32);
    out.push_back(std::move(p));
  }
  return out;
}

Regs Tracee::regs() {
  assert_stopped("regs");
  Regs r{};
  request(PTRACE_GETREGS, nullptr, &r, "PTRACE_GETREGS");
  return r;
}

void Tracee::set_regs(const Regs& r) {
  assert_stopped("set_regs");
  request(PTRACE_SETREGS, nullptr, const_cast<Regs*>(&r), "PTRACE_SETREGS");
}

std::size_t Tracee::xstate_size_hint() {
  static const std::size_t size = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    // EBX: the size for the features enabled in XCR0; ECX: for every
    // feature the CPU supports. The kernel's regset is never larger.
    if (!__get_cpuid_count(0xd, 0, &a, &b, &c, &d)) return std::size_t{4096};
    return std::max<std::size_t>({b, c, 512 + 64});
  }();
  return size;
}

std::size_t Tracee::xstate_component_offset(unsigned component) {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (component < 2 || !__get_cpuid_count(0xd, component, &a, &b, &c, &d)) return 0;
  return b;
}

std::vector<uint8_t> Tracee::xstate() {
  assert_stopped("xstate");
  std::vector<uint8_t> buf(xstate_size_hint());
  iovec iov{buf.data(), buf.size()};
  request(PTRACE_GETREGSET, reinterpret_cast<void*>(NT_X86_XSTATE), &iov, "PTRACE_GETREGSET NT_X86_XSTATE");
  buf.resize(iov.iov_len);
  return buf;
}

void Tracee::set_xstate(std::span<const uint8_t> xstate) {
  assert_stopped("set_xstate");
  iovec iov{const_cast<uint8_t*>(xstate.data()), xstate.size()};
  request(PTRACE_SETREGSET, reinterpret_cast<void*>(NT_X86_XSTATE), &iov, "PTRACE_SETREGSET NT_X86_XSTATE");
}

uint64_t Tracee::signal_mask() {
  assert_stopped("signal_mask");
  uint64_t mask = 0;
  request(PTRACE_GETSIGMASK, reinterpret_cast<void*>(sizeof mask), &mask, "PTRACE_GETSIGMASK");
  return mask;
}

void Tracee::set_signal_mask(uint64_t mask) {
  assert_stopped("set_signal_mask");
  request(PTRACE_SETSIGMASK, reinterpret_cast<void*>(sizeof mask), &mask, "PTRACE_SETSIGMASK");
}

siginfo_t Tracee::siginfo() {
  assert_stopped("siginfo");
  siginfo_t info{};
  request(PTRACE_GETSIGINFO, nullptr, &info, "PTRACE_GETSIGINFO");
  return info;
}

std::optional<RseqConfig> Tracee::rseq_config() {
  assert_stopped("rseq_config");
  struct {
    uint64_t rseq_abi_pointer;
    uint32_t rseq_abi_size;
    uint32_t signature;
    uint32_t flags;
    uint32_t pad;
  } conf{};
  request(PTRACE_GET_RSEQ_CONFIGURATION, reinterpret_cast<void*>(sizeof conf), &conf,
          "PTRACE_GET_RSEQ_CONFIGURATION");
  if (conf.rseq_abi_pointer == 0) return std::nullopt;
  return RseqConfig{RemotePtr<void>(conf.rseq_abi_pointer), conf.rseq_abi_size, conf.signature, conf.flags};
}

RobustList Tracee::robust_list() {
  uint64_t head = 0;
  std::size_t len = 0;
  if (::syscall(SYS_get_robust_list, tid_, &head, &len) < 0) {
    throw SysError(fmt::format("get_robust_list of tracee {}", tid_), errno);
  }
  return RobustList{RemotePtr<void>(head), len};
}

void Tracee::read_mem(RemotePtr<void> addr, std::span<std::byte> out) {
  ROAM_ASSERT(mem_.valid(), fmt::format("read_mem on tracee {} that is not attached", tid_));
  std::size_t done = 0;
  if (out.size() >= kBulkRead) {
    iovec local{out.data(), out.size()};
    iovec remote{reinterpret_cast<void*>(addr.addr()), out.size()};
    ssize_t n = ::process_vm_readv(tid_, &local, 1, &remote, 1, 0);
    if (n > 0) done = static_cast<std::size_t>(n);
  }
  while (done < out.size()) {
    ssize_t n = ::pread(mem_.get(), out.data() + done, out.size() - done, static_cast<off_t>(addr.addr() + done));
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    int err = n == 0 ? EIO : errno;
    // A killed tracee's memory reads as empty; report the death instead.
    throw_if_killed();
    throw SysError(fmt::format("reading {} bytes at {:#x} in tracee {}", out.size() - done, addr.addr() + done, tid_),
                   err);
  }
}

void Tracee::write_mem(RemotePtr<void> addr, std::span<const std::byte> in) {
  ROAM_ASSERT(mem_.valid(), fmt::format("write_mem on tracee {} that is not attached", tid_));
  std::size_t done = 0;
  if (in.size() >= kBulkRead) {
    iovec local{const_cast<std::byte*>(in.data()), in.size()};
    iovec remote{reinterpret_cast<void*>(addr.addr()), in.size()};
    ssize_t n = ::process_vm_writev(tid_, &local, 1, &remote, 1, 0);
    if (n > 0) done = static_cast<std::size_t>(n);
  }
  while (done < in.size()) {
    ssize_t n = ::pwrite(mem_.get(), in.data() + done, in.size() - done, static_cast<off_t>(addr.addr() + done));
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    int err = n == 0 ? EIO : errno;
    throw_if_killed();
    throw SysError(fmt::format("writing {} bytes at {:#x} in tracee {}", in.size() - done, addr.addr() + done, tid_),
                   err);
  }
}

StopWakeups::StopWakeups() {
  sigset_t chld, old;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  if (int err = ::pthread_sigmask(SIG_BLOCK, &chld, &old); err != 0) throw SysError("blocking SIGCHLD", err);
  was_blocked_ = sigismember(&old, SIGCHLD) == 1;
  int fd = ::signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (!was_blocked_) ::pthread_sigmask(SIG_UNBLOCK, &chld, nullptr);
    throw SysError("signalfd(SIGCHLD)", err);
  }
  fd_.reset(fd);
}

StopWakeups::~StopWakeups() {
  fd_.reset();
  if (was_blocked_) return;
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  ::pthread_sigmask(SIG_UNBLOCK, &chld, nullptr);
}

void StopWakeups::drain() noexcept {
  signalfd_siginfo si[8];
  while (::read(fd_.get(), si, sizeof si) > 0) {
  }
}

}  // namespace roam::ptrace
