// The home half of a migration: see migration.hpp.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <thread>
#include <unordered_map>

#include "roam/capture.hpp"
#include "roam/cpu_features.hpp"
#include "roam/error.hpp"
#include "roam/image_codec.hpp"
#include "roam/image_maps.hpp"
#include "roam/image_migratable.hpp"
#include "roam/image_proc.hpp"
#include "roam/log.hpp"
#include "roam/mig_image.hpp"
#include "roam/mig_messages.hpp"
#include "roam/mig_util.hpp"
#include "roam/migration.hpp"
#include "roam/remote_syscall.hpp"
#include "roam/restore.hpp"

namespace roam::mig {

using Clock = std::chrono::steady_clock;
using ptrace::KernelSigaction;
using ptrace::Regs;
using ptrace::RemotePtr;
using ptrace::RemoteSyscalls;
using ptrace::ScratchMem;

namespace {

constexpr std::size_t kMaxIo = std::size_t{1} << 20;   // one fast-path transfer at most
constexpr int kSignalPollMs = 1;                        // see forward_signals()
// How long an injected call is looked for before the link is served too.
constexpr int kQuickCallUs = 300;
constexpr uint64_t kMirrorLimit = uint64_t{64} << 20;   // mirrored pages kept in the deputy
constexpr uint64_t kPage = 4096;

std::chrono::microseconds us(Clock::duration d) { return std::chrono::duration_cast<std::chrono::microseconds>(d); }

// The link is gone or unusable: the deputy must end.
struct LinkLost {
  std::string why;
};

}  // namespace

class HomeAgent::Impl {
 public:
  Impl(pid_t pid, HomeOptions o) : pid_(pid), o_(o) {}

  ~Impl() {
    // A deputy still frozen here never got a body (move_out failed) or lost
    // it: Frozen's destructor detaches a live one, which then runs on.
  }

  MoveStats move_out(Channel ch) {
    MoveStats st;
    try {
      // The plan: the process as it runs now, without its pages. The remote
      // lays its stub out and faults its memory in from it while the
      // process still computes here.
      auto planned_at = Clock::now();
      // Refused before the remote does any work (capture checks again, frozen).
      if (auto m = image::migratable(pid_, static_cast<pid_t>(::gettid())); !m)
        throw UserError(fmt::format("process {} cannot migrate: {}", pid_, m.reason));
      image::ProcessImage plan = image::capture_from_proc(pid_);
      ch.send_msg(offer_for(plan));
      send_image(ch, plan);
      auto prepared = ch.recv(msg::prepare_wait(o_.link_timeout));
      if (msg::peek_type(prepared) == msg::Type::mig_refused)
        throw UserError(msg::decode<msg::MigRefused>(prepared).reason);
      auto prep = msg::decode<msg::MigPrepared>(prepared);
      st.prepare = us(Clock::now() - planned_at);
      st.populated_bytes = prep.populated_bytes;

      // The capture's injections (sigactions, timers: ~70 of them) run
      // with the process on this thread's CPU (see follow_agent_cpu).
      follow_agent_cpu();
      frozen_.emplace(image::capture(pid_, {.contents = false}));
      st.capture = us(Clock::now() - frozen_->frozen_at);
      if (!frozen_->image.seccomp_filters.empty() && (prep.flags & msg::kPreparedInstallsFilters) == 0)
        throw UserError(fmt::format("process {} runs under a seccomp filter, which the target's older roam cannot carry",
                                    pid_));
      original_misc_ = frozen_->image.misc;
      pidfd_ = pidfd_of(pid_);
      // Files the target has another version of: their pages travel whole.
      st.page_bytes = image::content_bytes(frozen_->image, prep.mismatched);
      auto sent_at = Clock::now();
      st.image_bytes = send_image(ch, frozen_->image, pid_, prep.mismatched);

      auto reply = ch.recv(msg::prepare_wait(o_.link_timeout));
      if (msg::peek_type(reply) == msg::Type::mig_refused)
        throw UserError(msg::decode<msg::MigRefused>(reply).reason);
      auto ready = msg::decode<msg::MigReady>(reply);
      st.restore_us = ready.restore_us;
      st.transfer = us(Clock::now() - sent_at);
      // What it used until now goes with it: its usage calls away answer
      // this plus what the body uses.
      msg::MigGo go;
      if (auto used = usage_of(pid_)) go.before = *used;
      go.before += o_.carried;
      ch.send_msg(go);
      st.freeze = us(Clock::now() - frozen_->frozen_at);
    } catch (...) {
      frozen_.reset();  // detaches: the process runs on at home
      pidfd_.reset();
      own_cpus_again();
      throw;
    }
    ch_ = std::move(ch);
    signals_sent_ = last_cont_sent_ = 0;
    deputy_ = &frozen_->tracee;
    last_sent_ = Clock::now();
    try {
      release_memory();
    } catch (const std::exception& e) {
      log_.push_back(fmt::format("releasing the deputy's memory failed: {}", e.what()));
    }
    st.deputy_rss_kib = rss_kib(pid_);
    return st;
  }

  // What a target is told of the process: who it is at home, the CPU it
  // started on, home's clocks now.
  msg::MigOffer offer_for(const image::ProcessImage& plan) {
    id_ = identity_of(pid_);
    msg::MigOffer offer;
    offer.home_node = o_.self_node;
    offer.home_pid = pid_;
    offer.ppid = id_.ppid;
    offer.uid = static_cast<uint32_t>(id_.uid);
    offer.euid = static_cast<uint32_t>(id_.euid);
    offer.gid = static_cast<uint32_t>(id_.gid);
    offer.egid = static_cast<uint32_t>(id_.egid);
    wire::Writer cw;
    host_cpu_features().encode(cw);
    offer.cpu = cw.take();
    offer.image_bytes = image::content_bytes(plan);
    offer.link_timeout_ms = static_cast<uint32_t>(o_.link_timeout.count());
    offer.flags = msg::kOfferHomePrepares | msg::kOfferDescribesFiles;
    offer.monotonic_ns = clock_ns(CLOCK_MONOTONIC);
    offer.boottime_ns = clock_ns(CLOCK_BOOTTIME);
    return offer;
  }

  // Sends the body on from its node to `node` over `ch` (authenticated with
  // it), relayed through here: the body's plan goes to the next node, which
  // prepares; the body freezes and its image passes through to it; once it
  // runs there the old node ends its copy. Nothing is restored here. False
  // when a move is already under way.
  bool move_on(uint32_t node, Channel ch, const std::string& reason) {
    if (come_home_sent_ || next_ || !ch_.open()) return false;
    next_ = std::move(ch);
    next_node_ = node;
    next_reason_ = reason;
    called_off_.clear();
    ch_.send_msg(msg::ComeHome{reason});
    last_sent_ = Clock::now();
    come_home_sent_ = true;
    return true;
  }

  HomeOutcome serve(int extra_fd, const std::function<void()>& on_extra) {
    out_ = HomeOutcome{};
    extra_fd_ = extra_fd;
    on_extra_ = on_extra;
    ended_ = false;
    try {
      stops_.emplace();
      while (!ended_) step();
    } catch (const LinkLost& l) {
      link_lost(l.why);
    } catch (const ChannelError& e) {
      link_lost(e.what());
    } catch (const wire::DecodeError& e) {
      link_lost(fmt::format("garbled message from the body's node: {}", e.what()));
    } catch (const ptrace::TraceeDied&) {
      deputy_gone();
    } catch (const std::exception& e) {
      fail(e.what());
    }
    stops_.reset();
    out_.log.insert(out_.log.begin(), log_.begin(), log_.end());
    log_.clear();
    return std::move(out_);
  }

  void come_home(const std::string& reason) {
    if (come_home_sent_ || !ch_.open()) return;
    ch_.send_msg(msg::ComeHome{reason});
    last_sent_ = Clock::now();
    come_home_sent_ = true;
  }

