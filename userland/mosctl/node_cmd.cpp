// mosctl's node-level subcommands: keygen; stay, nostay, expel, bring (this
// node's guests and away processes). On a local cluster they run inside a
// node: mosctl cluster exec N -- mosctl expel.
#include <CLI/CLI.hpp>

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <set>
#include <thread>

#include "roam/config.hpp"
#include "roam/control.hpp"
#include "roam/error.hpp"
#include "roam/migrate_client.hpp"

namespace roam::mosctl {
namespace {

msg::NodeCommandReply node_command(const std::string& op) {
  ControlClient mosd;
  return mosd.call<msg::NodeCommandReply>(msg::NodeCommand{op});
}

// Every guest goes home; waits until they are gone (they move one by one).
void expel(int timeout_s) {
  std::set<int32_t> agents;
  {
    ControlClient mosd;
    for (const auto& g : mosd.call<msg::GuestsReply>(msg::GuestsRequest{}).guests) agents.insert(g.agent);
  }
  msg::NodeCommandReply r = node_command("expel");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  for (;;) {
    size_t left = 0;
    {
      ControlClient mosd;
      for (const auto& g : mosd.call<msg::GuestsReply>(msg::GuestsRequest{}).guests) left += agents.contains(g.agent);
    }
    if (left == 0) break;
    if (std::chrono::steady_clock::now() > deadline)
      throw UserError(fmt::format("{} of the guests still here after {} s (see the mosd log)", left, timeout_s));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::printf("%s\n", r.message.c_str());
}

// Every process of this node that is away comes home, one after the other.
void bring() {
  msg::PsReply ps;
  {
    ControlClient mosd;
    ps = mosd.call<msg::PsReply>(msg::PsRequest{});
  }
  unsigned brought = 0, failed = 0;
  for (const auto& p : ps.procs) {
    if (p.state != "away") continue;
    MoveAnswer a;
    try {
      a = request_move(p.pid, "home", false);
    } catch (const std::exception& e) {
      a = {false, e.what()};
    }
    if (a.ok) {
      ++brought;
    } else {
      ++failed;
      std::fprintf(stderr, "mosctl: process %d stays at node %u: %s\n", p.pid, p.where, a.message.c_str());
    }
  }
  std::printf("node %u: %u process%s brought home\n", ps.self, brought, brought == 1 ? "" : "es");
  if (failed) throw CLI::RuntimeError(1);
}

}  // namespace

void add_node_commands(CLI::App& app) {
  auto* keygen = app.add_subcommand("keygen", "print a new cluster key (64 hex digits) for /etc/roam/cluster.key");
  keygen->callback([] { std::printf("%s\n", generate_key_hex().c_str()); });

  app.add_subcommand("stay", "this node takes no new guests (other nodes' processes) until nostay")->callback([] {
    std::printf("%s\n", node_command("stay").message.c_str());
  });
  app.add_subcommand("nostay", "this node takes guests again")->callback([] {
    std::printf("%s\n", node_command("nostay").message.c_str());
  });
  auto* ex = app.add_subcommand("expel", "send every guest on this node home, and wait until they left");
  static int timeout_s = 60;
  ex->add_option("--timeout", timeout_s, "seconds to wait for the guests to leave")->check(CLI::Range(1, 3600));
  ex->callback([] { expel(timeout_s); });
  app.add_subcommand("bring", "bring home every process of this node that is away")->callback([] { bring(); });
}

}  // namespace roam::mosctl
