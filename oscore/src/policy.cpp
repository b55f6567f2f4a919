#include "roam/policy.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace roam::policy {

using placement::NodeView;

namespace {

constexpr double kCpuBound = 0.5;  // running or runnable at least half the time: it loads its node

const NodeView* find(std::span<const NodeView> nodes, uint32_t node) {
  for (const NodeView& n : nodes)
    if (n.node == node) return &n;
  return nullptr;
}

uint32_t home_of(std::span<const NodeView> nodes) {
  for (const NodeView& n : nodes)
    if (n.self) return n.node;
  return 0;
}

}  // namespace

double share_of(const NodeView& n) {
  return 100.0 * 10000.0 / (std::max<double>(1, n.speed) * std::max<double>(1, n.ncpus));
}

double Engine::move_seconds(uint64_t rss, double bytes_per_s) const {
  return s_.move_cost_ms / 1000.0 + static_cast<double>(rss) / std::max(1e6, bytes_per_s);
}

uint64_t Engine::usher_threshold(uint64_t total) const {
  if (s_.usher_free_bytes > 0) return s_.usher_free_bytes;
  return std::max<uint64_t>(uint64_t{64} << 20, total / 20);
}

// How much of a move of ours a node's figure measured at `info_ms` does not
// show yet: all of it before the move ended, then less and less as the
// node's smoothing (an exponential average) takes it in.
double Engine::unseen(const Recent& r, int64_t info_ms) const {
  double t = static_cast<double>(info_ms - r.done_ms);
  if (t <= 0) return 1;
  double tau = std::max(1.0, s_.settle_ms / 3.0);
  double f = std::exp(-t / tau);
  return f < 0.02 ? 0 : f;
}

double Engine::expected_load(const NodeView& n, int64_t now_ms, bool before_step) const {
  double load = n.load;
  int64_t info_ms = now_ms - static_cast<int64_t>(n.age_ms);  // when the node measured it
  for (const Recent& r : recent_) {
    if (before_step && r.at_ms == now_ms) continue;
    double f = unseen(r, info_ms);
    if (r.to == n.node) load += f * r.to_share;
    if (r.from == n.node) load -= f * r.from_share;
  }
  return std::max(0.0, load);
}

uint64_t Engine::expected_free(const NodeView& n, int64_t now_ms) const {
  double free = static_cast<double>(n.free_mem);
  int64_t info_ms = now_ms - static_cast<int64_t>(n.age_ms);
  for (const Recent& r : recent_) {
    // Free memory is not smoothed: a figure from after the move shows it.
    if (info_ms >= r.done_ms) continue;
    if (r.to == n.node) free -= static_cast<double>(r.bytes);
    if (r.from == n.node) free += static_cast<double>(r.bytes);
  }
  return static_cast<uint64_t>(std::max(0.0, free));
}

bool Engine::resting(const Proc& p, int64_t now_ms) const {
  return p.moving || (p.last_move_ms >= 0 && now_ms - p.last_move_ms < s_.cooldown_ms);
}

uint32_t Engine::sent_now(uint32_t node, int64_t now_ms) const {
  uint32_t n = 0;
  for (const Recent& r : recent_)
    if (r.at_ms == now_ms && r.to == node) ++n;
  return n;
}

double Engine::load_of(const NodeView& n, std::span<const Proc> procs, int64_t now_ms, bool before_step) const {
  double load = expected_load(n, now_ms, before_step);
  if (!n.self) return load;
  double demand = 0;
  for (const Proc& p : procs) {
    if (p.node != n.node) continue;
    // A move under way takes it off; this step's own decisions (moving,
    // last moved now) count only for the loads as the step began.
    if (p.moving && !(before_step && p.last_move_ms == now_ms)) continue;
    demand += std::min(1.0, p.cpu_demand);
  }
  return std::max(load, demand * share_of(n));
}

