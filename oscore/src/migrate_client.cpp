#include "roam/migrate_client.hpp"

#include <chrono>
#include <optional>
#include <thread>

#include "roam/control.hpp"
#include "roam/error.hpp"
#include "roam/mig_messages.hpp"

namespace roam {

MoveAnswer request_move(pid_t pid, const std::string& target, bool async) {
  msg::MigrateRequest req;
  req.pid = pid;
  req.target = target;
  req.async = async;
  // An agent that just brought its process home may end between mosd's
  // answer and our request: then ask mosd again, which starts a new one.
  for (int attempt = 0;; ++attempt) {
    msg::MigrateReply r;
    {
      ControlClient mosd;
      r = mosd.call<msg::MigrateReply>(req);
    }
    if (r.agent_socket.empty()) return {r.ok, r.message};  // nothing to do
    try {
      // The agent may still be starting.
      std::optional<ControlClient> agent;
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      for (;;) {
        try {
          agent.emplace(r.agent_socket);
          break;
        } catch (const UserError&) {
          if (std::chrono::steady_clock::now() > deadline)
            throw UserError("the process's migration agent did not start (see the mosd log)");
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
      }
      req.node = r.node;
      r = agent->call<msg::MigrateReply>(req);
    } catch (const std::exception&) {
      if (attempt < 5) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        continue;
      }
      throw;
    }
    return {r.ok, r.message};
  }
}

}  // namespace roam
