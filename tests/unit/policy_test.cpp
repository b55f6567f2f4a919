// The automatic policies' decisions (roam/policy.hpp) from given facts:
// load balancing with its candidate rules, hysteresis and anti-herding,
// memory ushering, I/O homing.
#include "roam/policy.hpp"

#include <cmath>
#include <map>
#include <vector>

#include <gtest/gtest.h>

namespace {

using roam::placement::Mobility;
using roam::placement::NodeView;
using roam::policy::Decision;
using roam::policy::Engine;
using roam::policy::Proc;
using roam::policy::Settings;

constexpr uint64_t kMiB = 1 << 20;

NodeView node(uint32_t n, uint32_t load, bool self = false) {
  NodeView v;
  v.node = n;
  v.self = self;
  v.up = true;
  v.load = load;
  v.ncpus = 1;
  v.free_mem = 8192 * kMiB;
  v.total_mem = 16384 * kMiB;
  return v;
}

Proc busy(pid_t pid, uint32_t where = 1) {
  Proc p;
  p.pid = pid;
  p.node = where;
  p.age_s = 30;
  p.cpu_demand = 1;
  p.rss = 10 * kMiB;
  return p;
}

std::optional<Decision> decide(Engine& e, const std::vector<Proc>& procs, const std::vector<NodeView>& nodes,
                               int64_t now = 100000) {
  std::mt19937_64 rng(1);
  return e.step(procs, nodes, now, 200e6, rng);
}

TEST(Balance, MovesABusyProcessFromALoadedNodeToAnIdleOne) {
  Engine e({});
  auto d = decide(e, {busy(10), busy(11), busy(12), busy(13)}, {node(1, 400, true), node(2, 0)});
  ASSERT_TRUE(d);
  EXPECT_EQ(d->from, 1u);
  EXPECT_EQ(d->to, 2u);
  EXPECT_EQ(d->policy, "load");
}

TEST(Balance, LeavesBalancedNodesAlone) {
  Engine e({});
  // 2 and 2: moving one would make it 1 and 3.
  EXPECT_FALSE(decide(e, {busy(10), busy(11)}, {node(1, 200, true), node(2, 200)}));
  // 3 and 2: 3 - (2 + 1) = 0 is below the margin.
  EXPECT_FALSE(decide(e, {busy(10), busy(11), busy(12)}, {node(1, 300, true), node(2, 200)}));
  // 4 and 4 with some noise on this node: less than 3/4 of a process to gain.
  EXPECT_FALSE(decide(e, {busy(10)}, {node(1, 470, true), node(2, 400)}));
  // 5 and 3: one process to gain.
  EXPECT_TRUE(decide(e, {busy(10)}, {node(1, 500, true), node(2, 300)}));
}

TEST(Balance, AYoungProcessIsNotACandidateUntilItRanAsLongAsItsMoveTakes) {
  Engine e({.move_cost_ms = 200});
  Proc young = busy(10);
  young.rss = 400 * kMiB;  // 2 s at 200 MB/s, plus 0.2 s
  young.age_s = 1.5;
  EXPECT_FALSE(decide(e, {young}, {node(1, 400, true), node(2, 0)}));
  young.age_s = 2.5;
  EXPECT_TRUE(decide(e, {young}, {node(1, 400, true), node(2, 0)}));
}

TEST(Balance, IdleAndPinnedProcessesStay) {
  Engine e({});
  Proc idle = busy(10);
  idle.cpu_demand = 0.1;
  Proc pinned = busy(11);
  pinned.placement.mobility = Mobility::manual_only;
  Proc home = busy(12);
  home.placement.mobility = Mobility::stay_home;
  EXPECT_FALSE(decide(e, {idle, pinned, home}, {node(1, 400, true), node(2, 0)}));
}

TEST(Balance, ATaggedProcessGoesOnlyWhereItsTagIs) {
  Engine e({});
  Proc p = busy(10);
  p.placement.tag = "gpu";
  NodeView n1 = node(1, 400, true), n2 = node(2, 0), n3 = node(3, 100);
  n1.tags = {"gpu"};
  n3.tags = {"gpu"};
  for (int i = 0; i < 20; ++i) {
    std::mt19937_64 rng(static_cast<uint64_t>(i));
    auto d = e.step(std::vector{p}, std::vector{n1, n2, n3}, 100000, 200e6, rng);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->to, 3u);
  }
}

TEST(Balance, NoMoveToADownOrStayedNode) {
  Engine e({});
  NodeView down = node(2, 0), stayed = node(3, 0);
  down.up = false;
  stayed.takes_guests = false;
  EXPECT_FALSE(decide(e, {busy(10), busy(11)}, {node(1, 400, true), down, stayed}));
}

TEST(Balance, AProcessRestsAfterAMove) {
  Engine e({.cooldown_ms = 10000});
  Proc p = busy(10);
  p.last_move_ms = 95000;
  EXPECT_FALSE(decide(e, {p}, {node(1, 400, true), node(2, 0)}, 100000));
  EXPECT_TRUE(decide(e, {p}, {node(1, 400, true), node(2, 0)}, 106000));
  p.moving = true;
  EXPECT_FALSE(decide(e, {p}, {node(1, 400, true), node(2, 0)}, 106000));
}