 private:
  enum class Wait { ready, cancelled, ended };

  // What a forwarded call in progress waits for (see step()).
  struct Waiting {
    int fd = -1;               // ready for `events`: the call may go on (Wait::ready)
    short events = POLLIN;
    uint64_t seq = 0;          // the call: a FwdCancel for it is Wait::cancelled
    bool deputy_runs = false;  // the deputy runs it (injected): nothing else may be injected now
  };

  // One round of the loop: wait for something, handle it. While a forwarded
  // call waits (`w.fd` >= 0) says what ended the wait, or nothing to go on
  // waiting.
  std::optional<Wait> step() { return step(Waiting{}); }
  std::optional<Wait> step(const Waiting& w) {
    bool waiting = w.fd >= 0;
    pollfd p[4] = {{ch_.fd(), POLLIN, 0},
                   {pidfd_.get(), POLLIN, 0},
                   {extra_fd_, POLLIN, 0},
                   {w.fd, w.events, 0}};
    int n = ::poll(p, 4, kSignalPollMs);
    if (n < 0 && errno != EINTR) throw SysError("poll", errno);
    if (n < 0) return std::nullopt;
    if (p[1].revents != 0) {
      // The death of a deputy running a call is that call's to report.
      if (w.deputy_runs) return Wait::ready;
      deputy_gone();
      return Wait::ended;
    }
    // A signal sent home before the data a forwarded read waits for reaches
    // the body before that read returns: look whenever the data is there.
    // A deputy inside a call sends its signals itself (see generic()).
    if (!w.deputy_runs) forward_signals(waiting && p[3].revents != 0);
    if (ended_) return Wait::ended;
    if (p[2].revents != 0 && on_extra_) on_extra_();
    if (p[0].revents != 0) ch_.pump();
    std::vector<std::byte> body;
    while (!ended_) {
      if (waiting) {
        // Only a cancel of this call matters now; the rest waits its turn.
        if (!ch_.pop(body)) break;
        msg::Type t = msg::peek_type(body);
        if (t == msg::Type::fwd_cancel && msg::decode<msg::FwdCancel>(body).seq == w.seq) return Wait::cancelled;
        if (t != msg::Type::keepalive && t != msg::Type::fwd_cancel) pending_.push_back(std::move(body));
        continue;
      }
      if (!pending_.empty()) {
        body = std::move(pending_.front());
        pending_.pop_front();
      } else if (!ch_.pop(body)) {
        break;
      }
      handle(body);
    }
    if (ended_) return Wait::ended;
    // While a call waits, only the body's end (or a protocol slip) can come
    // from its side: stop waiting and let the main loop handle it.
    if (waiting && !pending_.empty()) return Wait::cancelled;
    if (!ch_.open() && pending_.empty()) throw LinkLost{"connection closed by the body's node"};
    auto now = Clock::now();
    if (now - ch_.last_heard() > o_.link_timeout)
      throw LinkLost{fmt::format("no word from the body's node for {} ms", o_.link_timeout.count())};
    if (now - last_sent_ > o_.link_timeout / 4) {
      ch_.send_msg(msg::Keepalive{});
      last_sent_ = now;
    }
    if (o_.on_tick && now - last_tick_ >= std::chrono::seconds(1)) {
      last_tick_ = now;
      o_.on_tick(calls_served_, body_demand_);
    }
    if (waiting && come_home_sent_) return Wait::cancelled;
    if (waiting && p[3].revents != 0) return Wait::ready;
    return std::nullopt;
  }

  void send(const auto& m) {
    try {
      ch_.send_msg(m);
    } catch (const ChannelError&) {
      // The body's node closes the link right after telling how the body
      // ended: a signal or keepalive sent meanwhile finds it closed, and
      // the BodyExit before the close is still to be read.
      if (!body_end_left()) throw;
      return;
    }
    last_sent_ = Clock::now();
  }

  // Reads what the closed link still holds; true if the body's end is in it.
  bool body_end_left() {
    std::vector<std::byte> body;
    for (;;) {
      bool more = ch_.pump();
      while (ch_.pop(body)) pending_.push_back(std::move(body));
      if (!more) break;
      pollfd p{ch_.fd(), POLLIN, 0};
      if (::poll(&p, 1, 0) <= 0) break;
    }
    return std::any_of(pending_.begin(), pending_.end(),
                       [](const auto& b) { return msg::peek_type(b) == msg::Type::body_exit; });
  }

  void handle(std::vector<std::byte>& body) {
    switch (msg::peek_type(body)) {
      case msg::Type::fwd_call: {
        auto call = msg::decode<msg::FwdCall>(body);
        msg::FwdResult r = execute(call);
        try {
          if (!ended_) send(r);
        } catch (const ChannelError&) {
          // The body ended while its call waited here: its BodyExit is
          // queued, and it decides how the deputy ends.
          if (pending_.empty()) throw;
        }
        return;
      }
      case msg::Type::body_exit:
        return body_ended(msg::decode<msg::BodyExit>(body).status);
      case msg::Type::home_plan: {
        auto hp = msg::decode<msg::HomePlan>(body);
        if (next_ && relaying(hp.reason)) return relay_plan();
        return prepare_home(hp);
      }
      case msg::Type::going_home: {
        auto gh = msg::decode<msg::GoingHome>(body);
        if (relaying(gh.reason)) return relay_body(gh);
        return receive_home(gh);
      }
      case msg::Type::body_stopped: {
        auto m = msg::decode<msg::BodyStopped>(body);
        // A SIGCONT sent after the signals the body had when it stopped
        // continues it (a stop and a continue in quick succession): the
        // deputy must not stay stopped for it. One still pending here goes
        // first (the SIGSTOP stop_deputy sends would discard it).
        forward_signals(true);
        if (m.signals_seen != msg::BodyStopped::kUnknown && last_cont_sent_ > m.signals_seen) return;
        return stop_deputy(m.signo);
      }
      case msg::Type::keepalive:
        return note_body_sched(msg::decode<msg::Keepalive>(body).body_sched_ns);
      case msg::Type::fwd_cancel:  // for a call already answered
        return;
      default:
        throw LinkLost{fmt::format("unexpected {} message from the body's node", msg::type_name(msg::peek_type(body)))};
    }
  }

  // The body's run + wait time, once a second from its node: its demand
  // over the interval.
  void note_body_sched(uint64_t ns) {
    if (ns == 0) return;
    auto now = Clock::now();
    if (sched_at_ != Clock::time_point{} && ns >= sched_ns_) {
      double dt = std::chrono::duration<double>(now - sched_at_).count();
      if (dt > 0.2) body_demand_ = std::clamp(static_cast<double>(ns - sched_ns_) / 1e9 / dt, 0.0, 1.0);
    }
    if (sched_at_ == Clock::time_point{} || now - sched_at_ > std::chrono::milliseconds(200)) {
      sched_at_ = now;
      sched_ns_ = ns;
    }
  }

  // ---- forwarded calls ----

