// mosd's side of the automatic policies (roam/policy.hpp): every
// policy.step_ms it measures this node's processes (here and away), asks the
// engine for one move and starts it the way `migrate` would, without
// waiting: a home agent started with --to, or a request written to the
// agent of a process already away.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <fstream>

#include "daemon.hpp"
#include "roam/control.hpp"
#include "roam/error.hpp"
#include "roam/image_migratable.hpp"
#include "roam/image_proc.hpp"
#include "roam/log.hpp"
#include "roam/usage.hpp"

namespace roam::mosd {
namespace {

constexpr int64_t kUnmovableMs = 60000;  // a process that cannot move is not asked again for this long

double now_s_boot() {
  std::ifstream in("/proc/uptime");
  double up = 0;
  in >> up;
  return up;
}

// Threads (field 20 of /proc/PID/stat) and starttime (22, clock ticks
// after boot).
bool stat_fields(pid_t pid, long& threads, uint64_t& start_ticks) {
  try {
    namespace proc = image::proc;
    std::vector<std::string> f = proc::stat_fields(proc::read_file(pid, "stat"));
    if (f.size() <= 22) return false;
    threads = static_cast<long>(proc::parse_u64(f[20], 10, "num_threads"));
    start_ticks = proc::parse_u64(f[22], 10, "starttime");
    return true;
  } catch (const std::exception&) {
    return false;  // gone, or not a stat line
  }
}

// read/write-family system calls made so far (/proc/PID/io).
uint64_t io_calls(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/io", pid));
  std::string key;
  uint64_t v = 0, n = 0;
  while (in >> key >> v)
    if (key == "syscr:" || key == "syscw:") n += v;
  return n;
}

}  // namespace

void Daemon::schedule_policy() {
  loop_.after(cfg_.settings.policy.step_ms, [this] {
    try {
      policy_step();
    } catch (const std::exception& e) {
      log_warn("policy step: {}", e.what());
    }
    schedule_policy();
  });
}

void Daemon::read_move_rate() {
  std::ifstream in(agent_dir() / "last_move");
  uint64_t bytes = 0, us = 0;
  if (!(in >> bytes >> us) || us == 0) return;
  if (bytes == last_move_seen_.first && us == last_move_seen_.second) return;
  last_move_seen_ = {bytes, us};
  // The engine adds policy.move_cost_ms to bytes / rate: the rate is what
  // the move took beyond that fixed cost (a small process's move is almost
  // all fixed cost).
  double fixed_s = cfg_.settings.policy.move_cost_ms / 1000.0, took_s = static_cast<double>(us) / 1e6;
  double rate = static_cast<double>(bytes) / std::max(took_s - fixed_s, took_s / 10);
  move_rate_ = move_rate_ <= 0 ? rate : move_rate_ + 0.3 * (rate - move_rate_);
}

void Daemon::policy_step() {
  if (!jobs_) return;
  const policy::Settings& ps = cfg_.settings.policy;
  int64_t now = now_ms();
  read_move_rate();
  double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  double boot_now = now_s_boot();
  std::vector<policy::Proc> procs;
  std::map<pid_t, Tracked> seen;
  for (const home::JobProcess& jp : jobs_->processes()) {
    Tracked t;
    if (auto it = tracked_.find(jp.pid); it != tracked_.end()) t = it->second;
    policy::Proc p;
    p.pid = jp.pid;
    p.placement = placements_.of_job(jp.job);
    bool agent = false;
    uint32_t node = current_node(jp.pid, &agent);
    // A move under way: its agent is up and the process is not yet where
    // it was sent (or a user's `migrate` is at work).
    p.moving = agent && node == self_;
    if (t.node != 0 && t.node != node) t.last_move_ms = now;  // moved (by anyone) since the last step
    t.node = node;
    p.node = node;
    p.last_move_ms = t.last_move_ms;
    if (node == self_) {
      long threads = 1;
      uint64_t start = 0;
      if (!stat_fields(jp.pid, threads, start)) continue;
      if (threads != 1 || (t.unmovable_until > now)) continue;  // only single-threaded processes move
      p.age_s = std::max(0.0, boot_now - static_cast<double>(start) / ticks);
      p.rss = jp.rss;
      uint64_t sched = run_wait_ns(jp.pid), calls = io_calls(jp.pid);
      if (t.at_ms > 0 && now > t.at_ms) {
        double dt = static_cast<double>(now - t.at_ms) / 1000.0;
        p.cpu_demand = static_cast<double>(sched - std::min(sched, t.sched_ns)) / 1e9 / dt;
        p.io_calls_per_s = static_cast<double>(calls - std::min(calls, t.calls)) / dt;
      }
      t.sched_ns = sched;
      t.calls = calls;
      t.io_high = 0;
    } else {
      // Away: its home agent counts its calls and hears from the body's
      // node how much it runs; until it has, it counts as CPU-bound.
      p.cpu_demand = 1;
      std::ifstream st(agent_dir() / fmt::format("{}.stats", jp.pid));
      uint64_t rate = 0, bytes = 0;
      int demand_permille = -1;
      if (st >> rate >> bytes) {
        p.rss = bytes;
        p.io_calls_per_s = static_cast<double>(rate);  // the agent's, over its last second
        if (st >> demand_permille && demand_permille >= 0) p.cpu_demand = demand_permille / 1000.0;
      }
      long threads = 1;
      uint64_t start = 0;
      if (stat_fields(jp.pid, threads, start)) p.age_s = std::max(0.0, boot_now - static_cast<double>(start) / ticks);
      bool high = ps.io_home_calls_per_s > 0 && p.io_calls_per_s >= ps.io_home_calls_per_s;
      t.io_high = high ? t.io_high + 1 : 0;
      p.io_high_steps = t.io_high;
    }
    t.at_ms = now;
    seen[jp.pid] = t;
    procs.push_back(std::move(p));
  }
  tracked_ = std::move(seen);
  if (procs.empty()) return;
  auto views = node_views();
  // Each decision after the first sees the loads corrected by the moves
  // before it (Engine::moved), so one step can even out a node at once.
  for (uint32_t i = 0; i < ps.moves_per_step; ++i) {
    auto d = engine_->step(procs, views, now, move_rate_ > 0 ? move_rate_ : kAssumedMoveRate, rng_);
    if (!d) return;
    for (policy::Proc& p : procs)
      if (p.pid == d->pid) {
        p.moving = true;  // decided on: not again this step
        p.last_move_ms = now;
      }
    if (!start_policy_move(*d, now)) continue;
  }
}

bool Daemon::start_policy_move(const policy::Decision& d, int64_t now) {
  Tracked& t = tracked_[d.pid];
  uint32_t to = d.to == self_ ? 0 : d.to;
  auto sock = agent_dir() / fmt::format("{}.sock", d.pid);
  try {
    if (d.from == self_) {
      if (auto can = image::migratable(d.pid); !can) {
        t.unmovable_until = now + kUnmovableMs;
        log_info("policy {}: process {} cannot move: {}", d.policy, d.pid, can.reason);
        return false;
      }
      std::filesystem::create_directories(agent_dir());
      ::unlink(sock.c_str());
      spawn_agent(AgentKind::home,
                  {"home", "--pid", std::to_string(d.pid), "--socket", sock.string(), "--to", std::to_string(to)}, -1);
    } else {
      // The process is away: its agent takes the request (and, going
      // elsewhere than home, moves it through home).
      FileDesc fd(check_sys(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), "socket"));
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      std::strncpy(addr.sun_path, sock.c_str(), sizeof addr.sun_path - 1);
      check_sys(::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), "connect " + sock.string());
      msg::MigrateRequest req;
      req.pid = d.pid;
      req.node = to;
      req.async = true;
      req.target = std::to_string(to == 0 ? self_ : to);
      for (const auto& body : {msg::encode(msg::CtlHello{}), msg::encode(req)}) {
        auto f = wire::frame(body);
        if (::send(fd.get(), f.data(), f.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(f.size()))
          throw SysError("writing to " + sock.string(), errno ? errno : EAGAIN);
      }
    }
  } catch (const std::exception& e) {
    t.unmovable_until = now + kUnmovableMs;
    log_warn("policy {}: could not move process {}: {}", d.policy, d.pid, e.what());
    return false;
  }
  if (to != 0) placements_.moving(d.pid, placement::Reason{placement::Why::policy, d.policy});
  uint64_t rss = 0;
  for (const home::JobProcess& jp : jobs_->processes())
    if (jp.pid == d.pid) rss = jp.rss;
  engine_->moved(d, now, engine_->move_seconds(rss, move_rate_ > 0 ? move_rate_ : kAssumedMoveRate));
  t.last_move_ms = now;
  ++policy_moves_[d.policy];
  log_info("policy {}: moving process {} from node {} to node {}: {}", d.policy, d.pid, d.from, d.to, d.why);
  return true;
}

std::string Daemon::policy_summary() const {
  const policy::Settings& ps = cfg_.settings.policy;
  std::string s = fmt::format("balance {}, usher {}", ps.balance ? "on" : "off", ps.usher ? "on" : "off");
  if (ps.usher)
    s += ps.usher_free_bytes ? fmt::format(" (< {} MiB free)", ps.usher_free_bytes >> 20) : " (< 5% free)";
  s += ps.io_home_calls_per_s ? fmt::format(", io-home >= {} calls/s", ps.io_home_calls_per_s) : ", io-home off";
  uint64_t total = 0;
  std::string by;
  for (const auto& [name, n] : policy_moves_) {
    total += n;
    by += fmt::format("{}{} {}", by.empty() ? "" : ", ", n, name);
  }
  s += fmt::format("; {} move{} made", total, total == 1 ? "" : "s");
  if (!by.empty()) s += " (" + by + ")";
  return s;
}

}  // namespace roam::mosd