uint32_t Engine::step_quota(const NodeView& t, std::span<const NodeView> nodes, std::span<const Proc> procs,
                            int64_t now_ms) const {
  // From the loads as they stood when the step began, so the quota does not
  // shrink under this step's own moves.
  double sum = 0;
  std::vector<double> loads;
  for (const NodeView& n : nodes) {
    if (!n.up) continue;
    loads.push_back(load_of(n, procs, now_ms, true));
    sum += loads.back();
  }
  if (loads.empty()) return 1;
  double avg = sum / static_cast<double>(loads.size());
  double share = share_of(t);
  uint32_t senders = 0;
  for (double l : loads)
    if (l > avg + share / 2) ++senders;
  double room = (avg - load_of(t, procs, now_ms, true)) / share;
  if (senders == 0 || room <= 1) return 1;
  return static_cast<uint32_t>(std::ceil(room / senders));
}

void Engine::moved(const Decision& d, int64_t now_ms, double move_s) {
  recent_.push_back({now_ms, now_ms + static_cast<int64_t>(move_s * 1000), d.from, d.to, d.from_share, d.to_share,
                     d.bytes});
}

std::optional<Decision> Engine::step(std::span<const Proc> procs, std::span<const NodeView> nodes, int64_t now_ms,
                                     double bytes_per_s, std::mt19937_64& rng) {
  // Older than any gossip still believed (a minute): forgotten.
  while (!recent_.empty() && now_ms - recent_.front().done_ms > 60000) recent_.pop_front();
  std::optional<Decision> d = io_homing(procs, nodes, now_ms);
  if (!d && s_.usher) d = ushering(procs, nodes, now_ms);
  if (!d && s_.balance) d = balancing(procs, nodes, now_ms, bytes_per_s, rng);
  if (d) {
    const NodeView* from = find(nodes, d->from);
    const NodeView* to = find(nodes, d->to);
    const Proc* p = nullptr;
    for (const Proc& q : procs)
      if (q.pid == d->pid) p = &q;
    // An idle process moved changes no load.
    bool loads = p && p->cpu_demand >= kCpuBound;
    d->from_share = from && loads ? share_of(*from) : 0;
    d->to_share = to && loads ? share_of(*to) : 0;
    d->bytes = p ? p->rss : 0;
  }
  return d;
}

std::optional<Decision> Engine::io_homing(std::span<const Proc> procs, std::span<const NodeView> nodes,
                                          int64_t now_ms) {
  if (s_.io_home_calls_per_s == 0) return std::nullopt;
  uint32_t home = home_of(nodes);
  for (const Proc& p : procs) {
    if (p.node == home || p.moving) continue;
    if (p.io_high_steps < s_.io_home_steps) continue;
    (void)now_ms;  // coming home for I/O ignores the rest period: the data is here
    return Decision{p.pid, p.node, home, "io",
                    fmt::format("{:.0f} calls/s forwarded home for {} steps (limit {}/s)", p.io_calls_per_s,
                                p.io_high_steps, s_.io_home_calls_per_s)};
  }
  return std::nullopt;
}

std::optional<Decision> Engine::ushering(std::span<const Proc> procs, std::span<const NodeView> nodes,
                                         int64_t now_ms) {
  // The biggest movable process on a node short of memory.
  const Proc* pick = nullptr;
  const NodeView* short_node = nullptr;
  for (const Proc& p : procs) {
    if (!p.placement.policy_may_move() || resting(p, now_ms)) continue;
    const NodeView* n = find(nodes, p.node);
    if (!n || !n->up || n->total_mem == 0) continue;
    if (expected_free(*n, now_ms) >= usher_threshold(n->total_mem)) continue;
    if (!pick || p.rss > pick->rss) {
      pick = &p;
      short_node = n;
    }
  }
  if (!pick) return std::nullopt;
  const NodeView* best = nullptr;
  for (const NodeView& t : nodes) {
    if (t.node == pick->node || t.total_mem == 0) continue;
    if (!placement::unfit(pick->placement, t, pick->node).empty()) continue;
    // Room for it, and the node stays above its own threshold.
    uint64_t room = expected_free(t, now_ms);
    if (room < pick->rss + usher_threshold(t.total_mem)) continue;
    if (!best || room > expected_free(*best, now_ms)) best = &t;
  }
  if (!best) return std::nullopt;
  return Decision{pick->pid, pick->node, best->node, "memory",
                  fmt::format("node {} has {} MiB free (threshold {} MiB); node {} has {} MiB for its {} MiB",
                              short_node->node, expected_free(*short_node, now_ms) >> 20,
                              usher_threshold(short_node->total_mem) >> 20, best->node,
                              expected_free(*best, now_ms) >> 20, pick->rss >> 20)};
}