  msg::FwdResult execute(const msg::FwdCall& c) {
    ++out_.served[syscall_name(c.nr)];
    ++calls_served_;
    msg::FwdResult r;
    r.seq = c.seq;
    const auto& a = c.args;
    switch (c.nr) {
      case SYS_mmap:
        describe_mapped_file(c, r);
        return r;
      case SYS_read:
      case SYS_pread64: {
        int fd = deputy_fd(a[0]);
        if (fd < 0) {
          r.value = fd;
          return r;
        }
        if (kind_of(fd) == FileKind::terminal) break;  // the deputy reads it: job control (SIGTTIN) applies
        if (c.nr == SYS_read && (::fcntl(fd, F_GETFL) & O_NONBLOCK) == 0) {
          Wait w = wait_ready(fd, POLLIN, c.seq);
          if (w != Wait::ready) {
            // Nothing was read: the kernel's answer to a signal then.
            r.cancelled = true;
            r.value = -ptrace::kERestartSys;
            return r;
          }
        }
        std::vector<std::byte> buf(std::min<uint64_t>(a[2], kMaxIo));
        ssize_t n = c.nr == SYS_read ? ::read(fd, buf.data(), buf.size())
                                     : ::pread(fd, buf.data(), buf.size(), static_cast<off_t>(a[3]));
        if (n < 0) {
          r.value = -errno;
          return r;
        }
        buf.resize(static_cast<size_t>(n));
        r.value = n;
        if (n > 0) r.regions.push_back({a[1], static_cast<uint64_t>(n), static_cast<uint8_t>(msg::RegionDir::out), std::move(buf)});
        return r;
      }
      case SYS_write:
      case SYS_pwrite64: {
        int fd = deputy_fd(a[0]);
        if (fd < 0) {
          r.value = fd;
          return r;
        }
        std::span<const std::byte> data;
        for (const auto& g : c.regions)
          if (g.addr == a[1]) data = g.data;
        if (data.size() != a[2] && a[2] != 0) break;  // not the shape we know: generic path
        FileKind kind = kind_of(fd);
        if (kind == FileKind::terminal) break;  // the deputy writes it: job control (TOSTOP's SIGTTOU) applies
        // A blocking write to a pipe or socket can wait without end; one to
        // a file or block device waits for the disk only.
        if (c.nr == SYS_write && kind == FileKind::other && (::fcntl(fd, F_GETFL) & O_NONBLOCK) == 0) {
          if (std::optional<msg::FwdResult> done = write_interruptibly(fd, data, c.seq)) return *done;
          break;  // this file cannot say it would block: the deputy writes it (interruptible)
        }
        // A file size limit is the process's: the deputy's kernel applies
        // it (EFBIG, SIGXFSZ), not this agent's.
        if (rlimit lim; kind == FileKind::disk &&
                        (::prlimit(pid_, RLIMIT_FSIZE, nullptr, &lim) != 0 || lim.rlim_cur != RLIM_INFINITY))
          break;
        ssize_t n = c.nr == SYS_write ? ::write(fd, data.data(), data.size())
                                      : ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(a[3]));
        if (n < 0 && errno == EPIPE) break;  // nothing written: the deputy writes it, and gets its SIGPIPE
        r.value = n < 0 ? -errno : n;
        return r;
      }
      default:
        break;
    }
    generic(c, r);
    switch (c.nr) {
      case SYS_close:
        cache_.erase(static_cast<int>(a[0]));
        break;
      case SYS_dup2:
      case SYS_dup3:
        cache_.erase(static_cast<int>(a[1]));
        break;
      case SYS_close_range:
        for (auto it = cache_.begin(); it != cache_.end();)
          it = (static_cast<uint64_t>(it->first) >= a[0] && static_cast<uint64_t>(it->first) <= a[1]) ? cache_.erase(it) : std::next(it);
        break;
      default:
        // A new descriptor number cannot be in the cache (its number was
        // free), but be safe with calls that return one.
        if (r.value >= 0 && r.value < (1 << 20)) cache_.erase(static_cast<int>(r.value));
        break;
    }
    return r;
  }

  // The call itself, injected into the deputy with the body's own argument
  // registers: its memory arguments point at pages mirrored at the same
  // addresses, filled with what the body holds there.
  //
  // It may block (poll, accept, wait4...), and a signal must interrupt it
  // as it would at home: the deputy runs it with its signals unblocked, so
  // one sent to the home pid interrupts it; the signal goes to the body at
  // once and the call goes on as the kernel restarts a call (the same call,
  // or restart_syscall for the deputy's own restart block). If the body
  // would run a handler for it, or stops, it cancels the call (FwdCancel):
  // the deputy is interrupted and the body gets the kernel's own code
  // (-EINTR, -ERESTARTSYS...), so its kernel applies the same rule
  // (SA_RESTART or not). A call that completed first is answered as such.
  void generic(const msg::FwdCall& c, msg::FwdResult& r) {
    follow_agent_cpu();
    long nr = c.nr;
    auto signals = ptrace::SignalsDuring::interrupt;
    for (bool first = true;; first = false) {
      Injected o;
      {
        RemoteSyscalls rs(*deputy_, ptrace::SyscallSite::vdso);
        if (first && !mirror_regions(rs, c, r)) return;
        o = run_watched(rs, nr, c.args, c.seq, signals);
      }
      bool cut_short = ptrace::is_restart_code(o.value) || o.value == -EINTR;
      if (o.interrupted && cut_short) {
        // What the kernel wrote all the same (poll's revents, select's
        // time left) goes back too, as it would be in the body.
        r.cancelled = true;
        r.value = o.value;
        break;
      }
      if (!ptrace::is_restart_code(o.value) && !(o.value == -EINTR && deputy_has_pending())) {
        r.value = o.value;
        break;
      }
      forward_signals(true);
      // One that cannot be taken must not interrupt the call over and over.
      signals = deputy_has_pending() ? ptrace::SignalsDuring::held : ptrace::SignalsDuring::interrupt;
      nr = o.value == -ptrace::kERestartRestartBlock ? SYS_restart_syscall : c.nr;
    }
    // A signal the call raised (SIGPIPE from a write to a pipe or socket
    // without a reader) goes before its result: the body takes it on its
    // way back from the call, as Linux delivers it, and dies of it before
    // it sees the EPIPE when it has no handler.
    if (deputy_has_pending()) forward_signals(true);
    for (const auto& g : c.regions) {
      if ((g.dir & static_cast<uint8_t>(msg::RegionDir::out)) == 0) continue;
      msg::FwdRegion o{g.addr, g.len, g.dir, std::vector<std::byte>(g.len)};
      deputy_->read_mem(RemotePtr<void>(g.addr), o.data);
      r.regions.push_back(std::move(o));
    }
  }

  // The call's memory, mirrored in the deputy and filled; false (and why in
  // `r`) if it cannot be.
  bool mirror_regions(RemoteSyscalls& rs, const msg::FwdCall& c, msg::FwdResult& r) {
    uint64_t need = 0;
    for (const auto& g : c.regions) need += g.len;
    if (mirrored_ + need > kMirrorLimit) drop_mirror(rs);
    for (const auto& g : c.regions) {
      if (!mirror(rs, g.addr, g.len)) {
        r.unserved = fmt::format("{} at home: cannot mirror {:#x}+{} in the deputy", syscall_name(c.nr), g.addr, g.len);
        return false;
      }
    }
    for (const auto& g : c.regions)
      if (!g.data.empty()) deputy_->write_mem(RemotePtr<void>(g.addr), g.data);
    return true;
  }

  // How an injected call watched while it ran ended.
  struct Injected {
    long value = 0;            // its raw return value
    bool interrupted = false;  // we interrupted it: cancelled, or the process comes home
  };

  // Runs one call in the deputy and goes on serving the link meanwhile
  // (step()). A FwdCancel for it, the process's coming home or the body's
  // end interrupts it.
  Injected run_watched(RemoteSyscalls& rs, long nr, const std::array<uint64_t, 6>& args, uint64_t seq,
                       ptrace::SignalsDuring signals) {
    ROAM_ASSERT(stops_.has_value(), "an injected call outside serve()");
    rs.start_syscall(nr, args, signals);
    Injected out;
    // Most calls return at once: they are looked for a moment (yielding the
    // CPU, which the deputy shares with this thread, see follow_agent_cpu)
    // before the full round of serving the link. The stop's SIGCHLD is not
    // relied on here: in a process with other threads it may go to one of
    // them (the in-process benchmark measured a forwarded fcntl at ~345 us
    // that way, against ~180 us with this).
    auto until = Clock::now() + std::chrono::microseconds(kQuickCallUs);
    do {
      if (std::optional<long> v = rs.syscall_result()) {
        out.value = *v;
        return out;
      }
      ::sched_yield();
    } while (Clock::now() < until);
    for (;;) {
      stops_->drain();
      if (std::optional<long> v = rs.syscall_result()) {
        out.value = *v;
        return out;
      }
      std::optional<Wait> w = step({.fd = stops_->fd(), .seq = seq, .deputy_runs = true});
      if ((w == Wait::cancelled || w == Wait::ended) && !out.interrupted) {
        rs.interrupt_syscall();
        out.interrupted = true;
      }
    }
  }

