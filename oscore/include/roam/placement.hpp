// Where a roam job may run and why a process is where it is (MOSIX's
// placement habits: mosrun -r/-h/-b/-L/-l/-t/-m, migrate PID best).
//
// Pure logic, no I/O: mosd keeps a Placement per job (home-node/placements.hpp),
// builds a NodeView per node from its gossip table and the cluster map, and
// asks unfit()/choose_best() before any move, whoever asked for it (the user,
// mosrun at start, or a policy). The automatic policies read the same state.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "roam/wire.hpp"

namespace roam::placement {

// Who may move a job's processes.
enum class Mobility : uint8_t {
  may_move = 0,     // -l (default): the user and the policies
  manual_only = 1,  // -L: only `migrate`; the policies leave it where it is
  stay_home = 2,    // -h: never moves; `migrate` refuses
};

// What a job asked for when it was started. Children inherit it (they are
// in the job's cgroup).
struct Placement {
  Mobility mobility = Mobility::may_move;
  std::string tag;      // non-empty: only nodes with this tag (-t)
  uint64_t mem_mb = 0;  // memory the job needs (-m); 0: none stated
  uint32_t start_node = 0;  // -r NODE; 0: none
  bool start_best = false;  // -b

  bool policy_may_move() const { return mobility == Mobility::may_move; }
  bool user_may_move() const { return mobility != Mobility::stay_home; }
  // "-h", "-L -t gpu -m 512"...: how mosrun was asked, for messages.
  std::string flags() const;
};

void encode(wire::Writer& w, const Placement& p);
Placement decode(wire::Reader& r);

// Why a process is where it is. `policy` carries the policy's name
// ("policy:load", "policy:memory"...), filled by the policy engine.
enum class Why : uint8_t { home = 0, user = 1, pinned = 2, tag = 3, best = 4, policy = 5 };

struct Reason {
  Why why = Why::home;
  std::string detail;  // tag: the tag; policy: the policy's name
  // The word mosps shows: home, user, pinned, tag:gpu, best, policy:load.
  std::string text() const;
};

// One node as the placement sees it: the map's static facts and the
// freshest gossip.
struct NodeView {
  uint32_t node = 0;
  bool self = false;         // the node asking (a job's home)
  bool up = false;           // fresh information (self: always)
  bool takes_guests = true;  // false: `mosctl stay` there
  uint32_t load = 0;         // 100 = one runnable process per reference CPU
  uint16_t ncpus = 1;
  uint32_t speed = 10000;
  uint64_t free_mem = 0;     // bytes
  uint64_t total_mem = 0;    // bytes (0: not known yet)
  uint64_t age_ms = 0;       // how old the information is (self: 0)
  std::vector<std::string> tags;
};

// Why the job's process, now on node `current`, cannot run on `n` ("" when
// it can). The home node (self) never refuses for being stayed or down; the
// node the process is on already holds its memory, so -m is not checked there.
std::string unfit(const Placement& p, const NodeView& n, uint32_t current);

// The load `n` would show with one more process of reference speed on it.
uint32_t load_with_one_more(const NodeView& n);

// The best node for a job's process now running on `current` (its home is
// the view marked self): the fit node with the least load once the process
// is counted there (it already is on `current`), ties to `current`, then
// home, then the lowest number. Home is chosen when nothing else fits.
// nullopt when not even home fits; *why_none then says why.
std::optional<uint32_t> choose_best(const Placement& p, std::span<const NodeView> nodes, uint32_t current,
                                    std::string* why_none = nullptr);

}  // namespace roam::placement
