// The deputy/body split on one machine: see split.hpp.
#include "roam/split.hpp"

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <span>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "roam/body_filter.hpp"
#include "roam/capture.hpp"
#include "roam/error.hpp"
#include "roam/fd.hpp"
#include "roam/ptrace.hpp"
#include "roam/remote_syscall.hpp"
#include "roam/restore.hpp"
#include "roam/syscalls.hpp"
#include "roam/seccomp_compat.hpp"


namespace roam::split {

using ptrace::KernelSigaction;
using ptrace::Regs;
using ptrace::RemotePtr;
using ptrace::RemoteSyscalls;
using ptrace::ScratchMem;
using ptrace::Tracee;

namespace {

constexpr std::size_t kMaxIo = std::size_t{1} << 20;  // one forwarded transfer at most
// How often the agent looks for signals queued at the frozen deputy while
// nothing else wakes it (see forward_deputy_signals).
constexpr int kSignalPollMs = 1;

// struct sock_fprog with the filter pointer as an address in the body.
struct RemoteFprog {
  unsigned short len = 0;
  uint64_t filter = 0;
};
static_assert(sizeof(RemoteFprog) == sizeof(sock_fprog));
static_assert(offsetof(RemoteFprog, filter) == offsetof(sock_fprog, filter));

std::vector<std::string> list_fds(pid_t pid) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(fmt::format("/proc/{}/fd", pid), ec))
    names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

struct Range {
  uint64_t begin = 0, end = 0;
};

Range vdso_of(pid_t pid) {
  std::ifstream maps(fmt::format("/proc/{}/maps", pid));
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find("[vdso]") == std::string::npos) continue;
    Range r;
    std::sscanf(line.c_str(), "%lx-%lx", &r.begin, &r.end);
    return r;
  }
  throw SysError(fmt::format("no [vdso] in /proc/{}/maps", pid), ENOENT);
}

// The deputy's identity as /proc shows it (it cannot change while frozen).
struct Identity {
  pid_t ppid = -1;
  long uid = -1, euid = -1, gid = -1, egid = -1;
};

Identity identity_of(pid_t pid) {
  std::ifstream status(fmt::format("/proc/{}/status", pid));
  std::string line;
  Identity id;
  while (std::getline(status, line)) {
    std::istringstream in(line);
    std::string key;
    in >> key;
    if (key == "PPid:") in >> id.ppid;
    if (key == "Uid:") in >> id.uid >> id.euid;
    if (key == "Gid:") in >> id.gid >> id.egid;
  }
  if (id.ppid < 0 || id.uid < 0 || id.gid < 0) throw SysError(fmt::format("/proc/{}/status unreadable", pid), EIO);
  return id;
}

FileDesc pidfd_of(pid_t pid) {
  return FileDesc(check_sys(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)), fmt::format("pidfd_open {}", pid)));
}

// A notified call this slice does not serve: body and deputy die.
class Unserved : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// What goes back to the body.
struct Answer {
  int64_t val = 0;
  int error = 0;  // -errno, or 0
  bool cont = false;

  static Answer of(long rc) {
    if (rc < 0 && rc > -4096) return {0, static_cast<int>(rc), false};
    return {rc, 0, false};
  }
  static Answer errno_(int err) { return {0, -err, false}; }
  static Answer continue_() { return {0, 0, true}; }
};

const char* name_of(int nr) {
  const SyscallInfo* info = syscall_info(nr);
  return info ? info->name : "unknown";
}

}  // namespace

class SplitAgent {
 public:
  explicit SplitAgent(pid_t original) : deputy_pid_(original) {}

  void start() {
    std::future<SplitSetup> ready = ready_.get_future();
    thread_ = std::thread([this] { run(); });
    try {
      setup_ = ready.get();
    } catch (...) {
      thread_.join();
      throw;
    }
  }

  const SplitSetup& setup() const { return setup_; }

  SplitOutcome wait() {
    if (thread_.joinable()) thread_.join();
    return std::move(outcome_);
  }

  void abort() {
    if (!thread_.joinable()) return;
    if (setup_.body > 0) ::kill(setup_.body, SIGKILL);
    thread_.join();
  }