  // Every injection is a few ptrace round trips between this thread and the
  // deputy; on the same CPU they cost a tenth of what they cost across CPUs
  // (17 vs 100-150 us measured here). The deputy runs nothing else, so it
  // follows this thread to whichever CPU it is on.
  void follow_agent_cpu() {
    int cpu = ::sched_getcpu();
    if (cpu < 0 || cpu == deputy_cpu_) return;
    if (deputy_cpu_ < 0 && ::sched_getaffinity(pid_, sizeof own_affinity_, &own_affinity_) != 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (::sched_setaffinity(pid_, sizeof set, &set) == 0) deputy_cpu_ = cpu;
  }

  void own_cpus_again() {
    if (deputy_cpu_ < 0) return;
    ::sched_setaffinity(pid_, sizeof own_affinity_, &own_affinity_);
    deputy_cpu_ = -1;
  }

  bool mirror(RemoteSyscalls& rs, uint64_t addr, uint64_t len) {
    if (len == 0) return true;
    uint64_t a = addr & ~(kPage - 1), b = (addr + len + kPage - 1) & ~(kPage - 1);
    while (a < b) {
      auto it = mirror_.upper_bound(a);
      if (it != mirror_.begin()) {
        auto prev = std::prev(it);
        if (prev->second > a) {
          a = prev->second;
          continue;
        }
      }
      uint64_t end = b;
      if (it != mirror_.end() && it->first < end) end = it->first;
      if (prepared_) {
        // Laid out for the coming home: the body's regions are there, at
        // the body's addresses, already.
        if (uint64_t in = prepared_end(a)) {
          a = std::min(in, b);
          continue;
        }
        if (uint64_t next = prepared_start_after(a); next < end) end = next;
      }
      long rc = rs.syscall(SYS_mmap, a, end - a, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
      if (rc != static_cast<long>(a)) {
        if (rc > 0) rs.syscall(SYS_munmap, rc, end - a);
        return false;
      }
      mirror_[a] = end;
      mirrored_ += end - a;
      a = end;
    }
    return true;
  }

  // The end of the prepared region holding `addr`, or 0.
  uint64_t prepared_end(uint64_t addr) const {
    for (const image::Vma& v : prepared_->regions)
      if (!v.kernel_provided() && v.start <= addr && addr < v.end) return v.end;
    return 0;
  }
  uint64_t prepared_start_after(uint64_t addr) const {
    uint64_t next = UINT64_MAX;
    for (const image::Vma& v : prepared_->regions)
      if (!v.kernel_provided() && v.start > addr) next = std::min(next, v.start);
    return next;
  }

  // Coming home, before the body is frozen: the deputy is laid out as the
  // body runs now and its memory faulted in (restore::prepare, as the
  // remote does before a move out), so the freeze only copies. The body
  // runs on meanwhile; its calls wait until this is done, then find their
  // memory in the prepared regions (mirror()). The injections' scratch is
  // the restore's own, which the restore unmaps at its end.
  void prepare_home(const msg::HomePlan& hp) {
    ImageReceiver rx(ch_, o_.link_timeout);
    image::ProcessImage plan;
    try {
      plan = rx.header();
      rx.drain();
    } catch (const wire::DecodeError& e) {
      throw LinkLost{fmt::format("bad plan of the body coming home: {}", e.what())};
    }
    auto t0 = Clock::now();
    msg::HomePrepared done;
    follow_agent_cpu();
    try {
      if (o_.fault && o_.fault("home-prepare")) throw restore::RestoreError("fault injected before the layout");
      prepared_ = restore::prepare(*deputy_, plan);
      scratch_ = prepared_->scratch_start;
      mirror_.clear();
      mirrored_ = 0;
      done.ok = true;
      done.populated_bytes = prepared_->populated_bytes;
      done.mismatched = prepared_->mismatched;
    } catch (const ptrace::TraceeDied&) {
      throw;
    } catch (const std::exception& e) {
      // Whatever it left is cleared by the restore (restore_into without a
      // plan); calls meanwhile need a scratch page again.
      prepared_.reset();
      mirror_.clear();
      mirrored_ = 0;
      new_scratch();
      done.error = e.what();
      log_.push_back(fmt::format("preparing the deputy for the coming home failed ({}): restoring without", e.what()));
      done.mismatched = restore::differing_files(plan);
    }
    sent_whole_ = done.mismatched;
    for (uint64_t start : done.mismatched)
      log_.push_back(fmt::format("coming home: the file mapped at {:#x} changed here since it left; its pages travel", start));
    auto took = us(Clock::now() - t0);
    done.prepare_us = static_cast<uint64_t>(took.count());
    if (done.ok) {
      out_.home_prepare = took;
      log_.push_back(fmt::format("coming home ({}): {} MiB faulted in at home in {} ms before the freeze", hp.reason,
                                 done.populated_bytes >> 20, done.prepare_us / 1000));
    }
    send(done);
  }

  void new_scratch() {
    RemoteSyscalls rs(*deputy_, ptrace::SyscallSite::vdso);
    long page = rs.syscall(SYS_mmap, 0, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page < 0 && page > -4096) throw SysError("mmap of the deputy's scratch page", static_cast<int>(-page));
    scratch_ = static_cast<uint64_t>(page);
  }

  void drop_mirror(RemoteSyscalls& rs) {
    for (auto [a, b] : mirror_) rs.syscall(SYS_munmap, a, b - a);
    mirror_.clear();
    mirrored_ = 0;
  }

  // Everything but the vDSO pages goes: the deputy only ever runs injected
  // calls from now on, and those find their memory mirrored on demand.
  void release_memory() {
    if (const auto& rseq = frozen_->image.rseq) {
      // With its rseq area gone the kernel would SIGSEGV the deputy on the
      // way back to user mode; coming home registers it again.
      RemoteSyscalls rs(*deputy_, ptrace::SyscallSite::vdso);
      rs.checked_syscall("rseq(UNREGISTER) in the deputy", SYS_rseq, rseq->addr, rseq->len, 1, rseq->signature);
    }
    {
      RemoteSyscalls rs(*deputy_, ptrace::SyscallSite::vdso);
      // Its timers now tick in the body: disarmed here, or the deputy would
      // raise a second SIGALRM for every one the body gets.
      for (int which = 0; which < 3; ++which) {
        ScratchMem zero = ScratchMem::holding(rs, itimerval{});
        rs.syscall(SYS_setitimer, which, zero.get(), 0);
      }
      for (const auto& t : frozen_->image.posix_timers) rs.syscall(SYS_timer_delete, t.id);
      // mlockall(MCL_FUTURE) would lock every mirrored page: the body has
      // it, and coming home sets it again (restore).
      if (frozen_->image.misc.mlockall_future) rs.syscall(SYS_munlockall);
      // rt_sigtimedwait's arguments live here (forward_signals).
      long page = rs.syscall(SYS_mmap, 0, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (page < 0 && page > -4096) throw SysError("mmap of the deputy's scratch page", static_cast<int>(-page));
      scratch_ = static_cast<uint64_t>(page);
      for (const auto& iv : frozen_->image.vmas) {
        switch (iv.vma.kind) {
          case image::VmaKind::vdso:
          case image::VmaKind::vvar:
          case image::VmaKind::vvar_vclock:
          case image::VmaKind::vsyscall:
            continue;
          default:
            rs.syscall(SYS_munmap, iv.vma.start, iv.vma.end - iv.vma.start);
        }
      }
    }
    // Injections must not take their scratch space from the old stack
    // pointer, which may now be a mirrored page of the body's.
    Regs r = deputy_->regs();
    r.rsp = 0;
    deputy_->set_regs(r);
    // No handler may ever run in the deputy (they are unmapped): every
    // signal stays queued for forward_signals() to take.
    deputy_->set_signal_mask(~uint64_t{0});
  }

  // A private file mmap the body's node serves itself (kOfferDescribesFiles):
  // the errors the deputy's kernel would give (EBADF, EACCES, EPERM), else
  // the file's path and identity, for that node to map its own copy when it
  // is the same file or a copy read from here. Anything else than a regular
  // file with content (a device, /proc, a deleted file) is left to home:
  // the process comes home.
  void describe_mapped_file(const msg::FwdCall& c, msg::FwdResult& r) {
    int fd = deputy_fd(c.args[4]);
    int flags = fd < 0 ? -1 : ::fcntl(fd, F_GETFL);
    if (flags < 0 || (flags & O_PATH)) {
      r.value = -EBADF;
      return;
    }
    if ((flags & O_ACCMODE) == O_WRONLY) {
      r.value = -EACCES;
      return;
    }
    struct stat st {};
    struct statfs fs {};
    if (::fstat(fd, &st) != 0 || ::fstatfs(fd, &fs) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0 ||
        fs.f_type == PROC_SUPER_MAGIC || fs.f_type == SYSFS_MAGIC) {
      r.unserved = "mmap of a file that is not a regular file with content";
      return;
    }
    if ((c.args[2] & PROT_EXEC) && (fs.f_flags & ST_NOEXEC)) {
      r.value = -EPERM;
      return;
    }
    std::string path(PATH_MAX, '\0');
    ssize_t n = ::readlink(fmt::format("/proc/{}/fd/{}", pid_, static_cast<int>(c.args[4])).c_str(), path.data(), path.size());
    if (n < 0) {
      r.value = -EBADF;
      return;
    }
    path.resize(static_cast<size_t>(n));
    if (path.empty() || path[0] != '/' || path.ends_with(" (deleted)")) {
      r.unserved = fmt::format("mmap of {}, which has no path", path);
      return;
    }
    try {
      r.file = msg::MappedFile{path, identities_.of(fd, path)};
    } catch (const SysError& e) {
      r.unserved = fmt::format("mmap of {}, which home cannot read: {}", path, e.what());
    }
  }

  int deputy_fd(uint64_t arg) {
    int fd = static_cast<int>(arg);
    if (fd < 0) return -EBADF;
    auto it = cache_.find(fd);
    if (it != cache_.end()) return it->second.get();
    int mine = static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd_.get(), fd, 0));
    if (mine < 0) return -errno;
    return cache_.emplace(fd, FileDesc(mine)).first->second.get();
  }

  // What a deputy descriptor is, for the read/write fast path (one fstat):
  //   disk: a regular file or block device, whose calls wait for the disk
  //     only;
  //   terminal: the process's controlling terminal (or /dev/tty). Its reads
  //     and writes are the deputy's own (injected), so that the kernel
  //     applies job control to them: a background job reading it is
  //     stopped by SIGTTIN, one writing it under TOSTOP by SIGTTOU. Done
  //     here, by this agent that has no controlling terminal, they would
  //     take the foreground job's input;
  //   other: pipes, sockets, other devices, which may block without end.
  enum class FileKind { disk, terminal, other };
  FileKind kind_of(int fd) const {
    struct stat st;
    if (::fstat(fd, &st) != 0) return FileKind::other;
    if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) return FileKind::disk;
    termios t;
    if (!S_ISCHR(st.st_mode) || ::ioctl(fd, TCGETS, &t) != 0) return FileKind::other;
    if (st.st_rdev == makedev(5, 0)) return FileKind::terminal;  // /dev/tty: the controlling terminal, by definition
    try {
      std::vector<std::string> f = image::proc::stat_fields(image::proc::read_file(pid_, "stat"));
      if (f.size() <= 7) return FileKind::terminal;  // unknown: the deputy's way is always right
      uint64_t tty_nr = image::proc::parse_u64(f[7], 10, "tty_nr");
      // The kernel's new_encode_dev() of the device number.
      uint64_t maj = major(st.st_rdev), min = minor(st.st_rdev);
      return tty_nr == ((min & 0xff) | (maj << 8) | ((min & ~uint64_t{0xff}) << 12)) ? FileKind::terminal
                                                                                       : FileKind::other;
    } catch (const std::exception&) {
      return FileKind::terminal;
    }
  }

