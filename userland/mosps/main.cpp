// mosps: the roam processes of this node, where they are and why; with
// --guests, the bodies of other nodes' processes running here.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "roam/control.hpp"
#include "roam/error.hpp"

namespace {

int list_guests(roam::ControlClient& mosd, bool json) {
  auto r = mosd.call<roam::msg::GuestsReply>(roam::msg::GuestsRequest{});
  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (auto& g : r.guests)
      out.push_back({{"agent", g.agent}, {"home", g.home}, {"home_pid", g.home_pid}, {"body_pid", g.body_pid},
                     {"rss", g.rss}, {"command", g.command}});
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  std::printf("%-7s %8s %7s %7s %9s  %s\n", "HOME", "HOME-PID", "BODY", "AGENT", "RSS", "COMMAND");
  for (auto& g : r.guests)
    std::printf("%-7s %8d %7d %7d %8lluK  %s\n", ("node" + std::to_string(g.home)).c_str(), g.home_pid, g.body_pid,
                g.agent, static_cast<unsigned long long>(g.rss / 1024), g.command.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mosps: list this node's roam processes (or, with --guests, the guests it runs)"};
  bool json = false, guests = false;
  app.add_flag("--json", json, "print JSON for scripts");
  app.add_flag("--guests", guests, "list the bodies of other nodes' processes running here");
  CLI11_PARSE(app, argc, argv);
  try {
    roam::ControlClient mosd;
    if (guests) return list_guests(mosd, json);
    auto r = mosd.call<roam::msg::PsReply>(roam::msg::PsRequest{});
    if (json) {
      nlohmann::json out = nlohmann::json::array();
      for (auto& p : r.procs)
        out.push_back({{"pid", p.pid}, {"job", p.job}, {"home", p.home}, {"where", p.where}, {"state", p.state},
                       {"reason", p.reason}, {"detail", p.detail}, {"placement", p.placement}, {"rss", p.rss},
                       {"command", p.command}});
      std::printf("%s\n", out.dump(2).c_str());
      return 0;
    }
    // WHY and PLACEMENT are as wide as their longest entry, so the columns
    // stay aligned ("home (cannot move: has 2 threads)").
    auto why_of = [](const roam::msg::ProcInfo& p) { return p.detail.empty() ? p.reason : p.reason + " (" + p.detail + ")"; };
    int why_w = 12, place_w = 9;
    for (auto& p : r.procs) {
      why_w = std::max(why_w, static_cast<int>(why_of(p).size()));
      place_w = std::max(place_w, static_cast<int>(p.placement.size()));
    }
    std::printf("%7s %5s %-7s %-7s %-6s %9s  %-*s %-*s %s\n", "PID", "JOB", "HOME", "WHERE", "STATE", "RSS", why_w, "WHY",
                place_w, "PLACEMENT", "COMMAND");
    for (auto& p : r.procs) {
      std::printf("%7d %5llu %-7s %-7s %-6s %8lluK  %-*s %-*s %s\n", p.pid, static_cast<unsigned long long>(p.job),
                  ("node" + std::to_string(p.home)).c_str(), ("node" + std::to_string(p.where)).c_str(), p.state.c_str(),
                  static_cast<unsigned long long>(p.rss / 1024), why_w, why_of(p).c_str(), place_w,
                  p.placement.empty() ? "-" : p.placement.c_str(), p.command.c_str());
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mosps: %s\n", e.what());
    return 1;
  }
}
