// migrate: move a running roam process to another node, or bring it home.
//
//   migrate PID NODE|home|best [--async]
//
// Asks this node's mosd, which checks the request and starts the process's
// home agent; then asks that agent, which does the move and answers with
// one line. Exit 0 when the process is where it was asked to be (or, with
// --async, when the move started), 1 with the reason when it is not: the
// process then keeps running where it was.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "roam/migrate_client.hpp"

int main(int argc, char** argv) {
  CLI::App app{"migrate: move a running roam process to another node (MOSIX's migrate)"};
  int pid = 0;
  std::string target;
  bool async = false;
  app.add_option("pid", pid, "the process (a roam job of this node)")->required();
  app.add_option("target", target, "a node number, nodeN, home, or best (the least-loaded node that fits the job)")->required();
  app.add_flag("--async", async, "return as soon as the move has started");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::fprintf(stderr, "migrate: %s (see migrate --help)\n", e.what());
    return 2;
  }
  try {
    roam::MoveAnswer a = roam::request_move(pid, target, async);
    if (!a.ok) {
      std::fprintf(stderr, "migrate: %s\n", a.message.c_str());
      return 1;
    }
    std::printf("%s\n", a.message.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "migrate: %s\n", e.what());
    return 1;
  }
}