  // The write fast path for a file that may block: written here in pieces
  // that never block (RWF_NOWAIT), waiting in between as a forwarded read
  // does, so a signal for the process interrupts it as Linux would: nothing
  // written yet, -ERESTARTSYS (EINTR, or a restart under SA_RESTART); some,
  // that count. A pipe without a reader, or a file that cannot write
  // without blocking (RWF_NOWAIT unsupported): nothing (std::nullopt), and
  // the deputy writes it itself, so the kernel raises SIGPIPE there.
  std::optional<msg::FwdResult> write_interruptibly(int fd, std::span<const std::byte> data, uint64_t seq) {
    msg::FwdResult r;
    r.seq = seq;
    size_t done = 0;
    for (;;) {
      iovec v{const_cast<std::byte*>(data.data() + done), data.size() - done};
      ssize_t n = ::pwritev2(fd, &v, 1, -1, RWF_NOWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n >= 0) {
        done += static_cast<size_t>(n);
        if (done == data.size()) break;
        continue;  // part of it fitted: try the rest before waiting
      }
      if (errno != EAGAIN) {
        if (done > 0) break;  // what Linux returns when a later part fails
        if (errno == EPIPE || errno == EOPNOTSUPP || errno == EINVAL) return std::nullopt;
        r.value = -errno;
        return r;
      }
      Wait w = wait_ready(fd, POLLOUT, seq);
      if (w == Wait::ready) continue;
      if (done > 0) break;  // interrupted after a part: its count
      r.cancelled = true;
      r.value = -ptrace::kERestartSys;
      return r;
    }
    r.value = static_cast<int64_t>(done);
    return r;
  }

  Wait wait_ready(int fd, short events, uint64_t seq) {
    for (;;) {
      if (std::optional<Wait> w = step({.fd = fd, .events = events, .seq = seq})) return *w;
    }
  }

  // ---- signals ----

  // Signals sent to the home pid. The deputy sits in a ptrace interrupt-stop
  // with every signal blocked, where a new signal only becomes pending: the
  // kernel reports nothing to the tracer. So we look at its queues with
  // PTRACE_PEEKSIGINFO (nothing dequeued) every kSignalPollMs and whenever a
  // forwarded read's data arrives, and take each one with an injected
  // rt_sigtimedwait(all, &info, {0, 0}): the deputy never runs a handler or
  // a user instruction (its code is unmapped), and a signal the kernel
  // discards at dequeue time (that of a deleted POSIX timer) is simply not
  // returned. SIGSTOP, which no one can wait for, is taken in a
  // signal-delivery-stop instead.
  void forward_signals(bool now_anyway = false) {
    if (ended_ || deputy_ == nullptr) return;
    auto now = Clock::now();
    if (now < next_signal_check_ && !now_anyway) return;
    next_signal_check_ = now + std::chrono::milliseconds(kSignalPollMs);
    for (int round = 0; round < 4096 && deputy_has_pending(); ++round) {
      std::optional<siginfo_t> info = take_signal();
      if (!info) break;
      msg::FwdSignal m;
      std::memcpy(m.siginfo.data(), &*info, sizeof(siginfo_t));
      send(m);
      ++out_.signals_forwarded;
      ++signals_sent_;
      if (info->si_signo == SIGCONT) last_cont_sent_ = signals_sent_;
    }
  }

