// The automatic policies of a home node (issue 4): load balancing, memory
// ushering and I/O homing. Each home decides for its own processes, wherever
// they run, from what it measured itself and from gossip, which may be
// stale. Pure logic: mosd gathers the facts (policy_step.cpp) and carries out
// what step() decides.
//
//   - I/O homing: a process away whose forwarded calls stay above
//     io_home_calls_per_s for io_home_steps steps comes home.
//   - Memory ushering: a process on a node whose free memory is below the
//     node's threshold goes, biggest first, to the fit node with the most
//     room that stays above the threshold once it holds the process.
//   - Load balancing: a CPU-bound process that has run at least as long as
//     its move would take (Harchol-Balter and Downey, 1997) goes from its
//     node to a fit node whose load, with it, is lower by at least
//     `balance_margin` (hysteresis). Against stale information and herding:
//     the node loads are corrected by the moves this home made lately
//     (until information newer than the move shows them), the target is drawn at random among the
//     nodes within a margin of the best, a process rests `cooldown_ms`
//     after a move. Several moves can be made in one step (up to
//     moves_per_step; each next decision sees the loads corrected by the
//     ones before it), but in one step a node takes from this home at most
//     its room below the cluster's average load (in processes) divided by
//     the number of nodes above that average (the likely senders), and at
//     least one: homes that all see the same idle node share its room
//     instead of each filling it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <optional>
#include <random>
#include <span>
#include <string>

#include "roam/placement.hpp"

namespace roam::policy {

struct Settings {
  bool balance = true;
  bool usher = true;
  uint32_t step_ms = 1000;
  uint32_t balance_margin = 50;      // load units: 100 = one process per reference CPU
  uint64_t usher_free_bytes = 0;     // 0: 5% of the node's memory, at least 64 MiB
  uint32_t cooldown_ms = 10000;      // a process rests this long after any move
  uint32_t move_cost_ms = 200;       // a move's fixed cost, besides its bytes
  uint32_t io_home_calls_per_s = 2000;  // 0: no I/O homing
  uint32_t io_home_steps = 3;
  uint32_t settle_ms = 2600;         // after a move, until a node's smoothed load shows it (~95%);
                                     // in the config 0 (the default): 3 time constants of load smoothing
  uint32_t moves_per_step = 4;       // at most this many moves started per step
};

// One process of this home, as measured now.
struct Proc {
  pid_t pid = 0;
  placement::Placement placement;
  uint32_t node = 0;           // where it runs
  double age_s = 0;            // since it started
  double cpu_demand = 0;       // share of the last step it ran or waited to run (away: 1)
  uint64_t rss = 0;            // bytes (away: what its move carried)
  double io_calls_per_s = 0;   // away: calls forwarded home per second; home: read/write calls
  uint32_t io_high_steps = 0;  // consecutive steps above the I/O threshold
  int64_t last_move_ms = -1;   // when it last moved (any reason), -1: never
  bool moving = false;         // a move is under way (decided in this step: moving, last_move_ms = now)
};

struct Decision {
  pid_t pid = 0;
  uint32_t from = 0;
  uint32_t to = 0;
  std::string policy;  // "load", "memory", "io"
  std::string why;     // one line for the log
  double from_share = 0, to_share = 0;  // the load units the move takes from `from`, adds to `to`
  uint64_t bytes = 0;                   // the memory it takes from `from` to `to`
};

class Engine {
 public:
  explicit Engine(Settings s) : s_(s) {}
  const Settings& settings() const { return s_; }

  // The next move to make now, if any (call again after moved() for
  // another in the same step). `nodes` are every node of the map as
  // this home knows them (its own entry marked self); `bytes_per_s` is the
  // rate earlier moves achieved.
  std::optional<Decision> step(std::span<const Proc> procs, std::span<const placement::NodeView> nodes,
                               int64_t now_ms, double bytes_per_s, std::mt19937_64& rng);
  // A move was started: a node's figures measured before its end are
  // corrected for all of it; after, the load's correction fades as the
  // node's smoothing takes the move in (time constant settle_ms / 3).
  void moved(const Decision& d, int64_t now_ms, double move_s = 0);

  // What a move of `rss` bytes costs, in seconds.
  double move_seconds(uint64_t rss, double bytes_per_s) const;
  // The free-memory threshold of a node with `total` bytes.
  uint64_t usher_threshold(uint64_t total) const;
  // The node's load and free memory as this home expects them: gossip
  // corrected by our recent moves.
  // `before_step`: without the moves decided at now_ms (this step's).
  double expected_load(const placement::NodeView& n, int64_t now_ms, bool before_step = false) const;
  uint64_t expected_free(const placement::NodeView& n, int64_t now_ms) const;

 private:
  std::optional<Decision> io_homing(std::span<const Proc> procs, std::span<const placement::NodeView> nodes,
                                    int64_t now_ms);
  std::optional<Decision> ushering(std::span<const Proc> procs, std::span<const placement::NodeView> nodes,
                                   int64_t now_ms);
  std::optional<Decision> balancing(std::span<const Proc> procs, std::span<const placement::NodeView> nodes,
                                    int64_t now_ms, double bytes_per_s, std::mt19937_64& rng);
  bool resting(const Proc& p, int64_t now_ms) const;
  // The load of `n` as this home sees it: expected_load, and for the home
  // itself at least what its own processes there demanded in the last
  // step (measured directly, so fresher than the node's smoothed figure:
  // 8 jobs started at once show as 800 at the first step, not ~550).
  double load_of(const placement::NodeView& n, std::span<const Proc> procs, int64_t now_ms,
                 bool before_step = false) const;
  // Processes this home sent to `node` in the step at `now_ms`.
  uint32_t sent_now(uint32_t node, int64_t now_ms) const;
  // How many processes `t` may take from this home in the step at now_ms.
  uint32_t step_quota(const placement::NodeView& t, std::span<const placement::NodeView> nodes,
                      std::span<const Proc> procs, int64_t now_ms) const;

  struct Recent;
  double unseen(const Recent& r, int64_t info_ms) const;
  struct Recent {
    int64_t at_ms;
    int64_t done_ms;  // when the move should have ended (estimated)
    uint32_t from, to;
    double from_share, to_share;  // load units moved
    uint64_t bytes;
  };
  Settings s_;
  std::deque<Recent> recent_;
};

// One process's share of a node's load (load units).
double share_of(const placement::NodeView& n);

}  // namespace roam::policy
