// mosps: the roam processes of this node, where they are and why.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "roam/control.hpp"
#include "roam/error.hpp"

int main(int argc, char** argv) {
  CLI::App app{"mosps: list this node's roam processes"};
  bool json = false;
  app.add_flag("--json", json, "print JSON for scripts");
  CLI11_PARSE(app, argc, argv);
  try {
    roam::ControlClient mosd;
    auto r = mosd.call<roam::msg::PsReply>(roam::msg::PsRequest{});
    if (json) {
      nlohmann::json out = nlohmann::json::array();
      for (auto& p : r.procs)
        out.push_back({{"pid", p.pid}, {"job", p.job}, {"home", p.home}, {"where", p.where}, {"state", p.state},
                       {"reason", p.reason}, {"rss", p.rss}, {"command", p.command}});
      std::printf("%s\n", out.dump(2).c_str());
      return 0;
    }
    std::printf("%7s %5s %-7s %-7s %-6s %9s  %-30s %s\n", "PID", "JOB", "HOME", "WHERE", "STATE", "RSS", "WHY", "COMMAND");
    for (auto& p : r.procs)
      std::printf("%7d %5llu %-7s %-7s %-6s %8lluK  %-30s %s\n", p.pid, static_cast<unsigned long long>(p.job),
                  ("node" + std::to_string(p.home)).c_str(), ("node" + std::to_string(p.where)).c_str(), p.state.c_str(),
                  static_cast<unsigned long long>(p.rss / 1024), p.reason.c_str(), p.command.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mosps: %s\n", e.what());
    return 1;
  }
}
