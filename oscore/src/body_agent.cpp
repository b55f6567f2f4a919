// The remote half of a migration: see migration.hpp.
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/close_range.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include "roam/body_filter.hpp"
#include "roam/capture.hpp"
#include "roam/cpu_features.hpp"
#include "roam/error.hpp"
#include "roam/image_codec.hpp"
#include "roam/mig_image.hpp"
#include "roam/mig_messages.hpp"
#include "roam/mig_util.hpp"
#include "roam/migration.hpp"
#include "roam/remote_syscall.hpp"
#include "roam/restore.hpp"
#include "roam/seccomp_compat.hpp"
#include "roam/syscall_regions.hpp"
#include "roam/syscalls.hpp"
#include "roam/sysinfo.hpp"
#include "roam/usage.hpp"

namespace roam::mig {

using Clock = std::chrono::steady_clock;
using ptrace::RemoteSyscalls;
using ptrace::ScratchMem;
using ptrace::Tracee;

namespace {

using ptrace::kERestartNoHand;
using ptrace::kERestartNoIntr;
using ptrace::kERestartRestartBlock;
using ptrace::kERestartSys;
constexpr uid_t kNobody = 65534;
constexpr int64_t kStopCheckMs = 20;

struct Refuse {
  std::string why;
};
struct LinkLost {
  std::string why;
};

struct RemoteFprog {
  unsigned short len = 0;
  uint64_t filter = 0;
};
static_assert(sizeof(RemoteFprog) == sizeof(sock_fprog));

std::chrono::microseconds us(Clock::duration d) { return std::chrono::duration_cast<std::chrono::microseconds>(d); }

// Offsets of this task's time namespace (what /proc/thread-self shows),
// seconds and nanoseconds for CLOCK_MONOTONIC and CLOCK_BOOTTIME.
struct TimeOffsets {
  int64_t mono_ns = 0, boot_ns = 0;
};

// /proc/TID (a thread's own entry, though not listed) has the
// per-process files of that very thread; /proc/thread-self has no
// timens_offsets, and /proc/self is the thread group leader's.
std::string offsets_path() { return fmt::format("/proc/{}/timens_offsets", ::gettid()); }

TimeOffsets current_offsets() {
  TimeOffsets t;
  std::ifstream in(offsets_path());
  std::string clock;
  int64_t sec = 0, nsec = 0;
  while (in >> clock >> sec >> nsec) {
    int64_t v = sec * 1000000000 + nsec;
    if (clock == "monotonic" || clock == "1") t.mono_ns = v;
    if (clock == "boottime" || clock == "7") t.boot_ns = v;
  }
  return t;
}

std::string offsets_line(int clock, int64_t ns) {
  int64_t sec = ns / 1000000000, rem = ns % 1000000000;
  if (rem < 0) {
    rem += 1000000000;
    --sec;
  }
  return fmt::format("{} {} {}\n", clock, sec, rem);
}

// Calls whose home fast path writes back exactly what it read: their output
// buffer need not travel to the home first.
bool out_needs_no_contents(int nr) { return nr == SYS_read || nr == SYS_pread64; }

}  // namespace

class BodyServer {
 public:
  BodyServer(Channel ch, const BodyOptions& o) : ch_(std::move(ch)), o_(o) { link_timeout_ = o.link_timeout; }

  BodyOutcome run() {
    try {
      receive();
    } catch (const Refuse& r) {
      out_.end = BodyOutcome::End::refused;
      out_.message = r.why;
      cleanup_stub();
      try {
        ch_.send_msg(msg::MigRefused{r.why});
      } catch (const std::exception&) {
      }
      return std::move(out_);
    } catch (const std::exception& e) {
      cleanup_stub();
      out_.end = BodyOutcome::End::link_lost;
      out_.message = fmt::format("receiving the process failed: {}", e.what());
      return std::move(out_);
    }
    try {
      auto go = ch_.recv(msg::prepare_wait(link_timeout_));
      if (msg::peek_type(go) != msg::Type::mig_go) throw LinkLost{"home did not commit the move"};
      before_ = msg::decode<msg::MigGo>(go).before;
      ::sched_setaffinity(body_, sizeof node_cpus_, &node_cpus_);
      stub_->detach();
      stub_.reset();
      last_sent_ = Clock::now();
      serve();
    } catch (const LinkLost& l) {
      link_lost(l.why);
    } catch (const ChannelError& e) {
      link_lost(e.what());
    } catch (const wire::DecodeError& e) {
      link_lost(fmt::format("garbled message from home: {}", e.what()));
    } catch (const std::exception& e) {
      out_.log.push_back(fmt::format("fatal: {}", e.what()));
      link_lost(e.what());
      out_.end = BodyOutcome::End::failed;
    }
    reap_init();
    return std::move(out_);
  }

 private:
  // ---- arrival ----

