// The randomized-gossip bulletin board of infod (MOSIX; Amar, Barak et al.,
// "Randomized gossip algorithms for maintaining a distributed bulletin board
// with guaranteed age properties", CCPE 2009).
//
// Every node holds one entry per node. Each time step it sends its own entry
// plus a window of other entries to one node chosen at random; the receiver
// keeps whatever is fresher than what it has. Ages, not timestamps, travel:
// every node's monotonic clock has its own offset, so the receiver turns an
// age back into a stamp on its own clock (stamp = now - age).
//
// The same Table runs in mosd and, thousands of times over, in the simulator
// (bench/gossip_sim.cpp), so per-step work must not grow with n: the
// freshest-window rule keeps the top `window` entries in a small heap updated
// on merge instead of scanning the table, and the random rule samples from a
// list of the known entries.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include <fmt/format.h>

#include "roam/config.hpp"
#include "roam/error.hpp"

namespace roam::gossip {

struct Params {
  uint32_t window = 8;                            // entries sent besides the sender's own
  WindowRule window_rule = WindowRule::freshest;  // freshest known, or random known
  TargetRule target_rule = TargetRule::any;       // any other node, or another node that is up
  int64_t down_after_ms = 20000;                  // an entry older than this => node is down
};

template <typename Payload>
struct WindowEntry {
  uint32_t index;
  uint32_t age_ms;
  Payload payload;
};

// entries[0] is the sender's own entry, with age 0.
template <typename Payload>
struct Outgoing {
  uint32_t target;
  std::vector<WindowEntry<Payload>> entries;
};

// xoshiro256** seeded through splitmix64: fast, small state, and good enough
// statistically for picking targets and windows (nothing here is adversarial).
class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (auto& word : s_) word = splitmix64(seed);
  }

  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  // Uniform in [0, bound). Multiply-and-shift with rejection of the short
  // low range, so the result is exactly uniform, not just nearly.
  uint32_t below(uint32_t bound) {
    ROAM_ASSERT(bound > 0, "Rng::below(0)");
    uint64_t product = (next() >> 32) * bound;
    auto low = static_cast<uint32_t>(product);
    if (low < bound) {
      const uint32_t threshold = static_cast<uint32_t>(-bound) % bound;
      while (low < threshold) {
        product = (next() >> 32) * bound;
        low = static_cast<uint32_t>(product);
      }
    }
    return static_cast<uint32_t>(product >> 32);
  }

  static uint64_t splitmix64(uint64_t& state) {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

template <typename Payload>
class Table {
 public:
  // The own entry is known from the start (with a default Payload until the
  // first set_self), so a node always has something to send.
  Table(uint32_t self, uint32_t n, Params p, uint64_t seed)
      : self_(self), n_(n), params_(p), rng_(seed), slots_(n, Slot{kUnknown, Payload{}}) {
    ROAM_ASSERT(n > 0 && self < n, fmt::format("gossip table: self {} out of {} nodes", self, n));
    if (params_.window_rule == WindowRule::random) {
      known_others_.reserve(n - 1);
    } else {
      freshest_.reserve(std::min(params_.window, n - 1));
    }
  }

  uint32_t self() const { return self_; }
  uint32_t size() const { return n_; }

  void set_self(const Payload& p, int64_t now_ms) { slots_[self_] = {now_ms, p}; }

  // One gossip step. With n == 1 the target is self and the caller sends nothing.
  Outgoing<Payload> step(int64_t now_ms) {
    Outgoing<Payload> out;
    step_into(now_ms, out);
    return out;
  }

  void step_into(int64_t now_ms, Outgoing<Payload>& out) {
    out.target = pick_target(now_ms);
    out.entries.clear();
    out.entries.push_back({self_, 0, slots_[self_].payload});
    if (params_.window_rule == WindowRule::freshest) {
      // Heap order: the window is a set, its order carries nothing.
      for (const Ranked& r : freshest_) out.entries.push_back({r.index, wire_age(now_ms, r.stamp), r.payload});
    } else {
      append_random_window(now_ms, out.entries);
    }
  }

  // Merges a received window. Entries about self are skipped (we are the
  // authority on ourselves); entries with index >= n are ignored and counted.
  size_t receive(std::span<const WindowEntry<Payload>> entries, int64_t now_ms) {
    // The slots a window touches are scattered over a table far larger than
    // the cache (in the simulator, over all tables): touching them all first
    // lets the misses overlap instead of queueing one behind another.
    for (const auto& e : entries) {
      if (e.index < n_) prefetch(&slots_[e.index]);
    }
    size_t ignored = 0;
    for (const auto& e : entries) {
      if (e.index >= n_) {
        ++ignored;
        continue;
      }
      if (e.index == self_) continue;
      const int64_t stamp = now_ms - static_cast<int64_t>(e.age_ms);
      Slot& mine = slots_[e.index];
      if (stamp <= mine.stamp) continue;
      const int64_t old_stamp = mine.stamp;
      mine = {stamp, e.payload};
      if (params_.window_rule == WindowRule::freshest) {
        offer_to_freshest(e.index, old_stamp, mine);
      } else if (old_stamp == kUnknown) {
        known_others_.push_back(e.index);
      }
    }
    return ignored;
  }

  bool known(uint32_t i) const {
    ROAM_ASSERT(i < n_, fmt::format("gossip table of node {}: index {} out of {}", self_, i, n_));
    return i == self_ || slots_[i].stamp != kUnknown;
  }

  // The own entry is by definition current: its age is always 0.
  int64_t age_ms(uint32_t i, int64_t now_ms) const {
    ROAM_ASSERT(known(i), fmt::format("gossip table of node {}: age of unknown node {}", self_, i));
    return i == self_ ? 0 : now_ms - slots_[i].stamp;
  }

  bool up(uint32_t i, int64_t now_ms) const {
    if (i == self_) return true;
    return known(i) && now_ms - slots_[i].stamp <= params_.down_after_ms;
  }

  const Payload& payload(uint32_t i) const {
    ROAM_ASSERT(known(i), fmt::format("gossip table of node {}: payload of unknown node {}", self_, i));
    return slots_[i].payload;
  }

 private:
  static constexpr int64_t kUnknown = std::numeric_limits<int64_t>::min();
  // A bounded number of random draws before falling back to a scan: with half
  // the cluster down, 16 misses in a row happen once in 65536 steps.
  static constexpr int kAliveTries = 16;

  // Stamp and payload side by side: a merge touches one cache line, not two.
  struct Slot {
    int64_t stamp;
    Payload payload;
  };
  // The window keeps its own copy of each payload, so a step reads only this
  // small array and none of the table.
  struct Ranked {
    int64_t stamp;
    uint32_t index;
    Payload payload;
  };

  static void prefetch(const void* p) {
#if defined(__GNUC__)
    __builtin_prefetch(p);
#else
    (void)p;
#endif
  }

  static uint32_t wire_age(int64_t now_ms, int64_t stamp) {
    const int64_t age = now_ms - stamp;
    if (age <= 0) return 0;  // a caller's clock that stepped back must not produce a negative age
    return static_cast<uint32_t>(std::min<int64_t>(age, std::numeric_limits<uint32_t>::max()));
  }

  uint32_t any_other() {
    const uint32_t r = rng_.below(n_ - 1);
    return r >= self_ ? r + 1 : r;
  }

  uint32_t pick_target(int64_t now_ms) {
    if (n_ == 1) return self_;
    if (params_.target_rule == TargetRule::any) return any_other();
    // Uniform over the up set either way: each accepted draw is uniform over
    // it, and so is the scan, so the mixture of the two is too.
    for (int t = 0; t < kAliveTries; ++t) {
      const uint32_t candidate = any_other();
      if (up(candidate, now_ms)) return candidate;
    }
    uint32_t up_count = 0;
    for (uint32_t i = 0; i < n_; ++i) up_count += (i != self_ && up(i, now_ms));
    if (up_count == 0) return any_other();
    uint32_t pick = rng_.below(up_count);
    for (uint32_t i = 0; i < n_; ++i) {
      if (i == self_ || !up(i, now_ms)) continue;
      if (pick-- == 0) return i;
    }
    ROAM_ASSERT(false, fmt::format("gossip table of node {}: up set changed during a scan", self_));
    return self_;
  }

  // Keeps freshest_ a min-heap on stamp of the `window` known entries with
  // the largest stamps; its root is the stalest member. A stamp only grows,
  // and only when its entry is updated, so an entry outside the heap stays no
  // fresher than the root until its next update, which comes through here.
  // Most updates in a large cluster are of entries far older than the root,
  // and the old stamp tells that no search of the heap is needed for them.
  void offer_to_freshest(uint32_t index, int64_t old_stamp, const Slot& slot) {
    const int64_t stamp = slot.stamp;
    const size_t cap = params_.window;
    if (cap == 0) return;
    const bool full = freshest_.size() == cap;
    if (full && stamp <= freshest_[0].stamp) return;
    if (old_stamp != kUnknown && (!full || old_stamp >= freshest_[0].stamp)) {
      size_t pos = 0;
      while (pos < freshest_.size() && freshest_[pos].index != index) ++pos;
      if (pos < freshest_.size()) {
        freshest_[pos].stamp = stamp;
        freshest_[pos].payload = slot.payload;
        sift_down(pos);
        return;
      }
      ROAM_ASSERT(full, fmt::format("gossip table of node {}: known entry {} missing from a window that is not full",
                                    self_, index));
    }
    if (!full) {
      freshest_.push_back({stamp, index, slot.payload});
      sift_up(freshest_.size() - 1);
    } else {
      freshest_[0] = {stamp, index, slot.payload};
      sift_down(0);
    }
  }

  void sift_up(size_t pos) {
    while (pos > 0) {
      const size_t parent = (pos - 1) / 2;
      if (freshest_[parent].stamp <= freshest_[pos].stamp) break;
      std::swap(freshest_[parent], freshest_[pos]);
      pos = parent;
    }
  }

  void sift_down(size_t pos) {
    const size_t size = freshest_.size();
    for (;;) {
      size_t smallest = pos;
      const size_t left = 2 * pos + 1;
      const size_t right = left + 1;
      if (left < size && freshest_[left].stamp < freshest_[smallest].stamp) smallest = left;
      if (right < size && freshest_[right].stamp < freshest_[smallest].stamp) smallest = right;
      if (smallest == pos) return;
      std::swap(freshest_[smallest], freshest_[pos]);
      pos = smallest;
    }
  }

  // Partial Fisher-Yates over the known list: O(window), and the list is a
  // set, so leaving it shuffled costs nothing.
  void append_random_window(int64_t now_ms, std::vector<WindowEntry<Payload>>& entries) {
    const size_t m = known_others_.size();
    const size_t take = std::min<size_t>(params_.window, m);
    for (size_t k = 0; k < take; ++k) {
      const size_t pick = k + rng_.below(static_cast<uint32_t>(m - k));
      std::swap(known_others_[k], known_others_[pick]);
      const uint32_t i = known_others_[k];
      entries.push_back({i, wire_age(now_ms, slots_[i].stamp), slots_[i].payload});
    }
  }

  uint32_t self_;
  uint32_t n_;
  Params params_;
  Rng rng_;
  std::vector<Slot> slots_;  // stamp kUnknown until the first entry arrives
  std::vector<uint32_t> known_others_;  // random rule only
  std::vector<Ranked> freshest_;        // freshest rule only; a min-heap on stamp
};

}  // namespace roam::gossip
