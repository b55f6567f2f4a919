// mosctl: node and cluster control. Each group of subcommands lives in its
// own *_cmd.cpp and is added here; a failure a user can fix prints one line
// "mosctl: ..." and exits 1.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>

#include "roam/error.hpp"

namespace roam::mosctl {
void add_cluster_commands(CLI::App& app);  // cluster_cmd.cpp
void add_node_commands(CLI::App& app);     // node_cmd.cpp
}  // namespace roam::mosctl

int main(int argc, char** argv) {
  CLI::App app{"mosctl: node and cluster control"};
  app.require_subcommand(1);
  roam::mosctl::add_cluster_commands(app);
  roam::mosctl::add_node_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::RuntimeError& e) {
    return e.get_exit_code();  // a subcommand's own status (cluster exec)
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::fprintf(stderr, "mosctl: %s (see mosctl --help)\n", e.what());
    return 1;
  } catch (const roam::UserError& e) {
    std::fprintf(stderr, "mosctl: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mosctl: %s\n", e.what());
    return 1;
  }
  return 0;
}
