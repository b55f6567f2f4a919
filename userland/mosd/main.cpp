// mosd: the roam daemon of one node. Flags only; the work is in Daemon.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "daemon.hpp"
#include "roam/error.hpp"
#include "roam/log.hpp"

int main(int argc, char** argv) {
  CLI::App app{"mosd: the roam node daemon (information service, job tracking, peer links)"};
  roam::mosd::Options o;
  std::string level = "info";
  bool check_only = false;
  app.add_option("--config", o.config, "cluster map")->capture_default_str();
  app.add_option("--key", o.key, "cluster key file (64 hex digits, mode 600)")->capture_default_str();
  app.add_option("--state-dir", o.state_dir, "runtime directory (control socket, pid file)")->capture_default_str();
  app.add_option("--node", o.node, "this node's number (default: found from this machine's addresses)");
  app.add_option("--log-level", level, "debug, info, warn or error")->check(CLI::IsMember({"debug", "info", "warn", "error"}))->capture_default_str();
  app.add_flag("--check", check_only, "check the map and key, print this node's number, and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::fprintf(stderr, "mosd: %s (see mosd --help)\n", e.what());
    return 2;
  }
  roam::set_log_level(level == "debug" ? roam::LogLevel::debug : level == "warn" ? roam::LogLevel::warn
                                                               : level == "error" ? roam::LogLevel::error
                                                                                  : roam::LogLevel::info);
  try {
    if (check_only) {
      auto cfg = roam::load_cluster_config(o.config);
      roam::load_cluster_key(o.key);
      std::printf("%s: %zu nodes; key ok\n", o.config.c_str(), cfg.nodes.size());
      return 0;
    }
    roam::mosd::Daemon daemon(o);
    return daemon.run();
  } catch (const roam::UserError& e) {
    std::fprintf(stderr, "mosd: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mosd: fatal: %s\n", e.what());
    return 1;
  }
}