  void receive() {
    offer_ = ch_.recv_msg<msg::MigOffer>(std::max(link_timeout_, std::chrono::milliseconds(30000)));
    if (offer_.link_timeout_ms >= 100) link_timeout_ = std::chrono::milliseconds(offer_.link_timeout_ms);
    if (!o_.refuse.empty()) {
      ImageReceiver(ch_, link_timeout_).drain();
      throw Refuse{o_.refuse};
    }
    wire::Reader cr(offer_.cpu);
    CpuFeatures home = CpuFeatures::decode(cr);
    CpuFeatures here = host_cpu_features();
    for (const std::string& f : o_.withheld_cpu_features) withhold_feature(here, f);
    std::vector<std::string> missing = missing_features(home, here);
    if (!missing.empty()) {
      std::string names;
      for (const auto& m : missing) names += (names.empty() ? "" : " ") + m;
      ImageReceiver(ch_, link_timeout_).drain();
      throw Refuse{fmt::format("node {}'s CPU lacks {}", o_.self_node, names)};
    }
    int64_t mono_now = clock_ns(CLOCK_MONOTONIC), boot_now = clock_ns(CLOCK_BOOTTIME);
    MemoryInfo mem = memory_info();
    if (mem.free > 0 && offer_.image_bytes > mem.free) {
      ImageReceiver(ch_, link_timeout_).drain();
      throw Refuse{fmt::format("node {} has {} MiB free, the process needs {} MiB", o_.self_node, mem.free >> 20,
                               offer_.image_bytes >> 20)};
    }
    // The plan: the process as it runs at home, without pages. The stub is
    // laid out from it and its memory faulted in before home freezes it.
    image::ProcessImage plan;
    {
      ImageReceiver plan_rx(ch_, link_timeout_);
      try {
        plan = plan_rx.header();
        plan_rx.drain();
      } catch (const wire::DecodeError& e) {
        throw Refuse{fmt::format("bad process image: {}", e.what())};
      }
    }
    auto t0 = Clock::now();
    restore::Prepared prepared;
    try {
      if (o_.namespaces) {
        // Offsets are set before any process enters; the delay since the
        // offer only makes the body's clocks lag the home's by the move's
        // time: they never go back.
        TimeOffsets cur = current_offsets();
        check_sys(::unshare(CLONE_NEWPID | CLONE_NEWTIME), "unshare(CLONE_NEWPID | CLONE_NEWTIME)");
        std::ofstream off(offsets_path());
        off << offsets_line(CLOCK_MONOTONIC, cur.mono_ns + offer_.monotonic_ns - mono_now)
            << offsets_line(CLOCK_BOOTTIME, cur.boot_ns + offer_.boottime_ns - boot_now);
        off.flush();
        if (!off) throw SysError("writing " + offsets_path(), EINVAL);
        start_init();
      }
      stub_.emplace(restore::spawn_stub({.fds = {}, .set_tid = o_.namespaces ? offer_.home_pid : 0}));
      body_ = stub_->tid();
      out_.body = body_;
      // The restore's injections are ptrace round trips: on this thread's
      // CPU they cost a fraction of what they cost across CPUs. The body
      // gets the node's CPUs back when it is let go.
      if (::sched_getaffinity(0, sizeof node_cpus_, &node_cpus_) == 0) {
        cpu_set_t one;
        CPU_ZERO(&one);
        if (int cpu = ::sched_getcpu(); cpu >= 0) {
          CPU_SET(cpu, &one);
          ::sched_setaffinity(body_, sizeof one, &one);
        }
      }
      prepared = restore::prepare(*stub_, plan);
    } catch (const restore::RestoreError& e) {
      throw Refuse{fmt::format("cannot restore here: {}", e.what())};
    } catch (const SysError& e) {
      throw Refuse{fmt::format("cannot restore here: {}", e.what())};
    }
    for (uint64_t start : prepared.mismatched)
      out_.log.push_back(fmt::format("the file mapped at {:#x} differs here: its pages travel", start));
    ch_.send_msg(msg::MigPrepared{static_cast<uint64_t>(us(Clock::now() - t0).count()), prepared.populated_bytes,
                                  prepared.mismatched, msg::kPreparedInstallsFilters});

    // Home froze the process: its image follows.
    ImageReceiver rx(ch_, link_timeout_);
    image::ProcessImage img;
    try {
      img = rx.header();
    } catch (const wire::DecodeError& e) {
      throw Refuse{fmt::format("bad process image: {}", e.what())};
    }
    if (o_.drop_privileges && image::future_locking_needs_privilege(img)) {
      // Home gives it back when the process comes home (receive_home).
      img.misc.mlockall_future = 0;
      out_.log.push_back(
          "mlockall(MCL_FUTURE) left out: the process locked without bound (CAP_IPC_LOCK) and the body may lock only "
          "up to RLIMIT_MEMLOCK; regions it maps here are not locked");
    }
    auto t1 = Clock::now();
    try {
      restore::RestoreTimes rt;
      restore::restore_into(*stub_, img, rx.pages(), prepared, &rt);
      // The program's filters go in last: from then on they would judge
      // every call injected here, unless suspended.
      if (!img.seccomp_filters.empty())
        stub_->set_options(stub_->options().with(ptrace::TraceOption::suspend_seccomp));
      {
        // One scope, a stop per call: these run while the process is frozen.
        RemoteSyscalls rs(*stub_, ptrace::SyscallSite::vdso, ptrace::StepMode::single_step);
        if (o_.drop_privileges) drop_privileges(rs);
        install_filter(rs);
        install_program_filters(rs, img);
      }
    } catch (const restore::RestoreError& e) {
      drain_quietly(rx);
      throw Refuse{fmt::format("cannot restore here: {}", e.what())};
    } catch (const SysError& e) {
      drain_quietly(rx);
      throw Refuse{fmt::format("cannot restore here: {}", e.what())};
    }
    if (o_.on_ready) o_.on_ready(body_);
    ch_.send_msg(msg::MigReady{body_, static_cast<uint64_t>(us(Clock::now() - t1).count())});
  }

  static void drain_quietly(ImageReceiver& rx) {
    try {
      rx.drain();
    } catch (const std::exception&) {
    }
  }

