// mosmon: every node's load, free memory and information age, as this node
// knows them. Live (ncurses) by default; --once prints one table for scripts.
#include <curses.h>
#include <poll.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "roam/control.hpp"
#include "roam/error.hpp"

namespace {

using roam::msg::StatusReply;

std::string mib(uint64_t bytes) { return fmt::format("{}M", bytes >> 20); }

std::vector<std::string> render(const StatusReply& r) {
  std::vector<std::string> lines;
  lines.push_back(fmt::format("roam cluster as seen from node{} ({}): gossip every {} ms, window {}, down after {} steps",
                              r.self, r.hostname, r.step_ms, r.window, r.down_after_steps));
  if (!r.policy.empty()) lines.push_back("policies: " + r.policy);
  lines.push_back(fmt::format("{:<8} {:<16} {:<9} {:>6} {:>4} {:>9} {:>9} {:>5} {:>6} {:>9}  {}", "NODE", "ADDRESS",
                              "STATUS", "LOAD", "CPUS", "FREE", "TOTAL", "PROCS", "GUESTS", "AGE", "TAGS"));
  for (auto& n : r.nodes) {
    std::string tags;
    for (auto& t : n.tags) tags += (tags.empty() ? "" : ",") + t;
    std::string status = n.self ? "self" : !n.known ? "?" : n.up ? "up" : "down";
    if (n.known && (n.info.flags & roam::msg::kNodeNoGuests)) status += ",stay";  // mosctl stay
    if (!n.known) {
      lines.push_back(fmt::format("{:<8} {:<16} {:<9} {:>6} {:>4} {:>9} {:>9} {:>5} {:>6} {:>9}  {}",
                                  fmt::format("node{}", n.node), n.address, status, "-", "-", "-", "-", "-", "-", "never",
                                  tags));
      continue;
    }
    lines.push_back(fmt::format("{:<8} {:<16} {:<9} {:>6.2f} {:>4} {:>9} {:>9} {:>5} {:>6} {:>8.1f}s  {}",
                                fmt::format("node{}", n.node), n.address, status, n.info.load / 100.0, n.info.ncpus,
                                mib(n.info.free_mem), mib(n.info.total_mem), n.info.procs, n.info.guests,
                                n.age_ms / 1000.0, tags));
  }
  return lines;
}

nlohmann::json to_json(const StatusReply& r) {
  nlohmann::json nodes = nlohmann::json::array();
  for (auto& n : r.nodes) {
    nlohmann::json j = {{"node", n.node}, {"name", fmt::format("node{}", n.node)}, {"address", n.address},
                        {"tags", n.tags}, {"self", n.self}, {"known", n.known}, {"up", n.up || n.self}};
    if (n.known) {
      j["age_ms"] = n.age_ms;
      j["load"] = n.info.load / 100.0;
      j["free_mem"] = n.info.free_mem;
      j["total_mem"] = n.info.total_mem;
      j["ncpus"] = n.info.ncpus;
      j["speed"] = n.info.speed;
      j["procs"] = n.info.procs;
      j["guests"] = n.info.guests;
      j["takes_guests"] = (n.info.flags & roam::msg::kNodeNoGuests) == 0;
    }
    nodes.push_back(j);
  }
  return {{"self", r.self}, {"hostname", r.hostname}, {"step_ms", r.step_ms}, {"window", r.window},
          {"down_after_steps", r.down_after_steps}, {"uptime_ms", r.uptime_ms}, {"gossip_sent", r.gossip_sent},
          {"gossip_received", r.gossip_received}, {"refused", r.rejected}, {"policy", r.policy}, {"nodes", nodes}};
}

int live(unsigned interval_ms) {
  initscr();
  cbreak();
  noecho();
  curs_set(0);
  int rc = 0;
  for (;;) {
    erase();
    try {
      roam::ControlClient mosd;
      auto lines = render(mosd.call<StatusReply>(roam::msg::StatusRequest{}));
      for (size_t i = 0; i < lines.size() && static_cast<int>(i) < LINES - 1; ++i) mvaddnstr(static_cast<int>(i), 0, lines[i].c_str(), COLS);
    } catch (const std::exception& e) {
      mvaddnstr(0, 0, e.what(), COLS);
    }
    mvaddstr(LINES - 1, 0, "q: quit");
    refresh();
    pollfd p{0, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(interval_ms)) > 0) {
      int c = getch();
      if (c == 'q' || c == 'Q' || c == ERR) break;
    }
  }
  endwin();
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mosmon: load, free memory and information age of every node"};
  bool once = false, json = false;
  unsigned interval = 1000;
  app.add_flag("--once", once, "print once and exit");
  app.add_flag("--json", json, "with --once: print JSON");
  app.add_option("--interval", interval, "refresh period in ms (live view)")->check(CLI::Range(100u, 60000u));
  CLI11_PARSE(app, argc, argv);
  if (json && !once) {
    std::fprintf(stderr, "mosmon: --json needs --once\n");
    return 2;
  }
  if (!once) {
    if (!isatty(STDOUT_FILENO)) {
      std::fprintf(stderr, "mosmon: standard output is not a terminal; use --once for scripts\n");
      return 2;
    }
    return live(interval);
  }
  try {
    roam::ControlClient mosd;
    auto r = mosd.call<StatusReply>(roam::msg::StatusRequest{});
    if (json) {
      std::printf("%s\n", to_json(r).dump(2).c_str());
    } else {
      for (auto& l : render(r)) std::printf("%s\n", l.c_str());
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mosmon: %s\n", e.what());
    return 1;
  }
}