TEST(Balance, ItsOwnRecentMovesCountUntilNewerInformationShowsThem) {
  // Gossip still says node 2 is idle right after we sent it a process: the
  // next step must not send another one on that stale word alone.
  Engine e({.settle_ms = 2000});
  std::vector<NodeView> nodes = {node(1, 200, true), node(2, 0)};
  auto d = decide(e, {busy(10), busy(11)}, nodes, 100000);
  ASSERT_TRUE(d);
  e.moved(*d, 100000, 0.5);
  EXPECT_NEAR(e.expected_load(nodes[1], 100000), 100, 1);
  EXPECT_NEAR(e.expected_load(nodes[0], 100000), 100, 1);
  EXPECT_FALSE(decide(e, {busy(11)}, nodes, 100100));
  // Node 2's word, measured before the move ended (100500): all of it is
  // still to come.
  nodes[1].age_ms = 2600;
  EXPECT_NEAR(e.expected_load(nodes[1], 103000), 100, 1);
  // Measured 1 s after it (smoothing time constant 2000 / 3 ms): most of
  // the move shows in it already, the correction is the rest (e^-1.5).
  nodes[1].load = 78;
  nodes[1].age_ms = 1500;
  EXPECT_NEAR(e.expected_load(nodes[1], 103000), 78 + 100 * std::exp(-1.5), 1);
  // Long after, nothing is corrected: this node's own figure is taken as it is.
  nodes[0].load = 100;
  EXPECT_NEAR(e.expected_load(nodes[0], 106000), 100, 1);
}

TEST(Balance, HomesThatSeeTheSameIdleNodesSpreadOverThem) {
  // Every candidate target within the margin of the best is drawn at random.
  std::map<uint32_t, int> chosen;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    Engine e({});
    std::mt19937_64 rng(seed);
    auto d = e.step(std::vector{busy(10)}, std::vector{node(1, 400, true), node(2, 0), node(3, 10), node(4, 0)},
                    100000, 200e6, rng);
    ASSERT_TRUE(d);
    ++chosen[d->to];
  }
  EXPECT_EQ(chosen.size(), 3u);
  for (auto& [n, count] : chosen) EXPECT_GT(count, 20) << "node " << n;
}

// The moves one step decides, as mosd makes them: step, moved, again.
std::map<uint32_t, int> one_step(Engine& e, std::vector<Proc> procs, const std::vector<NodeView>& nodes,
                                 int limit = 16) {
  std::mt19937_64 rng(7);
  std::map<uint32_t, int> to;
  for (int i = 0; i < limit; ++i) {
    auto d = e.step(procs, nodes, 100000, 200e6, rng);
    if (!d) break;
    for (Proc& p : procs)
      if (p.pid == d->pid) {
        p.moving = true;
        p.last_move_ms = 100000;
      }
    e.moved(*d, 100000, 0.2);
    ++to[d->to];
  }
  return to;
}

TEST(Balance, OneStepEvensOutTwoNodes) {
  // 8 jobs on node1, node2 idle: the first step sends 4, not one.
  Engine e({});
  std::vector<Proc> procs;
  for (pid_t p = 10; p < 18; ++p) procs.push_back(busy(p));
  auto to = one_step(e, procs, {node(1, 800, true), node(2, 0)});
  EXPECT_EQ(to, (std::map<uint32_t, int>{{2, 4}}));
}

TEST(Balance, ItsOwnProcessesDemandCountsBeforeTheSmoothedLoadShowsIt) {
  // 8 jobs just started: the node's smoothed load says 550, but each of
  // them ran or waited the whole step: 800, and 4 go in the first step.
  Engine e({});
  std::vector<Proc> procs;
  for (pid_t p = 10; p < 18; ++p) procs.push_back(busy(p));
  auto to = one_step(e, procs, {node(1, 550, true), node(2, 0)});
  EXPECT_EQ(to, (std::map<uint32_t, int>{{2, 4}}));
  // Half of them waiting on something else: 400, and 2 go.
  Engine e2({});
  for (Proc& p : procs) p.cpu_demand = 0.5;
  EXPECT_EQ(one_step(e2, procs, {node(1, 300, true), node(2, 0)}), (std::map<uint32_t, int>{{2, 2}}));
}