  std::optional<siginfo_t> take_signal() {
    auto& d = *deputy_;
    if (pending_stop()) {
      uint64_t mask = d.signal_mask();
      d.set_signal_mask(0);
      d.resume_as(ptrace::Resume::cont, 0);
      ptrace::Stop st = d.wait_stop();
      std::optional<siginfo_t> info;
      if (st.kind == ptrace::StopKind::signal_delivery) info = d.siginfo();
      d.reinterrupt();
      d.set_signal_mask(mask);
      return info;
    }
    // Scratch for the call: set (8), timeout (16), siginfo (128).
    struct Block {
      uint64_t set;
      timespec timeout;
      siginfo_t info;
    } blk{~uint64_t{0}, {0, 0}, {}};
    RemotePtr<void> at(scratch_);
    d.write_mem(at, std::as_bytes(std::span(&blk, 1)));
    long rc;
    {
      RemoteSyscalls rs(d, ptrace::SyscallSite::vdso);
      rc = rs.syscall(SYS_rt_sigtimedwait, scratch_, scratch_ + offsetof(Block, info), scratch_ + offsetof(Block, timeout), 8);
    }
    if (rc <= 0) return std::nullopt;
    d.read_mem(at, std::as_writable_bytes(std::span(&blk, 1)));
    return blk.info;
  }

  // The body stopped with `sig`: the deputy enters a group stop with it, so
  // its parent (the shell) sees the job stop. Its disposition is made
  // SIG_DFL first (the original's handler is unmapped; dispositions live in
  // the body), the signal is queued and let through alone, and delivered
  // from its signal-delivery-stop. The deputy then sits in a group-stop
  // trap; the SIGCONT that ends it is forwarded like any signal.
  void stop_deputy(int sig) {
    auto& d = *deputy_;
    if (sig != SIGSTOP) {
      d.write_mem(RemotePtr<void>(scratch_), std::as_bytes(std::span(&kDefault, 1)));
      RemoteSyscalls rs(d, ptrace::SyscallSite::vdso);
      rs.syscall(SYS_rt_sigaction, sig, scratch_, 0, 8);
    }
    ::syscall(SYS_tgkill, pid_, pid_, sig);
    uint64_t mask = d.signal_mask();
    d.set_signal_mask(~(uint64_t{1} << (sig - 1)));
    d.resume_as(ptrace::Resume::cont, 0);
    ptrace::Stop s = d.wait_stop();
    if (s.kind == ptrace::StopKind::signal_delivery && d.siginfo().si_signo == sig) {
      d.resume_as(ptrace::Resume::cont, sig);
      s = d.wait_stop();
    }
    d.set_signal_mask(mask);
    if (s.kind != ptrace::StopKind::group) {
      // Not stopped as asked (a SIGCONT came first): hold it still anyway.
      if (s.kind != ptrace::StopKind::interrupt) d.reinterrupt();
      log_.push_back(fmt::format("deputy {}: stop {} instead of a group stop for signal {}", pid_,
                                 static_cast<int>(s.kind), sig));
    }
  }
  static constexpr KernelSigaction kDefault{};

  bool pending_stop() {
    uint64_t bit = uint64_t{1} << (SIGSTOP - 1);
    for (uint32_t flags : {0u, static_cast<uint32_t>(PTRACE_PEEKSIGINFO_SHARED)}) {
      siginfo_t si[64];
      __ptrace_peeksiginfo_args a{0, flags, 64};
      long n = ::ptrace(PTRACE_PEEKSIGINFO, pid_, &a, si);
      for (long i = 0; i < n; ++i)
        if (uint64_t{1} << (si[i].si_signo - 1) == bit) return true;
    }
    return false;
  }

  bool deputy_has_pending() {
    for (uint32_t flags : {0u, static_cast<uint32_t>(PTRACE_PEEKSIGINFO_SHARED)}) {
      __ptrace_peeksiginfo_args a{0, flags, 1};
      siginfo_t si{};
      if (::ptrace(PTRACE_PEEKSIGINFO, pid_, &a, &si) > 0) return true;
    }
    return false;
  }

  // ---- ends ----

  void deputy_gone() {
    if (ended_) return;
    ended_ = true;
    int status = -1;
    if (deputy_->death_status()) {
      status = *deputy_->death_status();
    } else {
      try {
        deputy_->signal_mask();  // ESRCH: collects the death
      } catch (const ptrace::TraceeDied& e) {
        status = e.wait_status();
      } catch (const std::exception&) {
      }
    }
    out_.end = HomeOutcome::End::deputy_died;
    out_.deputy_status = status;
    out_.message = fmt::format("deputy {} was killed (status {:#x}); its body is stopped", pid_, status);
    ch_ = Channel{};  // the body's agent sees the link close and kills the body
  }

  void link_lost(const std::string& why) {
    if (ended_) return;
    ended_ = true;
    out_.end = HomeOutcome::End::link_lost;
    out_.message = fmt::format("process {} lost its body: {}; the deputy is killed", pid_, why);
    ch_ = Channel{};
    try {
      out_.deputy_status = image::kill_frozen(*frozen_);
    } catch (const std::exception& e) {
      ::kill(pid_, SIGKILL);
      out_.log.push_back(fmt::format("killing the deputy: {}", e.what()));
    }
  }

  void fail(const std::string& why) {
    if (ended_) return;
    log_.push_back(fmt::format("fatal: {}", why));
    link_lost(why);
    out_.end = HomeOutcome::End::failed;
  }

  // The deputy ends as the body did: exit_group(code), or the same signal
  // with its default action, from the vDSO's syscall instruction.
  void body_ended(int status) {
    auto& deputy = *deputy_;
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
        RemoteSyscalls rs(deputy, ptrace::SyscallSite::vdso);
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
    r.orig_rax = ~uint64_t{0};
    r.rip = insn->addr();
    deputy.set_regs(r);
    deputy.detach();
    ended_ = true;
    out_.end = HomeOutcome::End::exited;
    out_.deputy_status = status;
    out_.message = WIFEXITED(status) ? fmt::format("process {} exited with {} away from home", pid_, WEXITSTATUS(status))
                                     : fmt::format("process {} was killed by signal {} away from home", pid_,
                                                   WIFSIGNALED(status) ? WTERMSIG(status) : -1);
  }

  // The header of the body's image (or plan), made the program's.
  image::ProcessImage body_header(ImageReceiver& rx, const char* what) {
    image::ProcessImage img;
    try {
      img = rx.header();
    } catch (const wire::DecodeError& e) {
      throw LinkLost{fmt::format("bad {}: {}", what, e.what())};
    }
    as_program(img);
    return img;
  }

  // Once the body's node was told HomeDone: the signals queued at the body
  // when it froze, then those relayed to it since (its BodyGone).
  std::vector<std::array<std::byte, 128>> signals_left(const msg::GoingHome& gh) {
    std::vector<std::array<std::byte, 128>> left = gh.pending_signals;
    for (;;) {
      auto body = ch_.recv(o_.link_timeout);
      if (msg::peek_type(body) == msg::Type::keepalive) continue;
      auto gone = msg::decode<msg::BodyGone>(body);
      left.insert(left.end(), gone.signals.begin(), gone.signals.end());
      return left;
    }
  }

