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
// freshest-window rule keeps the top `window` entries in a small sorted array
// updated on merge instead of scanning the table.
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
      : self_(self), n_(n), params_(p), rng_(seed), stamp_(n, kUnknown), payload_(n) {
    ROAM_ASSERT(n > 0 && self < n, fmt::format("gossip table: self {} out of {} nodes", self, n));
    if (params_.window_rule == WindowRule::random) {
      known_others_.reserve(n - 1);
    } else {
      freshest_.reserve(std::min(params_.window, n - 1));
    }
  }

  uint32_t self() const { return self_; }
  uint32_t size() const { return n_; }

  void set_self(const Payload& p, int64_t now_ms) {
    payload_[self_] = p;
    stamp_[self_] = now_ms;
  }

  // One gossip step. With n == 1 the target is self and the caller sends nothing.
  Outgoing<Payload> step(int64_t now_ms) {
    Outgoing<Payload> out;
    step_into(now_ms, out);
    return out;
  }

  void step_into(int64_t now_ms, Outgoing<Payload>& out) {
    out.target = pick_target(now_ms);
    out.entries.clear();
    out.entries.push_back({self_, 0, payload_[self_]});
    if (params_.window_rule == WindowRule::freshest) {
      for (const Ranked& r : freshest_) out.entries.push_back({r.index, wire_age(now_ms, r.stamp), payload_[r.index]});
    } else {
      append_random_window(now_ms, out.entries);
    }
  }

  // Merges a received window. Entries about self are skipped (we are the
  // authority on ourselves); entries with index >= n are ignored and counted.
  size_t receive(std::span<const WindowEntry<Payload>> entries, int64_t now_ms) {
    size_t ignored = 0;
    for (const auto& e : entries) {
      if (e.index >= n_) {
        ++ignored;
        continue;
      }
      if (e.index == self_) continue;
      const int64_t stamp = now_ms - static_cast<int64_t>(e.age_ms);
      int64_t& mine = stamp_[e.index];
      if (stamp <= mine) continue;
      if (mine == kUnknown && params_.window_rule == WindowRule::random) known_others_.push_back(e.index);
      mine = stamp;
      payload_[e.index] = e.payload;
      if (params_.window_rule == WindowRule::freshest) offer_to_freshest(e.index, stamp);
    }
    return ignored;
  }

  bool known(uint32_t i) const {
    ROAM_ASSERT(i < n_, fmt::format("gossip table of node {}: index {} out of {}", self_, i, n_));
    return i == self_ || stamp_[i] != kUnknown;
  }

  // The own entry is by definition current: its age is always 0.
  int64_t age_ms(uint32_t i, int64_t now_ms) const {
    ROAM_ASSERT(known(i), fmt::format("gossip table of node {}: age of unknown node {}", self_, i));
    return i == self_ ? 0 : now_ms - stamp_[i];
  }

  bool up(uint32_t i, int64_t now_ms) const {
    if (i == self_) return true;
    return known(i) && now_ms - stamp_[i] <= params_.down_after_ms;
  }

  const Payload& payload(uint32_t i) const {
    ROAM_ASSERT(known(i), fmt::format("gossip table of node {}: payload of unknown node {}", self_, i));
    return payload_[i];
  }

 private:
  static constexpr int64_t kUnknown = std::numeric_limits<int64_t>::min();
  // A bounded number of random draws before falling back to a scan: with half
  // the cluster down, 16 misses in a row happen once in 65536 steps.
  static constexpr int kAliveTries = 16;

  struct Ranked {
    int64_t stamp;
    uint32_t index;
  };

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

  // Keeps freshest_ equal to the `window` known entries with the largest
  // stamps, freshest first. A stamp only grows, and only when its entry is
  // updated, so an entry outside the set stays no fresher than the set's last
  // member until its next update, which comes through here.
  void offer_to_freshest(uint32_t index, int64_t stamp) {
    const size_t cap = params_.window;
    if (cap == 0) return;
    if (freshest_.size() == cap && stamp <= freshest_.back().stamp) return;
    size_t pos = 0;
    while (pos < freshest_.size() && freshest_[pos].index != index) ++pos;
    if (pos == freshest_.size()) {
      if (freshest_.size() < cap) {
        freshest_.push_back({stamp, index});
      } else {
        pos = freshest_.size() - 1;  // evict the stalest member
        freshest_[pos] = {stamp, index};
      }
    } else {
      freshest_[pos].stamp = stamp;
    }
    while (pos > 0 && freshest_[pos - 1].stamp < freshest_[pos].stamp) {
      std::swap(freshest_[pos - 1], freshest_[pos]);
      --pos;
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
      entries.push_back({i, wire_age(now_ms, stamp_[i]), payload_[i]});
    }
  }

  uint32_t self_;
  uint32_t n_;
  Params params_;
  Rng rng_;
  std::vector<int64_t> stamp_;  // kUnknown until the first entry arrives
  std::vector<Payload> payload_;
  std::vector<uint32_t> known_others_;  // random rule only
  std::vector<Ranked> freshest_;        // freshest rule only
};

}  // namespace roam::gossip
