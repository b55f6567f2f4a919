// The gossip bulletin board: merge rules, relative ages, window contents,
// target choice, down detection, and convergence of a small cluster.
#include "roam/gossip.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <vector>

#include <gtest/gtest.h>

namespace roam::gossip {
namespace {

using Entry = WindowEntry<int>;

Params params_with(uint32_t window, WindowRule wr = WindowRule::freshest, TargetRule tr = TargetRule::any) {
  Params p;
  p.window = window;
  p.window_rule = wr;
  p.target_rule = tr;
  return p;
}

TEST(GossipTable, MergeKeepsFresherAndIgnoresStaler) {
  Table<int> t(0, 4, Params{}, 1);
  const int64_t now = 10'000;
  EXPECT_FALSE(t.known(1));

  std::vector<Entry> first{{1, 500, 10}};
  EXPECT_EQ(t.receive(first, now), 0u);
  ASSERT_TRUE(t.known(1));
  EXPECT_EQ(t.payload(1), 10);
  EXPECT_EQ(t.age_ms(1, now), 500);

  std::vector<Entry> staler{{1, 800, 20}};
  t.receive(staler, now);
  EXPECT_EQ(t.payload(1), 10);
  EXPECT_EQ(t.age_ms(1, now), 500);

  // Same stamp reached from a later clock reading: not fresher, kept as is.
  std::vector<Entry> same{{1, 1500, 30}};
  t.receive(same, now + 1000);
  EXPECT_EQ(t.payload(1), 10);

  std::vector<Entry> fresher{{1, 100, 40}};
  t.receive(fresher, now);
  EXPECT_EQ(t.payload(1), 40);
  EXPECT_EQ(t.age_ms(1, now), 100);
  EXPECT_EQ(t.age_ms(1, now + 2000), 2100);

  // Within one window, the fresher of two entries about the same node wins
  // whatever the order.
  std::vector<Entry> both{{2, 700, 1}, {2, 300, 2}, {2, 900, 3}};
  t.receive(both, now);
  EXPECT_EQ(t.payload(2), 2);
  EXPECT_EQ(t.age_ms(2, now), 300);
}

TEST(GossipTable, AgesAreRelativeToEachClock) {
  // Node 0's clock reads around 1e9, node 1's around 5000: only ages cross.
  Table<int> a(0, 3, Params{}, 1);
  Table<int> b(1, 3, Params{}, 2);
  const int64_t a_now = 1'000'000'000;
  const int64_t b_now = 5'000;

  a.set_self(7, a_now);
  std::vector<Entry> about_2{{2, 300, 22}};
  a.receive(about_2, a_now);
  Outgoing<int> out = a.step(a_now + 200);
  ASSERT_NE(out.target, 0u);
  b.receive(out.entries, b_now);  // whichever node was drawn, hand the window to b

  EXPECT_EQ(b.payload(0), 7);
  EXPECT_EQ(b.age_ms(0, b_now), 0);  // the sender's own entry travels with age 0
  EXPECT_EQ(b.payload(2), 22);
  EXPECT_EQ(b.age_ms(2, b_now), 500);  // 300 when received by a, plus 200 held there
  EXPECT_EQ(b.age_ms(2, b_now + 1000), 1500);
  EXPECT_TRUE(b.up(2, b_now + 1000));
}

TEST(GossipTable, OutOfRangeIndexesAreIgnoredAndSelfIsNotOverwritten) {
  Table<int> t(0, 4, Params{}, 1);
  t.set_self(5, 100);
  std::vector<Entry> entries{{7, 0, 1}, {3, 0, 2}, {100, 0, 3}, {0, 0, 4}, {4, 0, 5}};
  EXPECT_EQ(t.receive(entries, 100), 3u);
  EXPECT_TRUE(t.known(3));
  EXPECT_EQ(t.payload(3), 2);
  EXPECT_FALSE(t.known(1));
  EXPECT_FALSE(t.known(2));
  EXPECT_EQ(t.payload(0), 5);
  EXPECT_EQ(t.age_ms(0, 100'000), 0);
  EXPECT_TRUE(t.up(0, 100'000));
}

TEST(GossipTable, WindowIsOwnEntryFirstThenTheFreshest) {
  const uint32_t n = 50;
  const uint32_t w = 8;
  Table<int> t(3, n, params_with(w), 1);
  t.set_self(-1, 0);

  // Fewer known than the window: everything known is sent.
  std::vector<Entry> few{{10, 40, 10}, {11, 20, 11}};
  t.receive(few, 1000);
  Outgoing<int> out = t.step(1000);
  ASSERT_EQ(out.entries.size(), 3u);
  EXPECT_EQ(out.entries[0].index, 3u);
  EXPECT_EQ(out.entries[0].age_ms, 0u);
  EXPECT_EQ(out.entries[0].payload, -1);

  // Random updates against a brute-force reference of the w freshest ages.
  Rng rng(99);
  std::map<uint32_t, int64_t> stamps{{10, 960}, {11, 980}};
  int64_t now = 1000;
  for (int round = 0; round < 3000; ++round) {
    now += rng.below(50);
    std::vector<Entry> window;
    const uint32_t count = 1 + rng.below(9);
    for (uint32_t k = 0; k < count; ++k) {
      const uint32_t idx = rng.below(n);
      const uint32_t age = rng.below(5000);
      window.push_back({idx, age, static_cast<int>(idx)});
      if (idx != 3) {
        auto [it, inserted] = stamps.try_emplace(idx, now - age);
        if (!inserted) it->second = std::max(it->second, now - static_cast<int64_t>(age));
      }
    }
    t.receive(window, now);

    const int64_t step_at = now + rng.below(100);
    t.step_into(step_at, out);
    ASSERT_EQ(out.entries.size(), 1 + std::min<size_t>(w, stamps.size()));
    EXPECT_EQ(out.entries[0].index, 3u);
    EXPECT_EQ(out.entries[0].age_ms, 0u);

    std::vector<int64_t> expected;
    for (const auto& [idx, s] : stamps) expected.push_back(step_at - s);
    std::sort(expected.begin(), expected.end());
    expected.resize(std::min<size_t>(w, expected.size()));

    std::vector<int64_t> got;
    std::set<uint32_t> distinct;
    for (size_t k = 1; k < out.entries.size(); ++k) {
      const auto& e = out.entries[k];
      EXPECT_NE(e.index, 3u);
      EXPECT_EQ(e.payload, static_cast<int>(e.index));
      EXPECT_EQ(static_cast<int64_t>(e.age_ms), step_at - stamps.at(e.index));
      got.push_back(e.age_ms);
      distinct.insert(e.index);
    }
    EXPECT_EQ(distinct.size(), got.size());
    std::sort(got.begin(), got.end());
    ASSERT_EQ(got, expected) << "round " << round;
  }
}

TEST(GossipTable, RandomWindowSamplesDistinctKnownEntries) {
  const uint32_t n = 40;
  Table<int> t(0, n, params_with(5, WindowRule::random), 7);
  std::vector<Entry> known;
  for (uint32_t i = 1; i <= 20; ++i) known.push_back({i, i * 10, static_cast<int>(i)});
  t.receive(known, 1000);

  std::set<uint32_t> seen;
  for (int s = 0; s < 500; ++s) {
    Outgoing<int> out = t.step(1000);
    ASSERT_EQ(out.entries.size(), 6u);
    EXPECT_EQ(out.entries[0].index, 0u);
    std::set<uint32_t> distinct;
    for (size_t k = 1; k < out.entries.size(); ++k) {
      const auto& e = out.entries[k];
      EXPECT_GE(e.index, 1u);
      EXPECT_LE(e.index, 20u);
      EXPECT_EQ(e.age_ms, e.index * 10);
      distinct.insert(e.index);
      seen.insert(e.index);
    }
    EXPECT_EQ(distinct.size(), 5u);
  }
  EXPECT_EQ(seen.size(), 20u);
}

TEST(GossipTable, TargetIsNeverSelfAndRoughlyUniform) {
  const uint32_t n = 10;
  const uint32_t self = 4;
  Table<int> t(self, n, Params{}, 12345);
  const int steps = 90'000;
  std::vector<int> hits(n, 0);
  Outgoing<int> out;
  for (int s = 0; s < steps; ++s) {
    t.step_into(s, out);
    ASSERT_LT(out.target, n);
    ++hits[out.target];
  }
  EXPECT_EQ(hits[self], 0);
  // Expected 10000 each; one standard deviation is about 94, so 600 is a
  // bound that only a biased choice fails.
  for (uint32_t i = 0; i < n; ++i) {
    if (i == self) continue;
    EXPECT_NEAR(hits[i], steps / (n - 1), 600) << "target " << i;
  }
}

TEST(GossipTable, AliveRuleAvoidsDownNodes) {
  const uint32_t n = 10;
  Params p = params_with(8, WindowRule::freshest, TargetRule::alive);
  p.down_after_ms = 20'000;
  Table<int> t(0, n, p, 3);
  const int64_t now = 100'000;

  // Nothing known yet: nobody is up, so any other node will do.
  std::set<uint32_t> cold;
  for (int s = 0; s < 500; ++s) {
    const uint32_t target = t.step(now).target;
    EXPECT_NE(target, 0u);
    cold.insert(target);
  }
  EXPECT_EQ(cold.size(), n - 1);

  std::vector<Entry> entries;
  for (uint32_t i = 1; i <= 4; ++i) entries.push_back({i, 1000, 0});  // up
  for (uint32_t i = 5; i <= 7; ++i) entries.push_back({i, 30'000, 0});  // down
  t.receive(entries, now);                                         // 8 and 9 stay unknown

  std::vector<int> hits(n, 0);
  const int steps = 8000;
  for (int s = 0; s < steps; ++s) ++hits[t.step(now).target];
  for (uint32_t i = 0; i < n; ++i) {
    if (i >= 1 && i <= 4) {
      EXPECT_NEAR(hits[i], steps / 4, 250) << "target " << i;
    } else {
      EXPECT_EQ(hits[i], 0) << "target " << i;
    }
  }
}

TEST(GossipTable, StaleNodeGoesDownAndComesBack) {
  Params p;
  p.down_after_ms = 20'000;
  Table<int> t(0, 5, p, 1);
  std::vector<Entry> fresh{{3, 0, 1}};
  t.receive(fresh, 1'000);
  EXPECT_TRUE(t.up(3, 1'000));
  EXPECT_TRUE(t.up(3, 21'000));
  EXPECT_FALSE(t.up(3, 21'001));
  EXPECT_FALSE(t.up(2, 1'000));  // unknown is not up
  EXPECT_TRUE(t.up(0, 1'000'000));

  std::vector<Entry> back{{3, 500, 2}};
  t.receive(back, 40'000);
  EXPECT_TRUE(t.up(3, 40'000));
  EXPECT_EQ(t.payload(3), 2);
  EXPECT_EQ(t.age_ms(3, 40'000), 500);
}

TEST(GossipTable, SingleNodeTargetsItself) {
  Table<int> t(0, 1, Params{}, 1);
  t.set_self(9, 0);
  Outgoing<int> out = t.step(0);
  EXPECT_EQ(out.target, 0u);
  ASSERT_EQ(out.entries.size(), 1u);
  EXPECT_EQ(out.entries[0].payload, 9);
}

TEST(GossipTable, WindowZeroSendsOnlyTheOwnEntry) {
  for (WindowRule rule : {WindowRule::freshest, WindowRule::random}) {
    Table<int> t(2, 5, params_with(0, rule), 1);
    std::vector<Entry> entries{{0, 0, 1}, {1, 0, 1}, {3, 0, 1}};
    t.receive(entries, 0);
    Outgoing<int> out = t.step(0);
    ASSERT_EQ(out.entries.size(), 1u);
    EXPECT_EQ(out.entries[0].index, 2u);
  }
}

TEST(GossipTableDeathTest, MisuseAssertsWithContext) {
  Table<int> t(0, 3, Params{}, 1);
  EXPECT_DEATH(t.age_ms(2, 0), "unknown node 2");
  EXPECT_DEATH(t.payload(1), "unknown node 1");
  EXPECT_DEATH(t.known(5), "index 5 out of 3");
}

TEST(GossipTable, StepIntoMatchesStepAndReusesStorage) {
  Table<int> a(1, 30, Params{}, 5);
  Table<int> b(1, 30, Params{}, 5);
  std::vector<Entry> entries;
  for (uint32_t i = 2; i < 30; ++i) entries.push_back({i, i * 7, static_cast<int>(i)});
  a.receive(entries, 1000);
  b.receive(entries, 1000);
  Outgoing<int> reused;
  a.step_into(1000, reused);
  b.step(1000);
  const auto* storage = reused.entries.data();
  for (int s = 0; s < 20; ++s) {
    a.step_into(1000 + s, reused);
    Outgoing<int> fresh = b.step(1000 + s);
    (void)fresh;
  }
  EXPECT_EQ(reused.entries.data(), storage);
  Outgoing<int> last = b.step(2000);
  a.step_into(2000, reused);
  EXPECT_EQ(reused.target, last.target);
  ASSERT_EQ(reused.entries.size(), last.entries.size());
  for (size_t k = 0; k < last.entries.size(); ++k) {
    EXPECT_EQ(reused.entries[k].index, last.entries[k].index);
    EXPECT_EQ(reused.entries[k].age_ms, last.entries[k].age_ms);
  }
}

// Sixteen nodes gossip in synchronous steps (each node publishes, then every
// message is delivered in the same step): everyone must learn everyone
// quickly, and every payload must be the one published at its stamp.
TEST(GossipSimulation, SixteenNodesConverge) {
  const uint32_t n = 16;
  const int64_t step_ms = 1000;
  std::vector<Table<int>> nodes;
  for (uint32_t i = 0; i < n; ++i) nodes.emplace_back(i, n, Params{}, 1000 + i);
  std::vector<Outgoing<int>> out(n);

  auto all_known = [&] {
    for (const auto& t : nodes)
      for (uint32_t j = 0; j < n; ++j)
        if (!t.known(j)) return false;
    return true;
  };

  int converged_at = -1;
  int64_t worst_age_after = 0;
  double age_sum = 0;
  int64_t age_count = 0;
  for (int step = 1; step <= 200; ++step) {
    const int64_t now = step * step_ms;
    for (uint32_t i = 0; i < n; ++i) {
      nodes[i].set_self(step, now);
      nodes[i].step_into(now, out[i]);
      ASSERT_NE(out[i].target, i);
    }
    for (uint32_t i = 0; i < n; ++i) nodes[out[i].target].receive(out[i].entries, now);
    if (converged_at < 0 && all_known()) converged_at = step;
    if (step > 100) {
      for (const auto& t : nodes) {
        for (uint32_t j = 0; j < n; ++j) {
          const int64_t age_steps = t.age_ms(j, now) / step_ms;
          EXPECT_EQ(t.age_ms(j, now) % step_ms, 0);
          if (j != t.self()) {
            EXPECT_EQ(t.payload(j), step - age_steps);
          }
          worst_age_after = std::max(worst_age_after, age_steps);
          age_sum += static_cast<double>(age_steps);
          ++age_count;
        }
      }
    }
  }
  ASSERT_GT(converged_at, 0);
  EXPECT_LE(converged_at, 40);
  // n/window = 2 steps and the simulator measures about 3.4: the average
  // must be of that order. Ages are roughly exponential, so the largest of
  // 24000 samples is about 3.4 * ln(24000) ~ 34; 2000 seeds never passed 32.
  EXPECT_LT(age_sum / static_cast<double>(age_count), 4.0);
  EXPECT_LE(worst_age_after, 60);
  for (const auto& t : nodes)
    for (uint32_t j = 0; j < n; ++j) EXPECT_TRUE(t.up(j, 200 * step_ms));
}

}  // namespace
}  // namespace roam::gossip
