// The cluster map (/etc/roam/cluster.conf) and the cluster key.
//
// Map format, one statement per line, '#' starts a comment:
//   node NUMBER ADDRESS[:PORT] [TAG ...]     a member node (port default 4660)
//   KEY = VALUE                              a setting (see Settings)
// Every error names file:line and the daemon refuses to start on it.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <netinet/in.h>

#include "roam/policy.hpp"

namespace roam {

inline constexpr uint16_t kDefaultPort = 4660;
inline constexpr size_t kKeyBytes = 32;
using ClusterKey = std::array<unsigned char, kKeyBytes>;

struct NodeSpec {
  uint32_t number = 0;
  std::string address;  // numeric IPv4 or IPv6 as written
  uint16_t port = kDefaultPort;
  std::vector<std::string> tags;
  int config_line = 0;
  bool has_tag(const std::string& t) const;
};

enum class WindowRule { freshest, random };
enum class TargetRule { any, alive };

struct Settings {
  uint32_t gossip_step_ms = 1000;   // one message per node per step
  uint32_t gossip_window = 8;       // entries besides the sender's own
  WindowRule window_rule = WindowRule::freshest;
  TargetRule target_rule = TargetRule::any;
  uint32_t down_after_steps = 20;   // an entry older than this many steps marks its node down
  uint32_t load_sample_ms = 250;    // how often the local load is sampled (smoothed)
  uint32_t speed = 10000;           // this node's relative CPU speed (10000 = reference)
  uint32_t connect_timeout_ms = 2000;
  uint32_t max_frame = 1u << 20;
  // A migrated process's link to its home: silence (no frame, no keepalive)
  // this long, or a broken connection, ends the body and SIGKILLs the deputy.
  uint32_t link_timeout_ms = 10000;
  // Page contents of a moving process: sealed (encrypted and authenticated)
  // like everything else, or only authenticated (the default: several times
  // cheaper; the cluster network sees memory contents).
  bool seal_pages = false;
  // The automatic policies (policy.* settings; see policy.hpp).
  // settle_ms 0: mosd derives it from load_sample_ms (daemon.cpp).
  policy::Settings policy = [] {
    policy::Settings s;
    s.settle_ms = 0;
    return s;
  }();
};

struct ClusterConfig {
  std::filesystem::path path;
  std::vector<NodeSpec> nodes;  // sorted by number
  Settings settings;

  const NodeSpec* find(uint32_t number) const;
  // Index of a node in `nodes` (0..n-1), or -1.
  int index_of(uint32_t number) const;
};

// Throws UserError("FILE:LINE: what is wrong") on the first bad line.
ClusterConfig parse_cluster_config(const std::string& text, const std::string& source_name);
ClusterConfig load_cluster_config(const std::filesystem::path& path);

// The key file holds 64 hexadecimal digits (32 random bytes), optionally
// followed by a newline. It must not be readable by group or others.
ClusterKey load_cluster_key(const std::filesystem::path& path);
std::string generate_key_hex();

// Parses "ADDR" or "ADDR:PORT" / "[V6]:PORT" into a socket address.
std::optional<sockaddr_storage> parse_sockaddr(const std::string& address, uint16_t port, socklen_t* len);

}  // namespace roam