  void receive_home(const msg::GoingHome& gh) {
    auto t0 = Clock::now();
    ImageReceiver rx(ch_, o_.link_timeout);
    image::ProcessImage img = body_header(rx, "image of the body coming home");
    mirror_.clear();
    mirrored_ = 0;
    std::optional<std::string> failed;
    try {
      restore::PageSource pages = rx.pages();
      if (o_.fault && o_.fault("home-restore")) {
        pages = [inner = std::move(pages), runs = 0]() mutable {
          if (++runs > 1) throw restore::RestoreError("fault injected after the first run of pages (agents/PID.fault)");
          return inner();
        };
      }
      if (prepared_) restore::restore_into(*deputy_, img, pages, *prepared_);
      else restore::restore_into(*deputy_, img, pages, sent_whole_);
    } catch (const ptrace::TraceeDied&) {
      throw;
    } catch (const ChannelError&) {
      throw;
    } catch (const wire::DecodeError& e) {
      throw LinkLost{fmt::format("bad image of the body coming home: {}", e.what())};
    } catch (const std::exception& e) {
      failed = e.what();
    }
    prepared_.reset();
    if (failed) return home_failed(*failed, rx, img);
    own_cpus_again();
    out_.home_restore = us(Clock::now() - t0);
    if (auto here = usage_of(pid_)) out_.away_usage = beyond(gh.used, *here);
    send(msg::HomeDone{true, {}});
    // Signals queued at the body, then those forwarded while it travelled,
    // are queued here again before the process runs.
    std::vector<std::array<std::byte, 128>> again = signals_left(gh);
    for (const auto& raw : again) {
      siginfo_t info;
      std::memcpy(&info, raw.data(), sizeof info);
      if (info.si_code >= 0 || info.si_code == SI_TKILL) info.si_code = SI_QUEUE;
      ::syscall(SYS_rt_tgsigqueueinfo, pid_, pid_, info.si_signo, &info);
    }
    cache_.clear();
    deputy_->detach();
    deputy_ = nullptr;
    frozen_.reset();
    pidfd_.reset();
    ch_ = Channel{};
    ended_ = true;
    out_.end = HomeOutcome::End::home;
    out_.message = gh.reason;
  }

  // The restore at home failed part way (no memory here, a file that
  // changed since the plan, ...): the deputy holds some of the body's
  // regions and state. It is released again and the body, still frozen at
  // its node, runs on there; the process stays where it was. Only when the
  // deputy cannot be released again does the process end.
  void home_failed(const std::string& why, ImageReceiver& rx, const image::ProcessImage& img) {
    rx.drain();  // the rest of the pages: the link must be at a message boundary again
    try {
      release_again(img);
    } catch (const ptrace::TraceeDied&) {
      throw;
    } catch (const std::exception& e) {
      send(msg::HomeDone{false, why});
      throw LinkLost{fmt::format("restoring the body at home failed ({}), and so did releasing the deputy again: {}",
                                 why, e.what())};
    }
    send(msg::HomeDone{false, why});
    come_home_sent_ = false;
    sent_whole_.clear();
    own_cpus_again();
    log_.push_back(fmt::format("coming home failed, the body runs on at its node: {}", why));
    if (o_.on_home_failed) o_.on_home_failed(fmt::format("coming home failed: {}", why));
  }

