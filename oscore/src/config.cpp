#include "roam/config.hpp"

#include <arpa/inet.h>
#include <sodium.h>
#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <fmt/format.h>
#include <fstream>
#include <functional>
#include <sstream>

#include "roam/error.hpp"

namespace roam {
namespace {

std::vector<std::string> split_words(const std::string& line) {
  std::vector<std::string> words;
  std::istringstream in(line);
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

std::string trim(std::string s) {
  auto not_space = [](unsigned char c) { return !std::isspace(c); };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
  s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
  return s;
}

bool parse_bool(const std::string& v, bool& out) {
  if (v == "true") out = true;
  else if (v == "false") out = false;
  else return false;
  return true;
}

template <typename T>
bool parse_uint(const std::string& s, T& out, T min, T max) {
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < min || v > max) return false;
  out = static_cast<T>(v);
  return true;
}

bool valid_tag(const std::string& t) {
  return !t.empty() && t.size() <= 64 &&
         std::all_of(t.begin(), t.end(), [](unsigned char c) { return std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == ':'; });
}

// Splits "ADDR[:PORT]" / "[V6]:PORT" / bare V6.
bool split_host_port(const std::string& s, std::string& host, uint16_t& port) {
  if (!s.empty() && s[0] == '[') {
    auto close = s.find(']');
    if (close == std::string::npos) return false;
    host = s.substr(1, close - 1);
    if (close + 1 == s.size()) return true;
    if (s[close + 1] != ':') return false;
    return parse_uint<uint16_t>(s.substr(close + 2), port, 1, 65535);
  }
  auto colon = s.find(':');
  if (colon == std::string::npos || s.find(':', colon + 1) != std::string::npos) {
    host = s;  // no port, or a bare IPv6 address
    return true;
  }
  host = s.substr(0, colon);
  return parse_uint<uint16_t>(s.substr(colon + 1), port, 1, 65535);
}

struct SettingRule {
  const char* key;
  std::function<bool(Settings&, const std::string&)> apply;
  const char* expect;
};

const std::vector<SettingRule>& setting_rules() {
  static const std::vector<SettingRule> rules = {
      {"gossip.step_ms", [](Settings& s, const std::string& v) { return parse_uint<uint32_t>(v, s.gossip_step_ms, 10, 600000); }, "an integer 10..600000"},
      {"gossip.window", [](Settings& s, const std::string& v) { return parse_uint<uint32_t>(v, s.gossip_window, 1, 4096); }, "an integer 1..4096"},
      {"gossip.window_rule", [](Settings& s, const std::string& v) {
         if (v == "freshest") s.window_rule = WindowRule::freshest;
         else if (v == "random") s.window_rule = WindowRule::random;
         else return false;
         return true; }, "freshest or random"},
      {"gossip.target", [](Settings& s, const std::string& v) {
         if (v == "any") s.target_rule = TargetRule::any;
         else if (v == "alive") s.target_rule = TargetRule::alive;
         else return false;
         return true; }, "any or alive"},
      {"gossip.down_after_steps", [](Settings& s, const std::string& v) { return parse_uint<uint32_t>(v, s.down_after_steps, 2, 100000); }, "an integer 2..100000"},
      {"load.sample_ms", [](Settings& s, const std::string& v) { return parse_uint<uint32_t>(v, s.load_sample_ms, 10, 60000); }, "an integer 10..60000"},
      {"node.speed", [](Settings& s, const std::string& v) { return parse_uint<uint32_t>(v, s.speed, 1, 1000000); }, "an integer 1..1000000"},
      {"net.connect_timeout_ms", [](Settings& s, const std::string& v) { return parse_uint<uint32_t>(v, s.connect_timeout_ms, 10, 600000); }, "an integer 10..600000"},
      {"migrate.link_timeout_ms", [](Settings& s, const std::string& v) { return parse_uint<uint32_t>(v, s.link_timeout_ms, 100, 3600000); }, "an integer 100..3600000"},
      {"migrate.seal_pages", [](Settings& s, const std::string& v) { return parse_bool(v, s.seal_pages); }, "true or false"},
      {"net.max_frame", [](Settings& s, const std::string& v) { return parse_uint<uint32_t>(v, s.max_frame, 4096, 1u << 30); }, "an integer 4096..1073741824"},
      {"policy.balance", [](Settings& s, const std::string& v) { return parse_bool(v, s.policy.balance); }, "true or false"},
      {"policy.usher", [](Settings& s, const std::string& v) { return parse_bool(v, s.policy.usher); }, "true or false"},
      {"policy.step_ms", [](Settings& s, const std::string& v) { return parse_uint<uint32_t>(v, s.policy.step_ms, 50, 3600000); }, "an integer 50..3600000"},
      {"policy.balance_margin", [](Settings& s, const std::string& v) { return parse_uint<uint32_t>(v, s.policy.balance_margin, 1, 100000); }, "an integer 1..100000 (100 = one process per CPU)"},
      {"policy.usher_free_mb", [](Settings& s, const std::string& v) {
         uint32_t mb = 0;
         if (!parse_uint<uint32_t>(v, mb, 0, 1u << 24)) return false;
         s.policy.usher_free_bytes = uint64_t{mb} << 20;
         return true; }, "an integer 0..16777216 (0: 5% of the node's memory)"},
      {"policy.cooldown_ms", [](Settings& s, const std::string& v) { return parse_uint<uint32_t>(v, s.policy.cooldown_ms, 0, 86400000); }, "an integer 0..86400000"},
      {"policy.move_cost_ms", [](Settings& s, const std::string& v) { return parse_uint<uint32_t>(v, s.policy.move_cost_ms, 0, 600000); }, "an integer 0..600000"},
      {"policy.io_home_calls_per_s", [](Settings& s, const std::string& v) { return parse_uint<uint32_t>(v, s.policy.io_home_calls_per_s, 0, 100000000); }, "an integer 0..100000000 (0: off)"},
      {"policy.moves_per_step", [](Settings& s, const std::string& v) { return parse_uint<uint32_t>(v, s.policy.moves_per_step, 1, 64); }, "an integer 1..64"},
      {"policy.settle_ms", [](Settings& s, const std::string& v) { return parse_uint<uint32_t>(v, s.policy.settle_ms, 0, 600000); }, "an integer 0..600000"},
  };
  return rules;
}

}  // namespace

bool NodeSpec::has_tag(const std::string& t) const { return std::find(tags.begin(), tags.end(), t) != tags.end(); }

const NodeSpec* ClusterConfig::find(uint32_t number) const {
  int i = index_of(number);
  return i < 0 ? nullptr : &nodes[static_cast<size_t>(i)];
}

int ClusterConfig::index_of(uint32_t number) const {
  auto it = std::lower_bound(nodes.begin(), nodes.end(), number, [](const NodeSpec& n, uint32_t v) { return n.number < v; });
  if (it == nodes.end() || it->number != number) return -1;
  return static_cast<int>(it - nodes.begin());
}

ClusterConfig parse_cluster_config(const std::string& text, const std::string& source) {
  ClusterConfig cfg;
  cfg.path = source;
  std::istringstream in(text);
  std::string raw;
  int lineno = 0;
  auto fail = [&](const std::string& why) -> UserError { return UserError(fmt::format("{}:{}: {}", source, lineno, why)); };
  while (std::getline(in, raw)) {
    ++lineno;
    std::string line = trim(raw.substr(0, raw.find('#')));
    if (line.empty()) continue;
    // A node line may carry tags with any characters; only other lines can be settings.
    if (auto eq = line.find('='); eq != std::string::npos && split_words(line)[0] != "node") {
      std::string key = trim(line.substr(0, eq)), value = trim(line.substr(eq + 1));
      auto& rules = setting_rules();
      auto rule = std::find_if(rules.begin(), rules.end(), [&](const SettingRule& r) { return key == r.key; });
      if (rule == rules.end()) throw fail(fmt::format("unknown setting '{}'", key));
      if (!rule->apply(cfg.settings, value)) throw fail(fmt::format("bad value '{}' for {}: expected {}", value, key, rule->expect));
      continue;
    }
    auto words = split_words(line);
    if (words[0] != "node") throw fail(fmt::format("expected 'node NUMBER ADDRESS[:PORT] [TAG...]' or 'KEY = VALUE', got '{}'", words[0]));
    if (words.size() < 3) throw fail("a node line needs a number and an address: node NUMBER ADDRESS[:PORT] [TAG...]");
    NodeSpec node;
    node.config_line = lineno;
    if (!parse_uint<uint32_t>(words[1], node.number, 1, 65535)) throw fail(fmt::format("bad node number '{}': expected 1..65535", words[1]));
    if (!split_host_port(words[2], node.address, node.port)) throw fail(fmt::format("bad address '{}': expected ADDRESS[:PORT]", words[2]));
    socklen_t len;
    if (!parse_sockaddr(node.address, node.port, &len)) throw fail(fmt::format("bad address '{}': expected a numeric IPv4 or IPv6 address", node.address));
    for (size_t i = 3; i < words.size(); ++i) {
      if (!valid_tag(words[i])) throw fail(fmt::format("bad tag '{}': letters, digits, '-', '_', '.' and ':' only", words[i]));
      node.tags.push_back(words[i]);
    }
    if (cfg.find(node.number)) throw fail(fmt::format("node {} is listed twice (first at line {})", node.number, cfg.find(node.number)->config_line));
    for (auto& other : cfg.nodes)
      if (other.address == node.address && other.port == node.port)
        throw fail(fmt::format("address {}:{} is already node {}", node.address, node.port, other.number));
    auto pos = std::lower_bound(cfg.nodes.begin(), cfg.nodes.end(), node.number, [](const NodeSpec& n, uint32_t v) { return n.number < v; });
    cfg.nodes.insert(pos, std::move(node));
  }
  if (cfg.nodes.empty()) throw UserError(fmt::format("{}: no 'node' lines: the cluster map lists no node", source));
  return cfg;
}

ClusterConfig load_cluster_config(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw UserError(fmt::format("cannot read cluster map {}: {}", path.string(), std::strerror(errno)));
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_cluster_config(ss.str(), path.string());
}

ClusterKey load_cluster_key(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw UserError(fmt::format("cannot read cluster key {}: {}", path.string(), std::strerror(errno)));
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 077))
    throw UserError(fmt::format("cluster key {} is readable by others (mode {:o}): chmod 600 it", path.string(), st.st_mode & 0777));
  std::string text;
  std::getline(in, text);
  text = trim(text);
  ClusterKey key{};
  size_t bin_len = 0;
  if (text.size() != kKeyBytes * 2 ||
      sodium_hex2bin(key.data(), key.size(), text.data(), text.size(), nullptr, &bin_len, nullptr) != 0 || bin_len != kKeyBytes)
    throw UserError(fmt::format("cluster key {}: expected {} hexadecimal digits (make one with 'mosctl keygen')", path.string(), kKeyBytes * 2));
  return key;
}

std::string generate_key_hex() {
  if (sodium_init() < 0) throw UserError("libsodium failed to initialize");
  ClusterKey key;
  randombytes_buf(key.data(), key.size());
  char hex[kKeyBytes * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, key.data(), key.size());
  sodium_memzero(key.data(), key.size());
  return hex;
}

std::optional<sockaddr_storage> parse_sockaddr(const std::string& address, uint16_t port, socklen_t* len) {
  sockaddr_storage ss{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, address.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    if (len) *len = sizeof(sockaddr_in);
    return ss;
  }
  if (inet_pton(AF_INET6, address.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    if (len) *len = sizeof(sockaddr_in6);
    return ss;
  }
  return std::nullopt;
}

}  // namespace roam
