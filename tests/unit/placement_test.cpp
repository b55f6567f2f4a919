// Placement decisions from a gossip table: which nodes fit a job (tags,
// memory, stay, up), which is best, and why each process is where it is.
#include "roam/placement.hpp"

#include <gtest/gtest.h>

#include "roam/home/placements.hpp"

namespace roam::placement {
namespace {

NodeView node(uint32_t n, uint32_t load, uint64_t free_mb = 4096, std::vector<std::string> tags = {}) {
  NodeView v;
  v.node = n;
  v.up = true;
  v.load = load;
  v.ncpus = 1;
  v.speed = 10000;
  v.free_mem = free_mb << 20;
  v.tags = std::move(tags);
  return v;
}

// node1 is home (self) unless a test says otherwise.
std::vector<NodeView> cluster(std::vector<NodeView> v) {
  v.front().self = true;
  return v;
}

TEST(Placement, TheLeastLoadedNodeIsBest) {
  auto v = cluster({node(1, 200), node(2, 50), node(3, 120)});
  EXPECT_EQ(choose_best({}, v, 1), 2u);
}

TEST(Placement, TheProcessCountsWhereItIsNotWhereItWouldGo) {
  // Home runs it (load 100 with it); node 2 would show 100 with it: stay.
  auto v = cluster({node(1, 100), node(2, 0)});
  EXPECT_EQ(choose_best({}, v, 1), 1u);
  // Not placed yet (mosrun -b): counted wherever it would go.
  EXPECT_EQ(choose_best({}, v, 0), 2u);
  v[1].load = 100;
  EXPECT_EQ(choose_best({}, v, 0), 1u);  // a tie goes home
  v[1].load = 0;
  // Two at home: one of them gains by moving.
  v[0].load = 200;
  EXPECT_EQ(choose_best({}, v, 1), 2u);
}

TEST(Placement, MoreCpusTakeMoreLoad) {
  auto v = cluster({node(1, 200), node(2, 100), node(3, 100)});
  v[2].ncpus = 4;  // 100 + 25 after the move, against node 2's 200
  EXPECT_EQ(choose_best({}, v, 1), 3u);
}

TEST(Placement, ATaggedJobGoesOnlyWhereTheTagIs) {
  auto v = cluster({node(1, 0), node(2, 0), node(3, 300, 4096, {"gpu"})});
  Placement p;
  p.tag = "gpu";
  EXPECT_EQ(choose_best(p, v, 1), 3u);
  EXPECT_EQ(unfit(p, v[1], 1), "node 2 lacks tag gpu (mosrun -t gpu)");
  EXPECT_EQ(unfit(p, v[2], 1), "");
  v[2].tags.clear();
  std::string why;
  EXPECT_EQ(choose_best(p, v, 1, &why), std::nullopt);
  EXPECT_EQ(why, "no node with tag gpu can take it (node 1 lacks tag gpu (mosrun -t gpu))");
}

TEST(Placement, MemoryRequirementExcludesNodesWithLessFree) {
  auto v = cluster({node(1, 300, 8192), node(2, 0, 100), node(3, 50, 600)});
  Placement p;
  p.mem_mb = 512;
  EXPECT_EQ(choose_best(p, v, 1), 3u);
  EXPECT_EQ(unfit(p, v[1], 1), "node 2 has 100 MB free, the job needs 512 MB (mosrun -m)");
  // The node the process is on already holds its memory.
  EXPECT_EQ(unfit(p, v[1], 2), "");
}

TEST(Placement, StayedAndDownNodesTakeNoGuestsButHomeIsAlwaysThere) {
  auto v = cluster({node(1, 300), node(2, 0), node(3, 0)});
  v[1].takes_guests = false;
  v[2].up = false;
  EXPECT_EQ(unfit({}, v[1], 1), "node 2 takes no guests (mosctl stay)");
  EXPECT_EQ(unfit({}, v[2], 1), "node 3 is down or unknown here");
  EXPECT_EQ(choose_best({}, v, 1), 1u);
  v[0].takes_guests = false;
  v[0].up = false;
  EXPECT_EQ(unfit({}, v[0], 2), "");
  // Away on node 2 (now stayed): home is the best place left.
  EXPECT_EQ(choose_best({}, v, 2), 1u);
}

TEST(Placement, TiesGoToTheCurrentNodeThenHomeThenTheLowestNumber) {
  auto v = cluster({node(1, 100), node(2, 0), node(3, 0)});
  EXPECT_EQ(choose_best({}, v, 1), 1u);
  EXPECT_EQ(choose_best({}, v, 3), 3u);
  v[0].load = 500;
  EXPECT_EQ(choose_best({}, v, 1), 2u);
}

TEST(Placement, FlagsAndReasonsReadAsMosrunAndMospsSayThem) {
  Placement p;
  EXPECT_EQ(p.flags(), "");
  p.mobility = Mobility::manual_only;
  p.tag = "gpu";
  p.mem_mb = 512;
  EXPECT_EQ(p.flags(), "-L -t gpu -m 512");
  EXPECT_FALSE(p.policy_may_move());
  EXPECT_TRUE(p.user_may_move());
  p.mobility = Mobility::stay_home;
  EXPECT_FALSE(p.user_may_move());
  EXPECT_EQ((Reason{Why::tag, "gpu"}.text()), "tag:gpu");
  EXPECT_EQ((Reason{Why::policy, "load"}.text()), "policy:load");
  EXPECT_EQ((Reason{Why::pinned, {}}.text()), "pinned");
}

TEST(Placement, EncodesAndRefusesAnUnknownMobility) {
  Placement p;
  p.mobility = Mobility::stay_home;
  p.tag = "bigmem";
  p.mem_mb = 77;
  p.start_node = 4;
  p.start_best = true;
  wire::Writer w;
  encode(w, p);
  auto bytes = w.take();
  wire::Reader r(bytes);
  Placement q = decode(r);
  EXPECT_EQ(q.flags(), p.flags());
  EXPECT_EQ(q.start_node, 4u);
  bytes[0] = std::byte{9};
  wire::Reader bad(bytes);
  EXPECT_THROW(decode(bad), wire::DecodeError);
}

TEST(Placements, JobsAndMovesGiveEachProcessItsReason) {
  home::Placements book;
  Placement pinned;
  pinned.mobility = Mobility::manual_only;
  book.set_job(1, pinned);
  book.set_job(2, {});
  EXPECT_EQ(book.reason(1, 100, false).text(), "pinned");
  EXPECT_EQ(book.reason(2, 200, false).text(), "home");
  EXPECT_EQ(book.reason(2, 200, true).text(), "user");  // away, no reason recorded: moved by hand
  book.moving(200, {Why::policy, "load"});
  EXPECT_EQ(book.reason(2, 200, true).text(), "policy:load");
  // mosrun's start move keeps its reason; another move is the user's.
  book.starting(300, 3, {Why::tag, "gpu"});
  EXPECT_EQ(book.take_reason(300, 3, {Why::user, {}}).text(), "tag:gpu");
  EXPECT_EQ(book.take_reason(300, 3, {Why::user, {}}).text(), "user");
  book.retain({{1, 100, "a", 0, 'R'}});
  EXPECT_EQ(book.of_job(1).mobility, Mobility::manual_only);
  EXPECT_EQ(book.of_job(2).mobility, Mobility::may_move);  // forgotten: the defaults
  EXPECT_EQ(book.reason(2, 200, true).text(), "user");
}

}  // namespace
}  // namespace roam::placement