 private:
  void run() {
    std::optional<image::Frozen> frozen;
    std::optional<Tracee> stub;
    SplitSetup setup;
    try {
      frozen.emplace(image::capture(deputy_pid_));
      id_ = identity_of(deputy_pid_);
      deputy_pidfd_ = pidfd_of(deputy_pid_);
      stub.emplace(restore::spawn_stub({}));
      body_ = stub->tid();
      restore::restore_into(*stub, frozen->image);
      body_pidfd_ = pidfd_of(body_);
      install_filter(*stub, setup);
      setup.deputy = deputy_pid_;
      setup.body = body_;
      stub->detach();
    } catch (...) {
      if (body_ > 0) {
        ::kill(body_, SIGKILL);
        stub.reset();
        ::waitpid(body_, nullptr, __WALL);
      }
      ready_.set_exception(std::current_exception());
      return;  // the Frozen goes: the original runs on
    }
    deputy_ = &frozen->tracee;
    ready_.set_value(setup);
    serve();
    int status = 0;
    while (::waitpid(body_, &status, __WALL) < 0 && errno == EINTR) {
    }
    outcome_.body_status = status;
    if (!deputy_dead_ && !deputy_->alive()) deputy_gone();
    if (deputy_dead_) {
      cache_.clear();
      return;
    }
    try {
      replay_death(status);
      outcome_.deputy_replayed = true;
    } catch (const std::exception& e) {
      outcome_.log.push_back(fmt::format("replaying the body's death in the deputy failed: {}", e.what()));
      ::kill(deputy_pid_, SIGKILL);
    }
    cache_.clear();
  }