std::optional<Decision> Engine::balancing(std::span<const Proc> procs, std::span<const NodeView> nodes, int64_t now_ms,
                                          double bytes_per_s, std::mt19937_64& rng) {
  struct Option {
    const Proc* proc;
    const NodeView* to;
    double gain;
    double from_load, to_load;
  };
  // Per node, once a step rather than per candidate: its load as this home
  // sees it, and whether it may take another process in this step (against
  // herding on information that may be stale, see the header).
  std::vector<double> load(nodes.size());
  std::vector<bool> takes(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) {
    load[i] = load_of(nodes[i], procs, now_ms);
    takes[i] = sent_now(nodes[i].node, now_ms) < step_quota(nodes[i], nodes, procs, now_ms);
  }
  auto index = [&](const NodeView& n) { return static_cast<size_t>(&n - nodes.data()); };
  std::vector<Option> options;
  for (const Proc& p : procs) {
    if (!p.placement.policy_may_move() || resting(p, now_ms)) continue;
    if (p.cpu_demand < kCpuBound) continue;
    // Forwarding its calls would cost more than the CPU it would find.
    if (s_.io_home_calls_per_s > 0 && p.io_calls_per_s * 2 >= s_.io_home_calls_per_s) continue;
    // Young processes tend to die young: not worth a move yet.
    if (p.age_s < move_seconds(p.rss, bytes_per_s)) continue;
    const NodeView* from = find(nodes, p.node);
    if (!from || !from->up) continue;
    double from_load = load[index(*from)];
    for (const NodeView& t : nodes) {
      if (t.node == p.node || !takes[index(t)]) continue;
      if (!placement::unfit(p.placement, t, p.node).empty()) continue;
      double to_load = load[index(t)] + share_of(t);
      double gain = from_load - to_load;
      // Worth most of a process at the target, whatever the margin: the
      // loads are smoothed samples, and a fraction of a process is noise
      // (tools polling a node, agents) that would move jobs back and forth.
      if (gain >= std::max<double>(s_.balance_margin, 0.75 * share_of(t)))
        options.push_back({&p, &t, gain, from_load, to_load});
    }
  }
  if (options.empty()) return std::nullopt;
  // The most loaded source first, then the cheapest process to move on it;
  // the target at random among those within a margin of the best gain, so
  // homes that see the same idle node do not all pick it.
  double top = 0;
  for (const Option& o : options) top = std::max(top, o.from_load);
  std::erase_if(options, [&](const Option& o) { return o.from_load < top; });
  uint64_t least = UINT64_MAX;
  for (const Option& o : options) least = std::min(least, o.proc->rss);
  const Proc* chosen = nullptr;
  for (const Option& o : options)
    if (o.proc->rss == least && (!chosen || o.proc->age_s > chosen->age_s)) chosen = o.proc;
  std::erase_if(options, [&](const Option& o) { return o.proc != chosen; });
  double best_gain = 0;
  for (const Option& o : options) best_gain = std::max(best_gain, o.gain);
  std::erase_if(options, [&](const Option& o) { return o.gain < best_gain - s_.balance_margin / 2.0; });
  const Option& o = options[std::uniform_int_distribution<size_t>(0, options.size() - 1)(rng)];
  return Decision{o.proc->pid, o.proc->node, o.to->node, "load",
                  fmt::format("load {:.0f} on node {} against {:.0f} on node {} with it (running {:.1f} s, a move "
                              "takes ~{:.2f} s)",
                              o.from_load, o.proc->node, o.to_load, o.to->node, o.proc->age_s,
                              move_seconds(o.proc->rss, bytes_per_s))};
}

}  // namespace roam::policy
