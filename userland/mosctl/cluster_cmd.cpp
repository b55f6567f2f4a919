// `mosctl cluster ...`: flags in, roam::cluster calls, lines out.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "roam/error.hpp"
#include "roam/local_cluster.hpp"

namespace roam::mosctl {
namespace {

namespace cluster = roam::cluster;

void add_dir_option(CLI::App* sub, std::string& dir) {
  sub->add_option("--dir", dir, fmt::format("cluster directory (default ${}, else {})", cluster::kDirEnv,
                                            cluster::kDefaultDir));
}

std::pair<std::string, std::string> split_setting(const std::string& text) {
  auto eq = text.find('=');
  if (eq == std::string::npos)
    throw UserError(fmt::format("--set '{}' is not KEY=VALUE (e.g. --set gossip.step_ms=200)", text));
  return {text.substr(0, eq), text.substr(eq + 1)};
}

void print_status(const cluster::ClusterStatus& cs) {
  const auto& nodes = cs.nodes;
  std::printf("%-7s %-8s %-6s %-8s %-9s %-16s %-6s %s\n", "NODE", "INIT-PID", "INIT", "MOSD-PID", "MOSD", "ADDRESS", "CPUS",
              "MEMORY");
  for (const auto& n : nodes) {
    std::string mosd_pid = n.mosd_alive ? std::to_string(n.mosd_pid ? n.mosd_pid : n.mosd_node_pid) : "-";
    const char* mosd = !n.mosd_alive ? "down" : n.mosd_socket ? "up" : "starting";
    std::string address = fmt::format("{}:{}", n.address, n.port);
    std::string memory = n.mem_limit_mb > 0 ? fmt::format("{} MiB", n.mem_limit_mb) : "all";
    std::printf("%-7s %-8d %-6s %-8s %-9s %-16s %-6s %s\n", cluster::node_name(n.node).c_str(), n.init_pid,
                n.init_alive ? "alive" : "dead", mosd_pid.c_str(), mosd, address.c_str(),
                n.cpus.empty() ? "all" : n.cpus.c_str(), memory.c_str());
  }
  if (cs.phase != "up")
    std::printf("(mosctl cluster up has not finished: it is still running, or it was killed; 'mosctl cluster down' "
                "cleans up)\n");
  if (!cs.bridge_alive)
    std::printf("(the bridge holder, pid %d, is gone: the nodes have no network)\n", cs.bridge_pid);
}

void print_status_json(const cluster::ClusterStatus& cs) {
  nlohmann::json j;
  j["dir"] = cs.dir.string();
  j["phase"] = cs.phase;
  j["bridge_pid"] = cs.bridge_pid;
  j["bridge_alive"] = cs.bridge_alive;
  j["nodes"] = nlohmann::json::array();
  for (const auto& n : cs.nodes) {
    j["nodes"].push_back({{"node", n.node},
                          {"name", cluster::node_name(n.node)},
                          {"init_pid", n.init_pid},
                          {"init_alive", n.init_alive},
                          {"mosd_pid", n.mosd_alive ? nlohmann::json(n.mosd_pid) : nlohmann::json()},
                          {"mosd_node_pid", n.mosd_alive ? nlohmann::json(n.mosd_node_pid) : nlohmann::json()},
                          {"mosd_alive", n.mosd_alive},
                          {"mosd_socket", n.mosd_socket},
                          {"address", n.address},
                          {"port", n.port},
                          {"cpus", n.cpus.empty() ? nlohmann::json() : nlohmann::json(n.cpus)},
                          {"mem_limit_mb", n.mem_limit_mb > 0 ? nlohmann::json(n.mem_limit_mb) : nlohmann::json()}});
  }
  std::printf("%s\n", j.dump(2).c_str());
}

}  // namespace

void add_cluster_commands(CLI::App& app) {
  CLI::App* cl = app.add_subcommand("cluster", "a local cluster: N nodes in namespaces on this machine");
  cl->require_subcommand(1);

  {
    auto* sub = cl->add_subcommand("up", "start a local cluster of N nodes, each running its own mosd");
    auto opt = std::make_shared<cluster::UpOptions>();
    auto dir = std::make_shared<std::string>(cluster::default_dir().string());
    auto mosd = std::make_shared<std::string>();
    auto settings = std::make_shared<std::vector<std::string>>();
    auto tags = std::make_shared<std::vector<std::string>>();
    auto no_wait = std::make_shared<bool>(false);
    auto timeout_s = std::make_shared<double>(10);
    sub->add_option("-n,--nodes", opt->nodes, "number of nodes (node1..nodeN at 10.77.0.1..N)")->required();
    sub->add_option("--cpus-per-node", opt->cpus_per_node, "pin each node to its own K CPUs (a cpuset)");
    sub->add_option("--mem-per-node", opt->mem_per_node_mb,
                    "limit all of each node's processes to MB MiB of memory, swap included (a memory cgroup)");
    sub->add_option("--mosd", *mosd, "the mosd to run (default: mosd beside this mosctl)");
    sub->add_option("--set", *settings, "an extra cluster.conf setting KEY=VALUE (repeatable)");
    sub->add_option("--tag", *tags, "a tag for a node's map line, I:TAG (repeatable)");
    sub->add_option("--share", opt->shared,
                    "a host folder under /tmp or /dev/shm that every node should see at the same path (repeatable)");
    sub->add_flag("--no-wait", *no_wait, "do not wait for every mosd's control socket");
    sub->add_option("--wait-timeout", *timeout_s, "seconds to wait for the control sockets")->capture_default_str();
    add_dir_option(sub, *dir);
    sub->callback([=] {
      opt->dir = *dir;
      opt->mosd = *mosd;
      for (auto& p : opt->shared) p = std::filesystem::absolute(p).lexically_normal();
      for (const auto& s : *settings) opt->settings.push_back(split_setting(s));
      for (const auto& t : *tags) {
        auto colon = t.find(':');
        int n = 0;
        if (colon == std::string::npos || std::sscanf(t.substr(0, colon).c_str(), "%d", &n) != 1 || n < 1 ||
            n > opt->nodes || colon + 1 == t.size())
          throw UserError(fmt::format("--tag {}: expected I:TAG with I a node of 1..{}", t, opt->nodes));
        opt->tags.emplace_back(n, t.substr(colon + 1));
      }
      opt->wait_for_mosd = !*no_wait;
      opt->wait_timeout = std::chrono::milliseconds(static_cast<int64_t>(*timeout_s * 1000));
      cluster::up(*opt);
      std::printf("cluster of %d node%s up in %s (node1..node%d at %s..%s)\n", opt->nodes, opt->nodes == 1 ? "" : "s",
                  std::filesystem::absolute(*dir).lexically_normal().c_str(), opt->nodes,
                  cluster::node_address(1).c_str(), cluster::node_address(opt->nodes).c_str());
    });
  }

  {
    auto* sub = cl->add_subcommand("down", "stop every node and remove all the cluster made");
    auto dir = std::make_shared<std::string>(cluster::default_dir().string());
    add_dir_option(sub, *dir);
    sub->callback([=] {
      auto report = cluster::down(*dir);
      for (const auto& w : report.warnings) std::fprintf(stderr, "mosctl: %s\n", w.c_str());
      if (!report.found)
        std::printf("no cluster is up in %s\n", dir->c_str());
      else
        std::printf("cluster in %s is down (%d running node%s stopped)\n", dir->c_str(), report.nodes,
                    report.nodes == 1 ? "" : "s");
      if (!report.warnings.empty()) throw CLI::RuntimeError(1);
    });
  }

  {
    auto* sub = cl->add_subcommand("status", "one line per node: init, mosd, address, CPUs, memory limit");
    auto dir = std::make_shared<std::string>(cluster::default_dir().string());
    auto json = std::make_shared<bool>(false);
    sub->add_flag("--json", *json, "print JSON");
    add_dir_option(sub, *dir);
    sub->callback([=] {
      auto cs = cluster::status(*dir);
      if (*json)
        print_status_json(cs);
      else
        print_status(cs);
    });
  }

  {
    auto* sub = cl->add_subcommand("exec", "run a command inside a node: mosctl cluster exec NODE -- CMD ARGS...");
    auto dir = std::make_shared<std::string>(cluster::default_dir().string());
    auto node = std::make_shared<std::string>();
    auto command = std::make_shared<std::vector<std::string>>();
    sub->add_option("node", *node, "nodeI or I")->required();
    sub->add_option("command", *command, "the command and its arguments (after --)")->required();
    add_dir_option(sub, *dir);
    sub->callback([=] {
      int status = cluster::exec(*dir, cluster::parse_node(*node), *command);
      std::fflush(stdout);
      throw CLI::RuntimeError(status);
    });
  }

  {
    auto* sub = cl->add_subcommand("stop", "kill a node's mosd (SIGKILL); the node stays up");
    auto dir = std::make_shared<std::string>(cluster::default_dir().string());
    auto node = std::make_shared<std::string>();
    sub->add_option("node", *node, "nodeI or I")->required();
    add_dir_option(sub, *dir);
    sub->callback([=] {
      int n = cluster::parse_node(*node);
      auto pid = cluster::stop_mosd(*dir, n);
      if (pid)
        std::printf("%s: mosd (pid %d) killed\n", cluster::node_name(n).c_str(), *pid);
      else
        std::printf("%s: mosd was not running\n", cluster::node_name(n).c_str());
    });
  }

  {
    auto* sub = cl->add_subcommand("start", "start a new mosd in a node whose mosd was stopped");
    auto dir = std::make_shared<std::string>(cluster::default_dir().string());
    auto node = std::make_shared<std::string>();
    auto no_wait = std::make_shared<bool>(false);
    auto timeout_s = std::make_shared<double>(10);
    sub->add_option("node", *node, "nodeI or I")->required();
    sub->add_flag("--no-wait", *no_wait, "do not wait for mosd's control socket");
    sub->add_option("--wait-timeout", *timeout_s, "seconds to wait for the control socket")->capture_default_str();
    add_dir_option(sub, *dir);
    sub->callback([=] {
      int n = cluster::parse_node(*node);
      pid_t pid = cluster::start_mosd(*dir, n, !*no_wait,
                                      std::chrono::milliseconds(static_cast<int64_t>(*timeout_s * 1000)));
      std::printf("%s: mosd started (pid %d)\n", cluster::node_name(n).c_str(), pid);
    });
  }
}

}  // namespace roam::mosctl