  // prctl(PR_SET_NO_NEW_PRIVS) and seccomp(NEW_LISTENER) injected into the
  // stopped body; calls from the vDSO's syscall site stay allowed, so the
  // injection that follows (close) and later ones pass the filter.
  void install_filter(Tracee& stub, SplitSetup& setup) {
    Range vdso = vdso_of(stub.tid());
    std::vector<sock_filter> prog = build_body_filter({.trampoline_begin = vdso.begin, .trampoline_end = vdso.end});
    RemoteSyscalls rs(stub, ptrace::SyscallSite::vdso);
    rs.checked_syscall("prctl(PR_SET_NO_NEW_PRIVS) in the body", SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    ScratchMem code(rs, std::as_bytes(std::span(prog)));
    RemoteFprog fprog{static_cast<unsigned short>(prog.size()), code.get().addr()};
    ScratchMem fp = ScratchMem::holding(rs, fprog);
    long fd = rs.syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                         SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, fp.get());
    if (fd == -EINVAL) fd = rs.syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, fp.get());
    if (fd < 0) throw SysError("seccomp(SECCOMP_SET_MODE_FILTER) in the body", static_cast<int>(-fd));
    setup.body_fds_with_listener = list_fds(stub.tid());
    listener_ = FileDesc(check_sys(static_cast<int>(::syscall(SYS_pidfd_getfd, body_pidfd_.get(), fd, 0)),
                                   "pidfd_getfd the body's listener"));
    rs.checked_syscall("close(listener) in the body", SYS_close, fd);
    setup.body_fds_after_setup = list_fds(stub.tid());
    setup.sync_wake_up =
        ::ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) == 0;
  }

  void serve() {
    for (;;) {
      pollfd p[2] = {{listener_.get(), POLLIN, 0}, {deputy_dead_ ? -1 : deputy_pidfd_.get(), POLLIN, 0}};
      int n = ::poll(p, 2, deputy_dead_ ? -1 : kSignalPollMs);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) break;
      if (p[1].revents != 0) {
        deputy_gone();
        continue;
      }
      // Idle, and at most every kSignalPollMs between notified calls (two
      // PTRACE_PEEKSIGINFO cost about 2 us, as much as a quarter of a
      // forwarded call). wait_readable looks on every wake-up, so a signal
      // sent home before the data a forwarded read waits for reaches the
      // body before that read returns.
      auto now = std::chrono::steady_clock::now();
      if (n == 0 || now >= next_signal_check_) {
        forward_deputy_signals();
        next_signal_check_ = now + std::chrono::milliseconds(kSignalPollMs);
      }
      if (n == 0) continue;
      if ((p[0].revents & POLLIN) == 0) break;  // POLLHUP: the body is gone
      seccomp_notif req{};
      if (::ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) {
        if (errno == EINTR || errno == ENOENT) continue;
        break;
      }
      seccomp_notif_resp resp{};
      resp.id = req.id;
      try {
        Answer a = answer(req);
        resp.val = a.val;
        resp.error = a.error;
        resp.flags = a.cont ? SECCOMP_USER_NOTIF_FLAG_CONTINUE : 0;
      } catch (const ptrace::TraceeDied& e) {
        if (e.tid() == deputy_pid_) {
          deputy_gone();  // killed while we injected a call into it: no call of the body's failed
        } else {
          fatal(e);
        }
        continue;
      } catch (const std::exception& e) {
        fatal(e);
        continue;
      }
      ::ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_SEND, &resp);  // ENOENT: the body went meanwhile
    }
  }

  void fatal(const std::exception& e) {
    if (outcome_.error.empty()) outcome_.error = e.what();
    outcome_.log.push_back(fmt::format("fatal: {}", e.what()));
    ::kill(body_, SIGKILL);  // the deputy follows when its death is replayed
    if (!deputy_->alive()) deputy_gone();
  }

  // Signals sent to the home pid. The deputy sits in a ptrace interrupt-stop,
  // where a new signal only becomes pending: the kernel wakes a TASK_TRACED
  // task for SIGKILL alone, and reports nothing to the tracer (no wait
  // event, no pidfd event) until the tracee runs. So the agent looks at the
  // deputy's queues with PTRACE_PEEKSIGINFO (one cheap call each, nothing
  // dequeued) every kSignalPollMs, idle or busy, and whenever a forwarded
  // read's wait wakes up.
  // For each one queued it lets the deputy go with every signal unblocked:
  // the kernel dequeues it at once into a signal-delivery-stop (our trap
  // comes first only once requested), where we take its siginfo; then
  // PTRACE_INTERRUPT + PTRACE_CONT with no signal drops it and leaves the
  // deputy in an interrupt-stop again before any user instruction. The
  // siginfo goes to the body with rt_tgsigqueueinfo.
  void forward_deputy_signals() {
    if (deputy_dead_ || deputy_ == nullptr || !deputy_->alive()) return;
    try {
      // A SIGCONT queued at a seized tracee also asks for a trap
      // (JOBCTL_TRAP_NOTIFY), which then comes before the signal: an
      // interrupt-stop instead of a delivery-stop; the signal is taken on
      // the next round. The bound keeps a surprise from spinning forever.
      for (int round = 0; round < 4096 && deputy_has_pending(); ++round) {
        Tracee& d = *deputy_;
        uint64_t mask = d.signal_mask();
        d.set_signal_mask(0);
        d.resume_as(ptrace::Resume::cont, 0);
        ptrace::Stop s = d.wait_stop();
        std::optional<siginfo_t> info;
        if (s.kind == ptrace::StopKind::signal_delivery) info = d.siginfo();
        d.reinterrupt();  // from a signal-delivery-stop: the signal is dropped
        d.set_signal_mask(mask);
        if (info) {
          forward_to_body(*info);
        } else if (s.kind != ptrace::StopKind::interrupt) {
          outcome_.log.push_back(fmt::format("deputy: stop {} instead of a pending signal",
                                             static_cast<int>(s.kind)));
        }
      }
    } catch (const ptrace::TraceeDied&) {
      deputy_gone();
    } catch (const std::exception& e) {
      fatal(e);  // the deputy's state is unknown: the body must not run on
    }
  }

  bool deputy_has_pending() {
    for (uint32_t flags : {0u, static_cast<uint32_t>(PTRACE_PEEKSIGINFO_SHARED)}) {
      __ptrace_peeksiginfo_args a{0, flags, 1};
      siginfo_t si{};
      if (::ptrace(PTRACE_PEEKSIGINFO, deputy_pid_, &a, &si) > 0) return true;
    }
    return false;
  }

  // The kernel takes a queued siginfo from another process only with a
  // negative si_code other than SI_TKILL: kill()'s SI_USER, tkill's SI_TKILL
  // and kernel codes arrive as SI_QUEUE, with si_pid, si_uid (and the rest)
  // as the sender left them.
  void forward_to_body(siginfo_t info) {
    if (info.si_code >= 0 || info.si_code == SI_TKILL) info.si_code = SI_QUEUE;
    if (::syscall(SYS_rt_tgsigqueueinfo, body_, body_, info.si_signo, &info) != 0 && errno != ESRCH)
      outcome_.log.push_back(
          fmt::format("forwarding signal {} to the body failed: {}", info.si_signo, std::strerror(errno)));
    ++outcome_.signals_forwarded;
  }

  // The deputy died on its own (SIGKILL: it cannot be caught): the body must
  // not run on without it. The agent collects the death (in this slice the
  // agent is a thread of the deputy's parent, which is then its parent too).
  void deputy_gone() {
    if (deputy_dead_) return;
    deputy_dead_ = true;
    int status = -1;
    if (deputy_->death_status()) {
      status = *deputy_->death_status();
    } else {
      try {
        deputy_->signal_mask();  // ESRCH: collects the death
      } catch (const ptrace::TraceeDied& e) {
        status = e.wait_status();
      } catch (const std::exception& e) {
        outcome_.log.push_back(fmt::format("collecting the deputy's death: {}", e.what()));
      }
    }
    outcome_.deputy_status = status;
    outcome_.log.push_back(fmt::format("deputy {} died (status {:#x}): body {} killed", deputy_pid_, status, body_));
    ::kill(body_, SIGKILL);
  }

  Answer answer(const seccomp_notif& req) {
    const seccomp_data& d = req.data;
    int nr = d.nr;
    if (d.arch != AUDIT_ARCH_X86_64 || (nr & 0x40000000) != 0)
      throw Unserved(fmt::format("body {}: call {} of another ABI (arch {:#x}); the real design goes home", body_,
                                 nr, d.arch));
    ++outcome_.served[name_of(nr)];
    uint64_t args[6];
    std::copy(std::begin(d.args), std::end(d.args), args);
    switch (decide(nr, args, deputy_pid_)) {
      case Disposition::exit:
        return Answer::continue_();
      case Disposition::virtual_:
        return answer_virtual(nr);
      case Disposition::forward:
        return answer_forward(req.id, nr, args);
      case Disposition::local:
        outcome_.log.push_back(fmt::format("{} ({}) notified though local: continued", name_of(nr), nr));
        return Answer::continue_();
      default:
        throw Unserved(fmt::format("body {}: {} ({}) must go home, which this slice cannot do", body_, name_of(nr), nr));
    }
  }

  Answer answer_virtual(int nr) {
    switch (nr) {
      case SYS_getpid:
      case SYS_gettid:
        return Answer::of(deputy_pid_);
      case SYS_getppid:
        return Answer::of(id_.ppid);
      case SYS_getuid:
        return Answer::of(id_.uid);
      case SYS_geteuid:
        return Answer::of(id_.euid);
      case SYS_getgid:
        return Answer::of(id_.gid);
      case SYS_getegid:
        return Answer::of(id_.egid);
      default:
        throw Unserved(fmt::format("body {}: virtual call {} ({}) not answered yet", body_, name_of(nr), nr));
    }
  }

  Answer answer_forward(uint64_t id, int nr, const uint64_t* args) {
    switch (nr) {
      case SYS_read:
      case SYS_pread64: {
        int fd = deputy_fd(args[0]);
        if (fd < 0) return Answer::errno_(-fd);
        if (!wait_readable(fd)) return Answer::errno_(EINTR);
        std::vector<char> buf(std::min<uint64_t>(args[2], kMaxIo));
        ssize_t n = nr == SYS_read ? ::read(fd, buf.data(), buf.size())
                                   : ::pread(fd, buf.data(), buf.size(), static_cast<off_t>(args[3]));
        if (n < 0) return Answer::errno_(errno);
        if (!valid(id)) return Answer::errno_(EINTR);
        if (!write_body(args[1], buf.data(), static_cast<std::size_t>(n))) return Answer::errno_(EFAULT);
        return Answer::of(n);
      }
      case SYS_write:
      case SYS_pwrite64: {
        int fd = deputy_fd(args[0]);
        if (fd < 0) return Answer::errno_(-fd);
        std::vector<char> buf(std::min<uint64_t>(args[2], kMaxIo));
        if (!read_body(args[1], buf.data(), buf.size())) return Answer::errno_(EFAULT);
        if (!valid(id)) return Answer::errno_(EINTR);
        ssize_t n = nr == SYS_write ? ::write(fd, buf.data(), buf.size())
                                    : ::pwrite(fd, buf.data(), buf.size(), static_cast<off_t>(args[3]));
        return n < 0 ? Answer::errno_(errno) : Answer::of(n);
      }
      case SYS_lseek: {
        int fd = deputy_fd(args[0]);
        if (fd < 0) return Answer::errno_(-fd);
        off_t off = ::lseek(fd, static_cast<off_t>(args[1]), static_cast<int>(args[2]));
        return off < 0 ? Answer::errno_(errno) : Answer::of(off);
      }
      case SYS_fstat:
        return answer_fstat(id, args[0], args[1]);
      case SYS_newfstatat:
        return answer_newfstatat(id, args);
      case SYS_openat: {
        std::optional<std::string> path = read_body_string(args[1]);
        if (!path) return Answer::errno_(EFAULT);
        if (!valid(id)) return Answer::errno_(EINTR);
        RemoteSyscalls rs(*deputy_);
        ScratchMem p(rs, std::as_bytes(std::span(path->c_str(), path->size() + 1)));
        return Answer::of(rs.syscall(SYS_openat, args[0], p.get(), args[2], args[3]));
      }
      case SYS_close: {
        long rc = inject(SYS_close, args);
        cache_.erase(static_cast<int>(args[0]));
        return Answer::of(rc);
      }
      case SYS_dup: {
        long rc = inject(SYS_dup, args);
        if (rc >= 0) cache_.erase(static_cast<int>(rc));
        return Answer::of(rc);
      }
      case SYS_dup2:
      case SYS_dup3: {
        long rc = inject(nr, args);
        cache_.erase(static_cast<int>(args[1]));
        return Answer::of(rc);
      }
      default:
        throw Unserved(fmt::format("body {}: forwarded call {} ({}) not served by this slice", body_, name_of(nr), nr));
    }
  }

  Answer answer_fstat(uint64_t id, uint64_t fdarg, uint64_t out) {
    int fd = deputy_fd(fdarg);
    if (fd < 0) return Answer::errno_(-fd);
    struct stat st {};
    if (::fstat(fd, &st) < 0) return Answer::errno_(errno);
    if (!valid(id)) return Answer::errno_(EINTR);
    return write_body(out, &st, sizeof st) ? Answer::of(0) : Answer::errno_(EFAULT);
  }

  Answer answer_newfstatat(uint64_t id, const uint64_t* args) {
    std::optional<std::string> path = read_body_string(args[1]);
    if (!path) return Answer::errno_(EFAULT);
    int flags = static_cast<int>(args[3]);
    if (path->empty() && (flags & AT_EMPTY_PATH) != 0 && static_cast<int>(args[0]) != AT_FDCWD)
      return answer_fstat(id, args[0], args[2]);
    if (!valid(id)) return Answer::errno_(EINTR);
    RemoteSyscalls rs(*deputy_);
    ScratchMem p(rs, std::as_bytes(std::span(path->c_str(), path->size() + 1)));
    ScratchMem st(rs, sizeof(struct stat));
    long rc = rs.syscall(SYS_newfstatat, args[0], p.get(), st.get(), args[3]);
    if (rc < 0) return Answer::of(rc);
    auto s = st.read<struct stat>();
    return write_body(args[2], &s, sizeof s) ? Answer::of(rc) : Answer::errno_(EFAULT);
  }

  // A call with integer arguments only, run in the deputy.
  long inject(int nr, const uint64_t* args) {
    RemoteSyscalls rs(*deputy_);
    return rs.syscall_args(nr, {args[0], args[1], args[2], args[3], args[4], args[5]});
  }

  // The agent's copy of the deputy's descriptor, or -errno.
  int deputy_fd(uint64_t arg) {
    int fd = static_cast<int>(arg);
    if (fd < 0) return -EBADF;
    auto it = cache_.find(fd);
    if (it != cache_.end()) return it->second.get();
    int mine = static_cast<int>(::syscall(SYS_pidfd_getfd, deputy_pidfd_.get(), fd, 0));
    if (mine < 0) return -errno;
    return cache_.emplace(fd, FileDesc(mine)).first->second.get();
  }

  // Waits until a read on `fd` will not block, unless the body dies first
  // (then the agent must not stay blocked on the deputy's descriptor).
  bool wait_readable(int fd) {
    pollfd p[3] = {{fd, POLLIN, 0}, {body_pidfd_.get(), POLLIN, 0}, {deputy_pidfd_.get(), POLLIN, 0}};
    for (;;) {
      int n = ::poll(p, 3, kSignalPollMs);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return true;  // let the read itself report it
      if (p[1].revents != 0 || p[2].revents != 0) return false;
      forward_deputy_signals();
      if (p[0].revents != 0) return true;
    }
  }

  // The notification still stands (the body did not die or get interrupted
  // meanwhile), so its memory is still the memory that made the call.
  bool valid(uint64_t id) { return ::ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0; }

  bool read_body(uint64_t addr, void* out, std::size_t n) {
    if (n == 0) return true;
    iovec local{out, n};
    iovec remote{reinterpret_cast<void*>(addr), n};
    return ::process_vm_readv(body_, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(n);
  }

  bool write_body(uint64_t addr, const void* in, std::size_t n) {
    if (n == 0) return true;
    iovec local{const_cast<void*>(in), n};
    iovec remote{reinterpret_cast<void*>(addr), n};
    return ::process_vm_writev(body_, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(n);
  }

  // A NUL-terminated path of at most PATH_MAX bytes, read page by page so a
  // string that ends just before an unmapped page still reads.
  std::optional<std::string> read_body_string(uint64_t addr) {
    std::string s;
    constexpr uint64_t kPage = 4096;
    while (s.size() < 4096) {
      uint64_t chunk = kPage - (addr % kPage);
      char buf[4096];
      if (!read_body(addr, buf, chunk)) return std::nullopt;
      auto* end = static_cast<char*>(std::memchr(buf, '\0', chunk));
      if (end) return s.append(buf, static_cast<std::size_t>(end - buf));
      s.append(buf, chunk);
      addr += chunk;
    }
    return std::nullopt;
  }

  // The deputy ends as the body did: it runs exit_group(code), or sends
  // itself the same signal with its default action, from the vDSO's syscall
  // instruction after we let it go; its parent's wait sees the truth.
  void replay_death(int status) {
    Tracee& deputy = *deputy_;
    std::optional<RemotePtr<void>> insn = RemoteSyscalls::find_syscall_in_vdso(deputy);
    if (!insn) throw SysError("no syscall instruction in the deputy's vDSO", ENOENT);
    Regs r{};
    if (WIFEXITED(status)) {
      r = deputy.regs();
      r.rax = SYS_exit_group;
      r.rdi = static_cast<uint64_t>(WEXITSTATUS(status));
    } else {
      int sig = WIFSIGNALED(status) ? WTERMSIG(status) : SIGKILL;
      if (sig != SIGKILL && sig != SIGSTOP) {
        RemoteSyscalls rs(deputy);
        ScratchMem act = ScratchMem::holding(rs, KernelSigaction{});
        rs.checked_syscall("rt_sigaction(SIG_DFL) in the deputy", SYS_rt_sigaction, sig, act.get(), nullptr, 8);
      }
      deputy.set_signal_mask(deputy.signal_mask() & ~(uint64_t{1} << (sig - 1)));
      r = deputy.regs();
      r.rax = SYS_tgkill;
      r.rdi = static_cast<uint64_t>(deputy.tgid());
      r.rsi = static_cast<uint64_t>(deputy.tid());
      r.rdx = static_cast<uint64_t>(sig);
    }
    r.orig_rax = ~uint64_t{0};  // no system-call restart on the way out of the stop
    r.rip = insn->addr();
    deputy.set_regs(r);
    deputy.detach();
  }

  pid_t deputy_pid_;
  pid_t body_ = -1;
  Identity id_;
  FileDesc deputy_pidfd_, body_pidfd_, listener_;
  Tracee* deputy_ = nullptr;
  bool deputy_dead_ = false;
  std::chrono::steady_clock::time_point next_signal_check_{};
  std::unordered_map<int, FileDesc> cache_;  // deputy fd number -> our copy
  std::promise<SplitSetup> ready_;
  SplitSetup setup_;
  SplitOutcome outcome_;
  std::thread thread_;
};

Split::Split(pid_t original) : agent_(std::make_unique<SplitAgent>(original)) {
  agent_->start();
  setup_ = agent_->setup();
}

Split::~Split() { agent_->abort(); }

SplitOutcome Split::wait() { return agent_->wait(); }

}  // namespace roam::split