TEST(Balance, HomesThatSeeTheSameIdleNodeShareItsRoom) {
  // Nodes 1 and 2 both carry 8 jobs, node 3 none: the cluster's average is
  // 533, so node 3 has room for ~5 processes, shared by the 2 nodes above
  // the average. This home (node 1) sends it 3, not the 4 that would even
  // out node 1 and node 3 (node 2's home, deciding the same, sends 3 too).
  Engine e({});
  std::vector<Proc> procs;
  for (pid_t p = 10; p < 18; ++p) procs.push_back(busy(p));
  auto to = one_step(e, procs, {node(1, 800, true), node(2, 800), node(3, 0)});
  EXPECT_EQ(to, (std::map<uint32_t, int>{{3, 3}}));
  // The quota is per step: the next one, from the same (older) figures
  // corrected by this step's moves (node 1 at 500, node 3 at 300), sends
  // another.
  std::vector<NodeView> nodes = {node(1, 800, true), node(2, 800), node(3, 0)};
  for (NodeView& n : nodes) n.age_ms = 1000;
  std::mt19937_64 rng(1);
  std::vector<Proc> rest(procs.begin() + 3, procs.end());
  auto later = e.step(rest, nodes, 100250, 200e6, rng);
  ASSERT_TRUE(later);
  EXPECT_EQ(later->to, 3u);
}

TEST(Balance, AnAwayProcessOnAnOverloadedNodeMayComeHome) {
  Engine e({});
  auto d = decide(e, {busy(10, 2)}, {node(1, 0, true), node(2, 300)});
  ASSERT_TRUE(d);
  EXPECT_EQ(d->from, 2u);
  EXPECT_EQ(d->to, 1u);
}

TEST(Balance, IsOffWhenTheSettingSaysSo) {
  Engine e({.balance = false});
  EXPECT_FALSE(decide(e, {busy(10), busy(11)}, {node(1, 400, true), node(2, 0)}));
}

TEST(Usher, TheBiggestProcessLeavesANodeShortOfMemoryForTheNodeWithMostRoom) {
  Engine e({.usher_free_bytes = 160 * kMiB});
  NodeView n1 = node(1, 100, true), n2 = node(2, 100), n3 = node(3, 100);
  n1.free_mem = 60 * kMiB;
  n2.free_mem = 400 * kMiB;
  n3.free_mem = 900 * kMiB;
  Proc small = busy(10), big = busy(11);
  small.cpu_demand = big.cpu_demand = 0;  // ushering does not need them busy
  small.rss = 50 * kMiB;
  big.rss = 300 * kMiB;
  auto d = decide(e, {small, big}, {n1, n2, n3});
  ASSERT_TRUE(d);
  EXPECT_EQ(d->policy, "memory");
  EXPECT_EQ(d->pid, 11);
  EXPECT_EQ(d->to, 3u);
}

TEST(Usher, NoTargetWithoutRoomAboveItsOwnThreshold) {
  Engine e({.usher_free_bytes = 160 * kMiB});
  NodeView n1 = node(1, 100, true), n2 = node(2, 100);
  n1.free_mem = 60 * kMiB;
  n2.free_mem = 400 * kMiB;  // 300 MiB would leave it 100 MiB: below 160
  Proc big = busy(11);
  big.cpu_demand = 0;
  big.rss = 300 * kMiB;
  EXPECT_FALSE(decide(e, {big}, {n1, n2}));
}

TEST(Usher, AMoveUnderWayCountsBeforeTheNodesReportIt) {
  // One process ushered off a node: the next step, before any node reports
  // the memory moved, does not usher a second one for the same shortage.
  Engine e({.usher_free_bytes = 160 * kMiB});
  NodeView n1 = node(1, 100, true), n2 = node(2, 100);
  n1.free_mem = 60 * kMiB;
  n2.free_mem = 2000 * kMiB;
  Proc a = busy(10), b = busy(11);
  a.cpu_demand = b.cpu_demand = 0;
  a.rss = b.rss = 150 * kMiB;
  auto d = decide(e, {a, b}, {n1, n2}, 100000);
  ASSERT_TRUE(d);
  e.moved(*d, 100000, 1.0);
  a.moving = true;
  EXPECT_FALSE(decide(e, {a, b}, {n1, n2}, 100250));
  EXPECT_EQ(e.expected_free(n1, 100250), 210 * kMiB);
  EXPECT_EQ(e.expected_free(n2, 100250), 1850 * kMiB);
}

TEST(Usher, TheAutomaticThresholdIsFivePercentAndAtLeast64MiB) {
  Engine e({});
  EXPECT_EQ(e.usher_threshold(16384 * kMiB), 16384 * kMiB / 20);
  EXPECT_EQ(e.usher_threshold(512 * kMiB), 64 * kMiB);
}

TEST(IoHoming, AnAwayProcessForwardingMuchIOComesHomeAfterSomeSteps) {
  Engine e({.io_home_calls_per_s = 2000, .io_home_steps = 3});
  Proc p = busy(10, 2);
  p.io_calls_per_s = 9000;
  p.io_high_steps = 2;
  EXPECT_FALSE(decide(e, {p}, {node(1, 100, true), node(2, 100)}));
  p.io_high_steps = 3;
  auto d = decide(e, {p}, {node(1, 100, true), node(2, 100)});
  ASSERT_TRUE(d);
  EXPECT_EQ(d->policy, "io");
  EXPECT_EQ(d->to, 1u);
  // And at home, so much I/O keeps it from being balanced away.
  Proc at_home = busy(10, 1);
  at_home.io_calls_per_s = 9000;
  EXPECT_FALSE(decide(e, {at_home}, {node(1, 400, true), node(2, 0)}));
}

}  // namespace
