// mosctl's node-level subcommands: keygen.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "roam/config.hpp"

namespace roam::mosctl {

void add_node_commands(CLI::App& app) {
  auto* keygen = app.add_subcommand("keygen", "print a new cluster key (64 hex digits) for /etc/roam/cluster.key");
  keygen->callback([] { std::printf("%s\n", generate_key_hex().c_str()); });
}

}  // namespace roam::mosctl
