// migrate: move a running roam process to another node, or bring it home.
//
//   migrate PID NODE|home [--async]
//
// Asks this node's mosd, which checks the request and starts the process's
// home agent; then asks that agent, which does the move and answers with
// one line. Exit 0 when the process is where it was asked to be (or, with
// --async, when the move started), 1 with the reason when it is not: the
// process then keeps running where it was.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <optional>
#include <thread>

#include "roam/control.hpp"
#include "roam/error.hpp"
#include "roam/mig_messages.hpp"

int main(int argc, char** argv) {
  CLI::App app{"migrate: move a running roam process to another node (MOSIX's migrate)"};
  int pid = 0;
  std::string target;
  bool async = false;
  app.add_option("pid", pid, "the process (a roam job of this node)")->required();
  app.add_option("target", target, "a node number, nodeN, or home")->required();
  app.add_flag("--async", async, "return as soon as the move has started");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::fprintf(stderr, "migrate: %s (see migrate --help)\n", e.what());
    return 2;
  }
  try {
    roam::msg::MigrateRequest req;
    req.pid = pid;
    req.target = target;
    req.async = async;
    // An agent that just brought its process home may end between mosd's
    // answer and our request: then ask mosd again, which starts a new one.
    for (int attempt = 0;; ++attempt) {
      roam::msg::MigrateReply r;
      {
        roam::ControlClient mosd;
        r = mosd.call<roam::msg::MigrateReply>(req);
      }
      if (r.agent_socket.empty()) {  // nothing to do
        std::printf("%s\n", r.message.c_str());
        return r.ok ? 0 : 1;
      }
      try {
        // The agent may still be starting.
        std::optional<roam::ControlClient> agent;
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        for (;;) {
          try {
            agent.emplace(r.agent_socket);
            break;
          } catch (const roam::UserError&) {
            if (std::chrono::steady_clock::now() > deadline)
              throw roam::UserError("the process's migration agent did not start (see the mosd log)");
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
          }
        }
        req.node = r.node;
        r = agent->call<roam::msg::MigrateReply>(req);
      } catch (const std::exception& e) {
        if (attempt < 5) {
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
          continue;
        }
        throw;
      }
      if (!r.ok) {
        std::fprintf(stderr, "migrate: %s\n", r.message.c_str());
        return 1;
      }
      std::printf("%s\n", r.message.c_str());
      return 0;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "migrate: %s\n", e.what());
    return 1;
  }
}