  // What release_memory() leaves, from a deputy in any state a failed
  // restore leaves: the body's rseq unregistered, its timers disarmed and
  // deleted, every region but the kernel's (vDSO, vvar) unmapped, a fresh
  // scratch page, every signal blocked.
  void release_again(const image::ProcessImage& img) {
    Regs r = deputy_->regs();
    r.rsp = 0;  // injections take no scratch from a stack that may be gone
    deputy_->set_regs(r);
    {
      RemoteSyscalls rs(*deputy_, ptrace::SyscallSite::vdso);
      if (img.rseq) rs.syscall(SYS_rseq, img.rseq->addr, img.rseq->len, 1, img.rseq->signature);  // if registered
      long page = rs.syscall(SYS_mmap, 0, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (page < 0 && page > -4096) throw SysError("mmap of the deputy's scratch page", static_cast<int>(-page));
      scratch_ = static_cast<uint64_t>(page);
      itimerval zero{};
      deputy_->write_mem(RemotePtr<void>(scratch_), std::as_bytes(std::span(&zero, 1)));
      for (int which = 0; which < 3; ++which) rs.syscall(SYS_setitimer, which, scratch_, 0);
      for (const auto& t : img.posix_timers) rs.syscall(SYS_timer_delete, t.id);
      rs.syscall(SYS_munlockall);  // the restore may have set mlockall(MCL_FUTURE)
      for (const image::Vma& v : image::read_maps(pid_)) {
        if (v.kernel_provided() || v.start == scratch_) continue;
        long rc = rs.syscall(SYS_munmap, v.start, v.end - v.start);
        if (rc != 0) throw SysError(fmt::format("munmap of {:#x}-{:#x} in the deputy", v.start, v.end), static_cast<int>(-rc));
      }
    }
    deputy_->set_signal_mask(~uint64_t{0});
  }

  // ---- moving on (move_on) ----

  // Whether the body comes for the move on: its reason is the one asked.
  // Coming home for anything else (a call that needs home) drops the move
  // on; the process then comes home, and whoever asked sends it on from
  // here (roam-agent).
  bool relaying(const std::string& reason) {
    if (!next_) return !called_off_.empty() && reason == called_off_;
    if (reason == next_reason_) return true;
    log_.push_back(fmt::format("moving on to node {} dropped: the body comes home ({})", next_node_, reason));
    next_.reset();
    return false;
  }

  // A body's image as the program's: its misc is roam's (no_new_privs) but
  // for mlockall(), its seccomp filters and exe the deputy's, its pid home's.
  void as_program(image::ProcessImage& img) {
    uint32_t future = img.misc.mlockall_future;
    img.misc = original_misc_;
    // A body denied mlockall(MCL_FUTURE) (it runs unprivileged) gets it back.
    // Had it called munlockall() itself, that is lost: the call is local.
    if (future == 0 && image::future_locking_needs_privilege(frozen_->image)) future = original_misc_.mlockall_future;
    img.misc.mlockall_future = future;
    img.seccomp_filters = frozen_->image.seccomp_filters;
    img.exe = frozen_->image.exe;
    img.pid = pid_;
  }

  // The body's plan goes on to the next node, which prepares a stub; its
  // answer goes back as HomePrepared (the files it has other versions of
  // travel whole). A refusal calls the move off (HomePrepared::call_off):
  // the body does not freeze and runs on where it is.
  void relay_plan() {
    ImageReceiver rx(ch_, o_.link_timeout);
    image::ProcessImage plan = body_header(rx, "plan of the body moving on");
    try {
      rx.drain();
    } catch (const wire::DecodeError& e) {
      throw LinkLost{fmt::format("bad plan of the body moving on: {}", e.what())};
    }
    // Injected: the plan is held here a while, so that a call which needs
    // home meets a move still in the air (tests: the call-off re-issues it).
    if (o_.fault && o_.fault("move-on-slow")) std::this_thread::sleep_for(std::chrono::seconds(3));
    auto t0 = Clock::now();
    msg::HomePrepared done;
    std::optional<std::string> refused;
    try {
      next_->send_msg(offer_for(plan));
      send_image(*next_, plan);
      auto reply = next_->recv(msg::prepare_wait(o_.link_timeout));
      if (msg::peek_type(reply) == msg::Type::mig_refused)
        throw UserError(msg::decode<msg::MigRefused>(reply).reason);
      auto prep = msg::decode<msg::MigPrepared>(reply);
      if (!frozen_->image.seccomp_filters.empty() && (prep.flags & msg::kPreparedInstallsFilters) == 0)
        throw UserError("the process runs under a seccomp filter, which the target's older roam cannot carry");
      done.ok = true;
      done.populated_bytes = prep.populated_bytes;
      done.mismatched = prep.mismatched;
      next_prepared_ = Clock::now() - t0;
      next_populated_ = prep.populated_bytes;
    } catch (const UserError& e) {
      refused = e.what();
    } catch (const ChannelError& e) {
      refused = fmt::format("node {}: {}", next_node_, e.what());
    } catch (const wire::DecodeError& e) {
      refused = fmt::format("node {} garbled its answer: {}", next_node_, e.what());
    }
    done.prepare_us = static_cast<uint64_t>(us(Clock::now() - t0).count());
    if (!refused) return send(done);
    // Called off: the body does not freeze and runs on where it is. A body
    // agent too old to know freezes anyway; its image is turned away
    // (relay_body).
    const std::string& why = *refused;
    done.error = why;
    done.call_off = true;
    send(done);
    called_off_ = next_reason_;
    next_.reset();
    come_home_sent_ = false;
    log_.push_back(fmt::format("moving on to node {} called off, the body runs on at its node: {}", next_node_, why));
    if (o_.on_home_failed) o_.on_home_failed(fmt::format("moving on to node {} failed: {}", next_node_, why));
  }

  // A page source whose failures are the old node's link's.
  struct OldLinkError {
    std::string why;
  };

  // The frozen body's image passes through to the next node as it comes.
  // Once the next node has restored it, the old node is told (HomeDone) and
  // ends its copy; its queued signals, and those relayed to it meanwhile,
  // go on to the new body, which then runs (MigGo), and the link to it
  // becomes the body's link. If the next node refused or fails, the old
  // node is told to run the body on (HomeDone false): the process stays
  // where it was.
  void relay_body(const msg::GoingHome& gh) {
    auto t0 = Clock::now();
    ImageReceiver rx(ch_, o_.link_timeout);
    image::ProcessImage img = body_header(rx, "image of the body moving on");
    if (!next_) {
      // Called off, and the body froze all the same (an older body agent).
      rx.drain();
      send(msg::HomeDone{false, "the move was called off"});
      called_off_.clear();
      return;
    }
    std::optional<std::string> failed;
    uint64_t relayed = 0;
    uint64_t restore_us = 0;
    {
      bool fault = o_.fault && o_.fault("move-on");
      restore::PageSource from_old = [&, inner = rx.pages(), runs = 0]() mutable {
        if (fault && ++runs > 1)  // as if the next node's link broke
          throw ChannelError("fault injected after the first run relayed (agents/PID.fault)");
        try {
          return inner();
        } catch (const ChannelError& e) {
          throw OldLinkError{e.what()};
        } catch (const wire::DecodeError& e) {
          throw OldLinkError{fmt::format("garbled image: {}", e.what())};
        }
      };
      try {
        relayed = relay_image(*next_, img, from_old);
        auto reply = next_->recv(msg::prepare_wait(o_.link_timeout));
        if (msg::peek_type(reply) == msg::Type::mig_refused)
          failed = fmt::format("node {} refused it: {}", next_node_, msg::decode<msg::MigRefused>(reply).reason);
        else
          restore_us = msg::decode<msg::MigReady>(reply).restore_us;
      } catch (const OldLinkError& e) {
        throw LinkLost{fmt::format("the body's node failed while it moved on: {}", e.why)};
      } catch (const ChannelError& e) {
        failed = fmt::format("node {}: {}", next_node_, e.what());
      } catch (const wire::DecodeError& e) {
        failed = fmt::format("node {} garbled its answer: {}", next_node_, e.what());
      }
    }
    if (failed) {
      rx.drain();
      next_.reset();  // the next node's agent sees the link close and kills its stub
      send(msg::HomeDone{false, *failed});
      come_home_sent_ = false;
      log_.push_back(fmt::format("moving on to node {} failed, the body runs on at its node: {}", next_node_, *failed));
      if (o_.on_home_failed) o_.on_home_failed(fmt::format("moving on to node {} failed: {}", next_node_, *failed));
      return;
    }
    send(msg::HomeDone{true, {}, next_node_});
    std::vector<std::array<std::byte, 128>> again = signals_left(gh);
    msg::MigGo go;
    go.before = gh.used;  // all it used so far, at home and away
    next_->send_msg(go);
    ch_ = std::move(*next_);
    next_.reset();
    pending_.clear();
    signals_sent_ = last_cont_sent_ = 0;
    last_sent_ = Clock::now();
    come_home_sent_ = false;
    for (const auto& raw : again) send(msg::FwdSignal{raw});
    MoveStats st;
    st.prepare = us(next_prepared_);
    st.populated_bytes = next_populated_;
    st.freeze = us(Clock::now() - t0);
    st.image_bytes = relayed;
    st.restore_us = restore_us;
    st.deputy_rss_kib = rss_kib(pid_);
    log_.push_back(fmt::format("moved on to node {} through here: {:.1f} MiB relayed, {:.1f} ms from the image's "
                               "first byte until it ran there",
                               next_node_, relayed / 1048576.0, st.freeze.count() / 1000.0));
    if (o_.on_moved_on) o_.on_moved_on(next_node_, st);
  }

  pid_t pid_;
  HomeOptions o_;
  std::optional<image::Frozen> frozen_;
  image::MiscState original_misc_;
  Identity id_;
  FileDesc pidfd_;
  Channel ch_;
  ptrace::Tracee* deputy_ = nullptr;
  std::unordered_map<int, FileDesc> cache_;  // deputy fd number -> our copy
  image::IdentityCache identities_;  // of files mapped away (describe_mapped_file)
  std::vector<uint64_t> sent_whole_;  // coming home: regions whose file changed here (HomePrepared)
  std::map<uint64_t, uint64_t> mirror_;      // mirrored page ranges in the deputy
  uint64_t mirrored_ = 0;
  uint64_t scratch_ = 0;  // a page of the deputy's for injected calls' arguments
  std::optional<restore::Prepared> prepared_;  // the deputy laid out for the body's coming home
  uint64_t calls_served_ = 0;
  Clock::time_point last_tick_{};
  Clock::time_point sched_at_{};
  uint64_t sched_ns_ = 0;
  double body_demand_ = -1;  // see note_body_sched
  int deputy_cpu_ = -1;   // the CPU the deputy is pinned to (follow_agent_cpu)
  cpu_set_t own_affinity_{};  // the process's own, put back when it comes home
  std::deque<std::vector<std::byte>> pending_;
  std::optional<Channel> next_;  // moving on: the link to the next node
  uint32_t next_node_ = 0;
  std::string next_reason_;
  std::string called_off_;  // the reason of a move on called off (HomePrepared::call_off)
  Clock::duration next_prepared_{};
  uint64_t next_populated_ = 0;
  std::optional<ptrace::StopWakeups> stops_;  // while serving: the deputy stopped
  int extra_fd_ = -1;
  std::function<void()> on_extra_;
  bool ended_ = false;
  bool come_home_sent_ = false;
  uint64_t signals_sent_ = 0;    // FwdSignals on this link
  uint64_t last_cont_sent_ = 0;  // signals_sent_ when the last SIGCONT went
  Clock::time_point last_sent_{};
  Clock::time_point next_signal_check_{};
  HomeOutcome out_;
  std::vector<std::string> log_;
};

HomeAgent::HomeAgent(pid_t pid, HomeOptions options) : impl_(std::make_unique<Impl>(pid, options)), pid_(pid) {}
HomeAgent::~HomeAgent() = default;
MoveStats HomeAgent::move_out(Channel ch) { return impl_->move_out(std::move(ch)); }
HomeOutcome HomeAgent::serve(int extra_fd, const std::function<void()>& on_extra) {
  return impl_->serve(extra_fd, on_extra);
}
void HomeAgent::come_home(const std::string& reason) { impl_->come_home(reason); }
bool HomeAgent::move_on(uint32_t node, Channel ch, const std::string& reason) {
  return impl_->move_on(node, std::move(ch), reason);
}

}  // namespace roam::mig