  // PID 1 of the body's PID namespace. It relays the signals sent to the
  // home pid: queued from inside the namespace, their si_pid survives (the
  // kernel zeroes it for a sender in an ancestor namespace, as this agent
  // is). It dies with this thread (PR_SET_PDEATHSIG), and with it every
  // process of the namespace.
  void start_init() {
    int sv[2];
    check_sys(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), "socketpair");
    FileDesc mine(sv[0]), theirs(sv[1]);
    pid_t pid = ::fork();
    if (pid < 0) throw SysError("fork (namespace init)", errno);
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      int fd = ::fcntl(theirs.get(), F_DUPFD, 0);
      ::syscall(SYS_close_range, 0, static_cast<unsigned>(fd) - 1, 0);
      ::syscall(SYS_close_range, static_cast<unsigned>(fd) + 1, ~0u, 0);
      struct {
        int32_t pid;
        siginfo_t info;
      } m;
      for (;;) {
        ssize_t n = ::recv(fd, &m, sizeof m, 0);
        if (n == 0) ::_exit(0);
        if (n != static_cast<ssize_t>(sizeof m)) continue;
        int rc = static_cast<int>(::syscall(SYS_rt_tgsigqueueinfo, m.pid, m.pid, m.info.si_signo, &m.info));
        int err = rc == 0 ? 0 : errno;
        ::send(fd, &err, sizeof err, MSG_NOSIGNAL);
      }
    }
    init_ = pid;
    relay_ = std::move(mine);
  }

  // Queues a signal at the body, through the namespace's init when there
  // is one. Returns 0 or an errno.
  int queue_signal(const siginfo_t& info) {
    if (!relay_) {
      if (::syscall(SYS_rt_tgsigqueueinfo, body_, body_, info.si_signo, &info) != 0) return errno;
      return 0;
    }
    struct {
      int32_t pid;
      siginfo_t info;
    } m{offer_.home_pid, info};
    if (::send(relay_.get(), &m, sizeof m, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof m)) return errno;
    int err = EIO;
    if (::recv(relay_.get(), &err, sizeof err, 0) != sizeof err) return EIO;
    return err;
  }

  void reap_init() {
    if (init_ <= 0) return;
    relay_.reset();
    ::kill(init_, SIGKILL);
    ::waitpid(init_, nullptr, 0);
    init_ = -1;
  }

  void cleanup_stub() {
    if (body_ > 0 && !body_reaped_) {
      ::kill(body_, SIGKILL);
      stub_.reset();
      ::waitpid(body_, nullptr, __WALL);
      body_reaped_ = true;
    }
    reap_init();
  }

  void drop_privileges(RemoteSyscalls& rs) {
    rs.checked_syscall("setgroups in the body", SYS_setgroups, 0, 0);
    rs.checked_syscall("setresgid in the body", SYS_setresgid, kNobody, kNobody, kNobody);
    rs.checked_syscall("setresuid in the body", SYS_setresuid, kNobody, kNobody, kNobody);
    // A credential change clears the parent-death signal: the body must
    // still die with its agent.
    rs.checked_syscall("prctl(PR_SET_PDEATHSIG) in the body", SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  }

  // The program's own seccomp filters, the oldest first, over roam's: the
  // kernel runs them all and the strictest answer wins, so a call the
  // program's filter refuses fails (or traps, or kills) here as at home, and
  // one it allows goes on to roam's filter. Installed under no_new_privs
  // (install_filter set it), as an unprivileged program installs its own.
  void install_program_filters(RemoteSyscalls& rs, const image::ProcessImage& img) {
    for (const image::SeccompFilter& f : img.seccomp_filters) {
      std::vector<sock_filter> prog;
      prog.reserve(f.insns.size());
      for (uint64_t insn : f.insns)
        prog.push_back(sock_filter{static_cast<uint16_t>(insn & 0xffff), static_cast<uint8_t>(insn >> 16),
                                   static_cast<uint8_t>(insn >> 24), static_cast<uint32_t>(insn >> 32)});
      ScratchMem code(rs, std::as_bytes(std::span(prog)));
      RemoteFprog fprog{static_cast<unsigned short>(prog.size()), code.get().addr()};
      ScratchMem fp = ScratchMem::holding(rs, fprog);
      long rc = rs.syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, f.flags & SECCOMP_FILTER_FLAG_LOG, fp.get());
      if (rc < 0) throw SysError("seccomp(SECCOMP_SET_MODE_FILTER) of the program's filter in the body", static_cast<int>(-rc));
    }
    if (!img.seccomp_filters.empty())
      out_.log.push_back(fmt::format("the program's {} seccomp filter{} installed in the body", img.seccomp_filters.size(),
                                     img.seccomp_filters.size() == 1 ? "" : "s"));
  }

  // prctl(PR_SET_NO_NEW_PRIVS) and seccomp(NEW_LISTENER) injected into the
  // stopped body; calls from the vDSO (our injection site) stay allowed.
  void install_filter(RemoteSyscalls& rs) {
    Range vdso = vdso_of(body_);
    std::vector<sock_filter> prog = build_body_filter({.trampoline_begin = vdso.begin, .trampoline_end = vdso.end});
    rs.checked_syscall("prctl(PR_SET_NO_NEW_PRIVS) in the body", SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    ScratchMem code(rs, std::as_bytes(std::span(prog)));
    RemoteFprog fprog{static_cast<unsigned short>(prog.size()), code.get().addr()};
    ScratchMem fp = ScratchMem::holding(rs, fprog);
    long fd = rs.syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                         SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, fp.get());
    if (fd == -EINVAL) fd = rs.syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, fp.get());
    if (fd < 0) throw SysError("seccomp(SECCOMP_SET_MODE_FILTER) in the body", static_cast<int>(-fd));
    body_pidfd_ = pidfd_of(body_);
    listener_ = FileDesc(check_sys(static_cast<int>(::syscall(SYS_pidfd_getfd, body_pidfd_.get(), fd, 0)),
                                   "pidfd_getfd the body's listener"));
    rs.checked_syscall("close(listener) in the body", SYS_close, fd);
    out_.body_fds_after_setup = list_fds(body_);
    ::ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP);
  }

  // ---- serving ----

  void serve() {
    while (!ended_) {
      pollfd p[3] = {{listener_.get(), POLLIN, 0}, {ch_.fd(), POLLIN, 0}, {body_pidfd_.get(), POLLIN, 0}};
      int n = ::poll(p, 3, keepalive_wait_ms());
      if (n < 0 && errno != EINTR) throw SysError("poll", errno);
      if (n > 0 && p[2].revents != 0) return body_died();
      if (n > 0 && p[1].revents != 0) ch_.pump();
      std::vector<std::byte> body;
      while (!ended_ && ch_.pop(body)) on_home_message(body);
      if (ended_) return;
      if (!home_requested_ && expel_asked()) home_requested_ = true;
      if (going_ && going_->prepared) {
        std::optional<uint64_t> notif = going_->notif;
        freeze_home(going_->reason, notif, going_->forced);
        continue;  // ended_, or home failed and the body runs on here
      }
      if (home_requested_ && !going_) go_home(home_reason_.empty() ? "asked home" : home_reason_, std::nullopt);
      if (ended_) return;
      if (!ch_.open()) throw LinkLost{"connection closed by home"};
      check_link();
      check_stopped();
      if (n > 0 && (p[0].revents & POLLIN) != 0) on_notification();
      else if (n > 0 && (p[0].revents & (POLLHUP | POLLERR)) != 0) return body_died();
    }
  }

  bool expel_asked() {
    if (!o_.expelled || !o_.expelled()) return false;
    home_reason_ = fmt::format("expelled from node {}", o_.self_node);
    return true;
  }

  // At most this long between looks at the body's job-control state.
  int keepalive_wait_ms() const {
    return static_cast<int>(std::clamp<int64_t>(link_timeout_.count() / 4, 10, kStopCheckMs));
  }

  // The body entered a group stop (^Z relayed from home, or its own
  // SIGSTOP): home stops the deputy the same way, so the shell sees its job
  // stop. The agent is the body's parent, so waitid(WSTOPPED) reports it.
  void check_stopped() {
    // Not on every forwarded call: a waitid per kStopCheckMs is enough.
    auto now = Clock::now();
    if (now < next_stop_check_) return;
    next_stop_check_ = now + std::chrono::milliseconds(kStopCheckMs);
    siginfo_t si{};
    if (::waitid(P_PID, static_cast<id_t>(body_), &si, WSTOPPED | WNOHANG) != 0 || si.si_pid != body_) return;
    if (si.si_code != CLD_STOPPED && si.si_code != CLD_TRAPPED) return;
    int sig = si.si_status == SIGSTOP && stop_as_ != 0 ? stop_as_ : si.si_status;
    stop_as_ = 0;
    send(msg::BodyStopped{sig, signals_seen_});
  }

  void check_link() {
    auto now = Clock::now();
    // Home says nothing while it lays the deputy out for the coming home
    // (faulting in a big process's memory takes seconds): it gets the bound
    // a remote gets to prepare for a move out.
    bool preparing = going_ && !going_->prepared;
    auto limit = preparing ? msg::prepare_wait(link_timeout_) : link_timeout_;
    if (now - ch_.last_heard() > limit)
      throw LinkLost{fmt::format("no word from home for {} ms{}", limit.count(),
                                 preparing ? " (while it prepared for the coming home)" : "")};
    // Once a second, whatever else went: how much the body runs (home's
    // policies read it); also the keepalive.
    if (now - last_stats_ >= std::chrono::seconds(1) || now - last_sent_ > link_timeout_ / 4) {
      last_stats_ = now;
      send(msg::Keepalive{run_wait_ns(body_)});
    }
  }

  void send(const auto& m) {
    ch_.send_msg(m);
    last_sent_ = Clock::now();
  }

  void on_home_message(std::vector<std::byte>& body) {
    switch (msg::peek_type(body)) {
      case msg::Type::fwd_signal:
        ++signals_seen_;
        return deliver(msg::decode<msg::FwdSignal>(body));
      case msg::Type::come_home:
        home_requested_ = true;
        if (!going_) home_reason_ = msg::decode<msg::ComeHome>(body).reason;
        return;
      case msg::Type::home_prepared: {
        auto hp = msg::decode<msg::HomePrepared>(body);
        if (!going_) throw LinkLost{"home prepared for a coming home nobody asked for"};
        if (hp.call_off) return called_off(hp.error);
        if (!hp.ok) out_.log.push_back(fmt::format("home could not prepare for the coming home: {}", hp.error));
        going_->prepared = true;
        going_->mismatched = std::move(hp.mismatched);
        return;
      }
      case msg::Type::keepalive:
        return;
      case msg::Type::fwd_result:
        if (outstanding_) {
          result_ = msg::decode<msg::FwdResult>(body);
          return;
        }
        [[fallthrough]];
      default:
        throw LinkLost{fmt::format("unexpected {} message from home", msg::type_name(msg::peek_type(body)))};
    }
  }

  // A signal sent to the home pid. If the body waits for a forwarded call
  // and would run a handler for it, the call must be interrupted as Linux
  // would: the home interrupts it (FwdCancel) and the body gets the code the
  // home kernel ended it with (-ERESTARTSYS, -ERESTARTNOHAND, -EINTR...),
  // which its own kernel turns into EINTR or a restart by the handler's
  // SA_RESTART (see cancelled_code).
  void deliver(const msg::FwdSignal& m) {
    siginfo_t info;
    std::memcpy(&info, m.siginfo.data(), sizeof info);
    if (info.si_code >= 0 || info.si_code == SI_TKILL) info.si_code = SI_QUEUE;
    int sig = info.si_signo;
    if (sig < 1 || sig > 64) return;
    SignalSets s = signal_sets(body_);
    uint64_t bit = uint64_t{1} << (sig - 1);
    // A default stop (^Z). The body's process group is orphaned here (its
    // parent, this agent, is not in its session), where the kernel drops
    // SIGTSTP/SIGTTIN/SIGTTOU: SIGSTOP stops it instead, and home is told
    // the signal the shell sent.
    bool stops = (sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU) &&
                 (s.caught & bit) == 0 && (s.ignored & bit) == 0 && (s.blocked & bit) == 0;
    if (stops && sig != SIGSTOP) {
      stop_as_ = sig;
      info.si_signo = SIGSTOP;
    }
    std::optional<Tracee> held = hold_for_signal();
    if (int err = queue_signal(info); err != 0 && err != ESRCH)
      out_.log.push_back(fmt::format("queueing signal {} to the body failed: {}", sig, std::strerror(err)));
    if (held) held->detach();
    if (!outstanding_) return;
    bool handler = (s.caught & bit) != 0 && (s.blocked & bit) == 0;
    if (handler) cancel_for_handler_ = true;
    if (cancel_sent_) return;
    // A handler to run, or the stop: the call waiting at home is
    // interrupted and the kernel restarts it (after SIGCONT) or fails it
    // with EINTR.
    if (handler || stops) {
      send(msg::FwdCancel{outstanding_->seq});
      cancel_sent_ = true;
    }
  }

  // A call the body raised that this agent has not yet received waits in
  // the kernel interruptibly: a signal queued then would end it with EINTR
  // (a handler without SA_RESTART), though the call never blocks where it
  // runs natively (times, getrusage, a CPU clock) or is one that home runs
  // and interrupts itself. So the body is held in a ptrace interrupt-stop
  // while the signal is queued, and a notified call the stop interrupted
  // (-ERESTARTSYS) is made to start again after the handler
  // (-ERESTARTNOINTR): it is raised anew and served as usual, as if the
  // signal had come just before it. Not while the body waits for a call
  // this agent took (forwarded or parked): that wait is killable only, so
  // the stop would wait for this agent, and the signal cannot interrupt it
  // anyway. (A signal the body's own kernel raises, such as a local
  // itimer's, cannot be held like this.)
  std::optional<Tracee> hold_for_signal() {
    if (outstanding_ || (going_ && going_->notif)) return std::nullopt;
    try {
      Tracee t = seize_body();
      t.interrupt();
      ptrace::Regs r = t.regs();
      if (static_cast<int64_t>(r.orig_rax) >= 0 && r.rax == static_cast<uint64_t>(-kERestartSys)) {
        uint64_t args[6] = {r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9};
        Disposition d = decide(static_cast<int>(r.orig_rax), args, offer_.home_pid);
        if (d != Disposition::local && d != Disposition::exit) {
          r.rax = static_cast<uint64_t>(-kERestartNoIntr);
          t.set_regs(r);
        }
      }
      return t;
    } catch (const std::exception&) {
      // On its way out: the signal is queued (or not) as it is.
      return std::nullopt;
    }
  }

  // What the body's kernel gets for a call cancelled at home: the code the
  // home's kernel ended it with (none from the read fast path of an older
  // home: -ERESTARTSYS, as for a read). -ERESTART_RESTARTBLOCK cannot pass:
  // its restart block is the deputy's, not the body's. With a handler it is
  // EINTR, as at home; after a stop alone the call starts again (a
  // timeout then runs in full).
  int cancelled_code(int64_t v) const {
    if (v == -EINTR || v == -kERestartSys || v == -kERestartNoIntr || v == -kERestartNoHand) return static_cast<int>(v);
    if (v == -kERestartRestartBlock) return cancel_for_handler_ ? -EINTR : -static_cast<int>(kERestartNoHand);
    return -static_cast<int>(kERestartSys);
  }

  struct Outstanding {
    uint64_t seq = 0;
    uint64_t id = 0;  // the notification
    int nr = 0;
    std::array<uint64_t, 6> args{};
  };

  void on_notification() {
    seccomp_notif req{};
    if (::ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) return;  // ENOENT: the body went meanwhile
    const seccomp_data& d = req.data;
    int nr = d.nr;
    ++out_.served[syscall_name(nr)];
    if (d.arch != AUDIT_ARCH_X86_64 || (nr & 0x40000000) != 0)
      return go_home(fmt::format("system call {} of another ABI", nr), req.id);
    uint64_t args[6];
    std::copy(std::begin(d.args), std::end(d.args), args);
    switch (decide(nr, args, offer_.home_pid)) {
      case Disposition::exit:
      case Disposition::local:
        return answer_continue(req.id);
      case Disposition::virtual_:
        return answer_virtual(req.id, nr, args);
      case Disposition::home:
      case Disposition::inspect:
        return go_home(fmt::format("{} needs home", syscall_name(nr)), req.id);
      case Disposition::forward:
        return forward(req.id, nr, args);
    }
  }

  void answer(uint64_t id, int64_t val, int error) {
    seccomp_notif_resp resp{};
    resp.id = id;
    resp.val = val;
    resp.error = error;
    ::ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_SEND, &resp);  // ENOENT: the body went meanwhile
  }
  void answer_value(uint64_t id, int64_t raw) {
    if (raw < 0 && raw > -4096) answer(id, 0, static_cast<int>(raw));
    else answer(id, raw, 0);
  }
  void answer_continue(uint64_t id) {
    seccomp_notif_resp resp{};
    resp.id = id;
    resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    ::ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_SEND, &resp);
  }

  void answer_virtual(uint64_t id, int nr, const uint64_t* args) {
    switch (nr) {
      case SYS_getpid:
      case SYS_gettid:
        return answer_value(id, offer_.home_pid);
      case SYS_getppid:
        // The deputy is reparented if its parent dies: home knows.
        return send_call(id, nr, args, {});
      default:
        break;
    }
    if (ids_changed_ && nr != SYS_getgroups && nr != SYS_getresuid && nr != SYS_getresgid)
      return send_call(id, nr, args, {});  // a set*id ran at home: ask it
    switch (nr) {
      case SYS_getuid:
        return answer_value(id, offer_.uid);
      case SYS_geteuid:
        return answer_value(id, offer_.euid);
      case SYS_getgid:
        return answer_value(id, offer_.gid);
      case SYS_getegid:
        return answer_value(id, offer_.egid);
      case SYS_getrusage:
        return answer_rusage(id, nr, args);
      case SYS_times:
        return answer_times(id, args);
      case SYS_clock_gettime:  // its own CPU-time clocks
        return answer_cpu_clock(id, args);
      case SYS_getgroups: {
        // The home's answer is exact; the list is written to the body's buffer.
        std::vector<fwd::Region> out;
        int size = static_cast<int>(args[0]);
        if (size > 0 && args[1] != 0)
          out.push_back({args[1], static_cast<uint64_t>(std::min(size, 65536)) * 4, fwd::Dir::out});
        return send_call(id, nr, args, out);
      }
      case SYS_getresuid:
      case SYS_getresgid: {
        std::vector<fwd::Region> out;
        for (int i = 0; i < 3; ++i)
          if (args[i] != 0) out.push_back({args[i], 4, fwd::Dir::out});
        return send_call(id, nr, args, out);
      }
      default:
        return send_call(id, nr, args, {});  // getpgrp: no memory
    }
  }

  // ---- its own usage: what it used at home before the move (MigGo) plus
  // what the body used since ----

  std::optional<CpuUsage> used_so_far() {
    auto u = usage_of(body_);
    if (!u) {
      // /proc could not be read (seen once in ~15 runs of cpu_clocks, cause
      // unknown): the CPU clock alone, counted as user time, rather than
      // the body's own figures without the home part.
      auto ns = cpu_clock_ns(body_);
      if (!ns) {
        // The body is gone, or neither /proc nor its clock could be read
        // (never seen): say why, once; the caller falls back.
        if (!usage_lost_logged_) {
          clockid_t c;
          int clock_rc = ::clock_getcpuclockid(body_, &c);
          std::string stat = fmt::format("/proc/{}/stat", body_);
          int fd = ::open(stat.c_str(), O_RDONLY | O_CLOEXEC);
          int open_errno = fd < 0 ? errno : 0;
          if (fd >= 0) ::close(fd);
          out_.log.push_back(fmt::format("usage of body {} unreadable (its clock: {}; open {}: {}): "
                                         "its call runs on its own figures",
                                         body_, std::strerror(clock_rc), stat, std::strerror(open_errno)));
        }
        usage_lost_logged_ = true;
        return std::nullopt;
      }
      if (!usage_fallback_logged_)
        out_.log.push_back(fmt::format("usage of body {} unreadable in /proc: CPU clock only", body_));
      usage_fallback_logged_ = true;
      u = CpuUsage{.user_ns = *ns};
    }
    CpuUsage all = before_;
    all += *u;
    return all;
  }

  // Writes `value` to the body at `addr` and answers 0, or EFAULT as the
  // kernel would for a bad pointer.
  template <typename T>
  void answer_written(uint64_t id, uint64_t addr, const T& value) {
    if (addr == 0 || !write_body(addr, &value, sizeof value)) return answer(id, 0, -EFAULT);
    answer(id, 0, 0);
  }

  void answer_cpu_clock(uint64_t id, const uint64_t* args) {
    // A single-threaded process: its thread's clock is the process's. Only
    // the clock is read (programs that time themselves call this often).
    auto body_ns = cpu_clock_ns(body_);
    if (!body_ns) return answer_continue(id);
    uint64_t ns = before_.cpu_ns() + *body_ns;
    timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
    answer_written(id, args[1], ts);
  }

  void answer_rusage(uint64_t id, int nr, const uint64_t* args) {
    int who = static_cast<int>(args[0]);
    if (who == RUSAGE_CHILDREN)  // the children it reaped are the deputy's: home knows
      return send_call(id, nr, args, {{args[1], sizeof(rusage), fwd::Dir::out}});
    if (who != RUSAGE_SELF && who != RUSAGE_THREAD) return answer(id, 0, -EINVAL);
    auto u = used_so_far();
    if (!u) return answer_continue(id);
    answer_written(id, args[1], to_rusage(*u, false));
  }

  void answer_times(uint64_t id, const uint64_t* args) {
    auto u = used_so_far();
    if (!u) return answer_continue(id);
    // Children reaped at home while it is away are not in the snapshot.
    tms t = to_tms(*u);
    if (args[0] != 0 && !write_body(args[0], &t, sizeof t)) return answer(id, 0, -EFAULT);
    // The return value is this kernel's tick count, as the call itself
    // would give (the body runs on this node).
    answer_value(id, ::syscall(SYS_times, nullptr));
  }

  void forward(uint64_t id, int nr, const uint64_t* args) {
    switch (nr) {
      case SYS_rt_sigaction:
        // Dispositions live in the body: the deputy never runs a handler,
        // and a signal for the home pid is relayed here. Setting SIGCHLD's
        // (the only one the filter shows) is the home kernel's business
        // too: SIG_IGN and SA_NOCLDWAIT make it reap the children, which
        // live at home, itself, and SA_NOCLDSTOP keeps their stops quiet.
        // The deputy gets it first; then the body's own call sets the
        // body's (await_result CONTINUEs it).
        if (static_cast<int>(args[0]) != SIGCHLD || args[1] == 0) return answer_continue(id);
        break;
      case SYS_mmap:
        // Home says which file it is (map_here), or the process goes there.
        if ((offer_.flags & msg::kOfferDescribesFiles) == 0) return go_home("mmap of a file", id);
        return send_call(id, nr, args, {});
      case SYS_kill:
      case SYS_tkill:
      case SYS_rt_sigqueueinfo:
        // To itself: in its PID namespace the body's pid is the home pid,
        // so the kernel here delivers it at once, as raise() and abort()
        // need (a round trip home would deliver it too late).
        if (o_.namespaces && static_cast<pid_t>(args[0]) == offer_.home_pid) return answer_continue(id);
        break;
      case SYS_tgkill:
      case SYS_rt_tgsigqueueinfo:
        if (o_.namespaces && static_cast<pid_t>(args[0]) == offer_.home_pid &&
            static_cast<pid_t>(args[1]) == offer_.home_pid)
          return answer_continue(id);
        break;
      default:
        break;
    }
    fwd::Description desc = fwd::describe(nr, args, [this](uint64_t addr, void* buf, std::size_t n) {
      return read_body(addr, buf, n);
    });
    if (desc.fault) return answer(id, 0, -EFAULT);
    if (!desc.ok) return go_home(desc.why, id);
    send_call(id, nr, args, desc.regions);
  }

  // Sends the call home with the memory it touches, and answers the body
  // once the result is back.
  void send_call(uint64_t id, int nr, const uint64_t* args, const std::vector<fwd::Region>& regions) {
    msg::FwdCall call;
    call.seq = ++seq_;
    call.nr = nr;
    std::copy(args, args + 6, call.args.begin());
    for (const fwd::Region& r : regions) {
      msg::FwdRegion g{r.addr, r.len, static_cast<uint8_t>(r.dir), {}};
      bool contents = r.dir != fwd::Dir::out || !out_needs_no_contents(nr);
      if (contents) {
        g.data.resize(r.len);
        if (!read_body(r.addr, g.data.data(), r.len)) return answer(id, 0, -EFAULT);
        if (r.dir == fwd::Dir::out) g.dir = static_cast<uint8_t>(msg::RegionDir::inout);
      }
      call.regions.push_back(std::move(g));
    }
    start_call(call, id);
    await_result();
  }

  // Sends `call` home as the one outstanding call, made for the
  // notification `id`; wait_result() collects its result.
  void start_call(const msg::FwdCall& call, uint64_t id) {
    outstanding_ = Outstanding{call.seq, id, call.nr, call.args};
    cancel_sent_ = false;
    cancel_for_handler_ = false;
    result_.reset();
    send(call);
  }

  // The body waits in its notification; the home runs the call. Signals
  // from home may arrive meanwhile (deliver() cancels the call when the
  // body would run a handler), and so may a request to come home.
  void await_result() {
    std::optional<std::pair<Outstanding, msg::FwdResult>> got = wait_result();
    if (!got) return;
    auto& [o, r] = *got;
    if (!r.unserved.empty()) return go_home(r.unserved, o.id);
    for (const auto& g : r.regions) {
      if (!write_body(g.addr, g.data.data(), g.data.size())) return answer(o.id, 0, -EFAULT);
    }
    if (r.cancelled) {
      // Cancelled for a signal we queued: the kernel restarts the call or
      // fails it with EINTR once the handler is set up. Cancelled because
      // the process comes home: it re-issues the call there.
      if (cancel_sent_ && !home_requested_) return answer(o.id, 0, cancelled_code(r.value));
      return go_home(home_reason_.empty() ? "asked home" : home_reason_, o.id);
    }
    switch (o.nr) {
      case SYS_mmap:
        return map_here(o, r);
      case SYS_rt_sigaction:
        if (r.value == 0) return answer_continue(o.id);  // set at home: now in the body
        break;
      case SYS_close:
      case SYS_close_range:
        // Closed at home: a copy of the file this node placed in the body
        // for a mmap (map_here) under that number is closed too. The body
        // owns no other descriptor, so its own call does exactly that.
        if (r.value == 0 && drop_placed(o)) return answer_continue(o.id);
        break;
      case SYS_setuid: case SYS_setgid: case SYS_setreuid: case SYS_setregid: case SYS_setresuid:
      case SYS_setresgid: case SYS_setfsuid: case SYS_setfsgid: case SYS_setgroups: case SYS_capset:
        ids_changed_ = true;
        break;
      default:
        break;
    }
    answer_value(o.id, r.value);
  }

  // The result of the call in outstanding_, or nothing when the body ended
  // meanwhile.
  std::optional<std::pair<Outstanding, msg::FwdResult>> wait_result() {
    while (!ended_ && !result_) {
      pollfd p[2] = {{ch_.fd(), POLLIN, 0}, {body_pidfd_.get(), POLLIN, 0}};
      int n = ::poll(p, 2, keepalive_wait_ms());
      if (n < 0 && errno != EINTR) throw SysError("poll", errno);
      if (n > 0 && p[1].revents != 0) {
        body_died();
        return std::nullopt;
      }
      if (n > 0 && p[0].revents != 0) ch_.pump();
      std::vector<std::byte> body;
      while (!result_ && ch_.pop(body)) on_home_message(body);
      if (result_) break;
      if (!ch_.open()) throw LinkLost{"connection closed by home"};
      if (!home_requested_ && !cancel_sent_ && expel_asked()) {
        home_requested_ = true;  // the cancelled call is re-issued at home
        send(msg::FwdCancel{outstanding_->seq});
        cancel_sent_ = true;
      }
      if (going_ && going_->prepared && !cancel_sent_) {
        // Home is ready for the body: a call that went meanwhile and
        // blocks there is re-issued at home, after the move.
        send(msg::FwdCancel{outstanding_->seq});
        cancel_sent_ = true;
      }
      check_link();
    }
    if (!result_ || !outstanding_) return std::nullopt;
    Outstanding o = *outstanding_;
    outstanding_.reset();
    msg::FwdResult r = std::move(*result_);
    result_.reset();
    if (r.seq != o.seq) throw LinkLost{fmt::format("result {} for call {}", r.seq, o.seq)};
    return std::pair{o, std::move(r)};
  }

  // A private file mmap. Home answered with the error its kernel would give
  // or with the file the descriptor opens there (path and identity). The
  // file is placed in the body under the descriptor's number and the body's
  // own call goes on (CONTINUE), so dlopen() stays away from home: this
  // node's copy when it has the same file (as a move maps clean file
  // pages), otherwise a copy read at home (copy_from_home). A private
  // mapping never shows later writes by others to the pages it read, so
  // the copy is faithful.
  void map_here(const Outstanding& o, const msg::FwdResult& r) {
    if (r.value < 0) return answer_value(o.id, r.value);
    if (!r.file) return go_home("mmap of a file", o.id);
    const std::string& path = r.file->path;
    // Non-blocking: a FIFO by that name here must not hang the agent in
    // open (same_file_here then refuses it, as anything not regular).
    FileDesc local(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    int src = local.get();
    const char* how = "this node has the same file";
    if (!local || !same_file_here(local, path, r.file->identity)) {
      auto copy = std::find_if(copies_.begin(), copies_.end(), [&](const auto& c) { return c.first == *r.file; });
      if (copy == copies_.end()) {
        if (r.file->identity.size > kCopyLimit)
          return go_home(fmt::format("mmap of {} ({} MiB), which this node does not have", path,
                                     r.file->identity.size >> 20), o.id);
        std::optional<FileDesc> got = copy_from_home(o, *r.file);
        if (!got) return;  // answered, or gone home
        copies_.emplace_back(*r.file, std::move(*got));
        copy = std::prev(copies_.end());
      }
      src = copy->second.get();
      how = "a copy read at home";
    }
    seccomp_notif_addfd add{};
    add.id = o.id;
    add.flags = SECCOMP_ADDFD_FLAG_SETFD;
    add.srcfd = static_cast<uint32_t>(src);
    add.newfd = static_cast<uint32_t>(o.args[4]);
    add.newfd_flags = O_CLOEXEC;
    if (::ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_ADDFD, &add) < 0) {
      if (errno == ENOENT) return;  // the body is gone
      return go_home(fmt::format("mmap of {}: the body cannot take this node's copy ({})", path, std::strerror(errno)), o.id);
    }
    placed_.insert(static_cast<int>(o.args[4]));
    if (served_paths_.insert(path).second) out_.log.push_back(fmt::format("mmap of {} served here: {}", path, how));
    answer_continue(o.id);
  }

  // The whole file `f`, read at home through the process's descriptor
  // (pread64 on home's copy of it, a MiB per call), in a memfd of the
  // file's size. Nothing when the call was answered meanwhile (a signal
  // with a handler: the mmap is restarted after it) or the process goes
  // home instead (asked home; home cannot read it).
  std::optional<FileDesc> copy_from_home(const Outstanding& mmap_call, const msg::MappedFile& f) {
    const std::string& path = f.path;
    std::string name = "roam:" + path.substr(path.rfind('/') + 1);
    FileDesc mem(static_cast<int>(::syscall(SYS_memfd_create, name.c_str(), MFD_CLOEXEC)));
    if (!mem || ::ftruncate(mem.get(), static_cast<off_t>(f.identity.size)) != 0) {
      go_home(fmt::format("mmap of {}: no memory here for a copy ({})", path, std::strerror(errno)), mmap_call.id);
      return std::nullopt;
    }
    constexpr uint64_t kPiece = uint64_t{1} << 20;  // home's read fast path does a MiB a call
    for (uint64_t at = 0; at < f.identity.size;) {
      msg::FwdCall call;
      call.seq = ++seq_;
      call.nr = SYS_pread64;
      call.args = {mmap_call.args[4], 0, std::min(kPiece, f.identity.size - at), at, 0, 0};
      start_call(call, mmap_call.id);
      std::optional<std::pair<Outstanding, msg::FwdResult>> got = wait_result();
      if (!got) return std::nullopt;
      const msg::FwdResult& r = got->second;
      if (r.cancelled) {
        if (cancel_sent_ && !home_requested_) answer(mmap_call.id, 0, -static_cast<int>(kERestartNoIntr));
        else go_home(home_reason_.empty() ? "asked home" : home_reason_, mmap_call.id);
        return std::nullopt;
      }
      if (!r.unserved.empty() || r.value <= 0 || r.regions.size() != 1 || r.regions[0].data.size() != static_cast<size_t>(r.value)) {
        go_home(fmt::format("mmap of {}: reading it at home for a copy failed ({})", path,
                            r.value < 0 ? std::strerror(static_cast<int>(-r.value)) : "the file changed"),
                mmap_call.id);
        return std::nullopt;
      }
      const auto& data = r.regions[0].data;
      if (::pwrite(mem.get(), data.data(), data.size(), static_cast<off_t>(at)) != static_cast<ssize_t>(data.size())) {
        go_home(fmt::format("mmap of {}: no memory here for a copy ({})", path, std::strerror(errno)), mmap_call.id);
        return std::nullopt;
      }
      at += data.size();
    }
    return mem;
  }

  bool same_file_here(const FileDesc& fd, const std::string& path, const image::FileIdentity& want) {
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
    try {
      return image::same_file(want, identities_.of(fd.get(), path));
    } catch (const SysError&) {
      return false;
    }
  }

  // After close(fd) or close_range() succeeded at home: whether the body
  // holds a placed copy in that range (forgotten here; the caller lets the
  // body's own call close it).
  bool drop_placed(const Outstanding& o) {
    uint64_t first = o.args[0], last = o.nr == SYS_close ? o.args[0] : o.args[1];
    if (o.nr == SYS_close_range && (o.args[2] & CLOSE_RANGE_CLOEXEC)) return false;
    bool any = false;
    for (auto it = placed_.begin(); it != placed_.end();) {
      if (static_cast<uint64_t>(*it) >= first && static_cast<uint64_t>(*it) <= last) {
        it = placed_.erase(it);
        any = true;
      } else {
        ++it;
      }
    }
    return any;
  }

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

  // ---- leaving ----

  // The process goes home. A home that offered to prepare gets the plan of
  // the body first (HomePlan) and lays the deputy out from it while the
  // body runs on here; its HomePrepared makes the serving loop freeze the
  // body (freeze_home). Until then a call the body blocks in (`notif`: one
  // that needs home) waits, and is re-issued at home. Otherwise the body is
  // frozen at once.
  void go_home(const std::string& reason, std::optional<uint64_t> notif) {
    if ((offer_.flags & msg::kOfferHomePrepares) == 0) return freeze_home(reason, notif, notif && !home_requested_);
    if (going_) {
      if (notif) going_->notif = notif;
      return;
    }
    bool forced = notif && !home_requested_;
    home_requested_ = true;
    if (home_reason_.empty()) home_reason_ = reason;
    image::ProcessImage plan;
    try {
      plan = image::capture_from_proc(body_);
    } catch (const std::exception& e) {
      // It may be on its way out: the freeze finds out.
      out_.log.push_back(fmt::format("no plan of the body for home ({}): frozen at once", e.what()));
      return freeze_home(reason, notif, forced);
    }
    send(msg::HomePlan{reason, image::content_bytes(plan)});
    send_image(ch_, plan);
    going_ = Going{reason, notif, forced};
  }

  // Home called the move off before the freeze (the node it was to move on
  // to refused it): the body runs on as it was. A call that came to need
  // home meanwhile is re-issued, and goes home afresh.
  void called_off(const std::string& why) {
    std::optional<uint64_t> notif = going_->notif;
    out_.log.push_back(fmt::format("the move was called off: {}{}", why,
                                   notif ? "; the call that waited for home is issued again" : ""));
    going_.reset();
    home_requested_ = false;
    home_reason_.clear();
    if (notif) reissue(*notif);
  }

  // The body traced by this agent for a while (a freeze, or a hold while a
  // call is answered or a signal queued); it dies with the agent meanwhile.
  Tracee seize_body() { return Tracee::seize(body_, {ptrace::TraceOption::sysgood, ptrace::TraceOption::exit_kill}); }

  // Answers `notif` so that its call is issued again. -ERESTARTNOINTR
  // rewinds a call only on the way through signal handling, so the body is
  // held in a ptrace interrupt-stop while the answer lands; answered alone,
  // the program would see errno 513.
  void reissue(uint64_t notif) { hold_restarting(notif).detach(); }

  // The body held in an interrupt-stop; `notif`, if any, answered with
  // -ERESTARTNOINTR while the stop is pending, so the kernel rewinds its
  // call on the way into the stop (a frozen body re-issues it wherever it
  // runs next).
  Tracee hold_restarting(std::optional<uint64_t> notif) {
    Tracee t = seize_body();
    t.request_interrupt();
    if (notif) answer(*notif, 0, -static_cast<int>(kERestartNoIntr));
    t.settle();
    return t;
  }

  // Freezes the body (answering `notif` with a restart so the call is
  // re-issued at home), sends its image, and ends it once home has it.
  void freeze_home(const std::string& reason, std::optional<uint64_t> notif, bool forced) {
    Tracee t = hold_restarting(notif);
    msg::GoingHome gh{reason, 0, pending_signals(), {}};
    if (auto u = used_so_far()) gh.used = *u;
    image::Frozen f = image::capture_stopped(std::move(t), {.contents = false, .body_filter = true});
    std::vector<uint64_t> mismatched = going_ ? going_->mismatched : std::vector<uint64_t>{};
    gh.image_bytes = image::content_bytes(f.image, mismatched);
    send(gh);
    send_image(ch_, f.image, body_, mismatched);
    last_sent_ = Clock::now();
    f.image.pages.clear();
    // Signals home forwarded before it saw GoingHome cross the image: they
    // go back, to be queued at home again (BodyGone).
    msg::HomeDone done;
    msg::BodyGone gone;
    for (;;) {
      auto body = ch_.recv(msg::prepare_wait(link_timeout_));
      auto t2 = msg::peek_type(body);
      if (t2 == msg::Type::home_done) {
        done = msg::decode<msg::HomeDone>(body);
        break;
      }
      if (t2 == msg::Type::fwd_signal) {
        gone.signals.push_back(msg::decode<msg::FwdSignal>(body).siginfo);
        continue;
      }
      if (t2 != msg::Type::keepalive && t2 != msg::Type::come_home && t2 != msg::Type::fwd_cancel)
        throw LinkLost{fmt::format("unexpected {} while going home", msg::type_name(t2))};
    }
    if (!done.ok) return run_on(f, gone, done.error, forced);
    send(gone);
    int status = image::kill_frozen(f);
    body_reaped_ = true;
    out_.body_status = status;
    ended_ = true;
    out_.end = BodyOutcome::End::went_home;
    out_.message = done.moved_on_to != 0 ? fmt::format("moved on to node {} through home: {}", done.moved_on_to, reason)
                                         : fmt::format("went home: {}", reason);
  }

  // Home could not restore the body (and released its deputy again), or
  // the node it was to move on to refused it: the body runs on here, with
  // the signals home relayed meanwhile. A call that
  // needed home (`forced`) fails as it would where memory is short: fork,
  // vfork and clone with EAGAIN, anything else with ENOMEM. Any other call
  // the freeze interrupted is re-issued, as after a signal.
  void run_on(image::Frozen& f, const msg::BodyGone& relayed, const std::string& why, bool forced) {
    std::string fate = "; it runs on here";
    if (forced) {
      ptrace::Regs r = f.tracee.regs();
      long nr = static_cast<long>(r.orig_rax);
      int err = nr == SYS_fork || nr == SYS_vfork || nr == SYS_clone || nr == SYS_clone3 ? EAGAIN : ENOMEM;
      constexpr auto kRestart = static_cast<uint64_t>(-static_cast<int64_t>(kERestartNoIntr));
      bool restarting = r.rax == kRestart;
      if (!restarting && r.rax == r.orig_rax) {
        r.rip += 2;  // the kernel already rewound it to the syscall instruction
        restarting = true;
      }
      if (restarting) {
        r.rax = static_cast<uint64_t>(-static_cast<int64_t>(err));
        f.tracee.set_regs(r);
        fate = fmt::format("; it runs on here and its {} fails with {}", syscall_name(nr),
                           err == EAGAIN ? "EAGAIN" : "ENOMEM");
      }
    }
    f.tracee.detach();
    for (const auto& raw : relayed.signals) deliver(msg::FwdSignal{raw});
    out_.log.push_back(fmt::format("going home failed: {}{}", why, fate));
    going_.reset();
    home_requested_ = false;
    home_reason_.clear();
  }

  // Signals queued at the stopped body and not yet delivered (blocked, or
  // relayed from home a moment ago): the home queues them again.
  std::vector<std::array<std::byte, 128>> pending_signals() {
    std::vector<std::array<std::byte, 128>> out;
    for (uint32_t flags : {0u, static_cast<uint32_t>(PTRACE_PEEKSIGINFO_SHARED)}) {
      siginfo_t si[64];
      __ptrace_peeksiginfo_args a{0, flags, 64};
      long n = ::ptrace(PTRACE_PEEKSIGINFO, body_, &a, si);
      for (long i = 0; i < n; ++i) {
        std::array<std::byte, 128> b;
        std::memcpy(b.data(), &si[i], sizeof(siginfo_t));
        out.push_back(b);
      }
    }
    return out;
  }

  void body_died() {
    int status = 0;
    while (::waitpid(body_, &status, __WALL) < 0 && errno == EINTR) {
    }
    body_reaped_ = true;
    out_.body_status = status;
    ended_ = true;
    out_.end = BodyOutcome::End::exited;
    out_.message = WIFEXITED(status) ? fmt::format("body exited with {}", WEXITSTATUS(status))
                                     : fmt::format("body killed by signal {}", WIFSIGNALED(status) ? WTERMSIG(status) : -1);
    try {
      send(msg::BodyExit{status});
    } catch (const std::exception& e) {
      out_.log.push_back(fmt::format("telling home about the body's end: {}", e.what()));
    }
  }

  void link_lost(const std::string& why) {
    if (!ended_) {
      ended_ = true;
      out_.end = BodyOutcome::End::link_lost;
      out_.message = fmt::format("lost home: {}; body killed", why);
    }
    if (body_ > 0 && !body_reaped_) {
      ::kill(body_, SIGKILL);
      stub_.reset();
      int status = 0;
      ::waitpid(body_, &status, __WALL);
      out_.body_status = status;
      body_reaped_ = true;
    }
    ch_ = Channel{};
  }

  Channel ch_;
  BodyOptions o_;
  std::chrono::milliseconds link_timeout_;
  msg::MigOffer offer_;
  CpuUsage before_;  // used at home until the move (MigGo)
  bool usage_fallback_logged_ = false;
  bool usage_lost_logged_ = false;
  std::optional<Tracee> stub_;
  cpu_set_t node_cpus_{};  // the CPUs the body may use here (the agent's own)
  pid_t body_ = -1;
  pid_t init_ = -1;
  bool body_reaped_ = false;
  FileDesc listener_, body_pidfd_, relay_;
  std::optional<Outstanding> outstanding_;
  std::set<int> placed_;  // descriptors holding this node's copy of a file mapped here (map_here)
  std::set<std::string> served_paths_;
  // Files only home has, copied here for a mmap (copy_from_home); kept
  // while the body lives, as later mmaps of the same file (each dlopen maps
  // a library several times) use them again.
  std::vector<std::pair<msg::MappedFile, FileDesc>> copies_;
  static constexpr uint64_t kCopyLimit = uint64_t{64} << 20;  // larger: the process goes home
  image::IdentityCache identities_;  // of files this node maps for the body
  std::optional<msg::FwdResult> result_;
  bool cancel_sent_ = false;
  bool cancel_for_handler_ = false;  // a signal with a handler came while the call waited
  bool home_requested_ = false;
  std::string home_reason_;
  struct Going {
    std::string reason;
    std::optional<uint64_t> notif;  // the call the body waits in, to re-issue at home
    bool forced = false;            // that call is why it goes (it needs home)
    bool prepared = false;          // home answered the plan: freeze now
    std::vector<uint64_t> mismatched;  // regions whose file home has another version of
  };
  std::optional<Going> going_;  // the plan went home; waiting for HomePrepared
  uint64_t seq_ = 0;
  bool ids_changed_ = false;
  int stop_as_ = 0;  // the stop signal home sent, relayed as SIGSTOP
  uint64_t signals_seen_ = 0;  // FwdSignals received (BodyStopped)
  Clock::time_point next_stop_check_{};  // credentials changed at home: the offer's ids are stale
  bool ended_ = false;
  Clock::time_point last_sent_{};
  Clock::time_point last_stats_{};
  BodyOutcome out_;
};

BodyOutcome serve_body(Channel ch, const BodyOptions& options) {
  BodyServer s(std::move(ch), options);
  return s.run();
}

}  // namespace roam::mig
