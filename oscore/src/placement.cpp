#include "roam/placement.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <tuple>

namespace roam::placement {

std::string Placement::flags() const {
  std::string s;
  auto add = [&](const std::string& f) { s += (s.empty() ? "" : " ") + f; };
  if (mobility == Mobility::stay_home) add("-h");
  if (mobility == Mobility::manual_only) add("-L");
  if (start_node) add(fmt::format("-r {}", start_node));
  if (start_best) add("-b");
  if (!tag.empty()) add("-t " + tag);
  if (mem_mb) add(fmt::format("-m {}", mem_mb));
  return s;
}

void encode(wire::Writer& w, const Placement& p) {
  w.u8(static_cast<uint8_t>(p.mobility));
  w.str(p.tag);
  w.u64(p.mem_mb);
  w.u32(p.start_node);
  w.boolean(p.start_best);
}

Placement decode(wire::Reader& r) {
  Placement p;
  uint8_t m = r.u8();
  if (m > static_cast<uint8_t>(Mobility::stay_home)) throw wire::DecodeError(fmt::format("unknown mobility {}", m));
  p.mobility = static_cast<Mobility>(m);
  p.tag = r.str(256);
  p.mem_mb = r.u64();
  p.start_node = r.u32();
  p.start_best = r.boolean();
  return p;
}

std::string Reason::text() const {
  switch (why) {
    case Why::home: return "home";
    case Why::user: return "user";
    case Why::pinned: return "pinned";
    case Why::tag: return "tag:" + detail;
    case Why::best: return "best";
    case Why::policy: return "policy:" + detail;
  }
  return "?";
}

std::string unfit(const Placement& p, const NodeView& n, uint32_t current) {
  if (!n.self) {
    if (!n.up) return fmt::format("node {} is down or unknown here", n.node);
    if (!n.takes_guests) return fmt::format("node {} takes no guests (mosctl stay)", n.node);
  }
  if (!p.tag.empty() && std::find(n.tags.begin(), n.tags.end(), p.tag) == n.tags.end())
    return fmt::format("node {} lacks tag {} (mosrun -t {})", n.node, p.tag, p.tag);
  if (p.mem_mb && n.node != current && n.free_mem < (p.mem_mb << 20))
    return fmt::format("node {} has {} MB free, the job needs {} MB (mosrun -m)", n.node, n.free_mem >> 20, p.mem_mb);
  return {};
}

uint32_t load_with_one_more(const NodeView& n) {
  uint64_t share = 100ull * 10000 / (std::max<uint64_t>(1, n.speed) * std::max<uint16_t>(1, n.ncpus));
  return static_cast<uint32_t>(std::min<uint64_t>(UINT32_MAX, n.load + std::max<uint64_t>(1, share)));
}

std::optional<uint32_t> choose_best(const Placement& p, std::span<const NodeView> nodes, uint32_t current,
                                    std::string* why_none) {
  // Ranked by (expected load, not current, not home, number): smallest wins.
  std::optional<std::tuple<uint32_t, bool, bool, uint32_t>> best;
  std::string first_reason;
  for (const NodeView& n : nodes) {
    if (std::string why = unfit(p, n, current); !why.empty()) {
      if (first_reason.empty()) first_reason = why;
      continue;
    }
    auto rank = std::make_tuple(n.node == current ? n.load : load_with_one_more(n), n.node != current, !n.self, n.node);
    if (!best || rank < *best) best = rank;
  }
  if (best) return std::get<3>(*best);
  if (why_none) {
    std::string want;
    if (!p.tag.empty()) want += " with tag " + p.tag;
    if (p.mem_mb) want += fmt::format("{}with {} MB free", want.empty() ? " " : " and ", p.mem_mb);
    *why_none = fmt::format("no node{} can take it ({})", want, first_reason.empty() ? "no node known" : first_reason);
  }
  return std::nullopt;
}

}  // namespace roam::placement
