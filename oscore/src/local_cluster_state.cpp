// DIR/state: what up() made, so that later commands (and down() after a
// crash) can find it. JSON, written atomically.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "local_cluster_detail.hpp"
#include "roam/error.hpp"
#include "roam/local_cluster.hpp"

namespace roam::cluster::detail {
namespace {

constexpr int kStateVersion = 1;

nlohmann::json to_json(const ProcessRef& p) { return {{"pid", p.pid}, {"start_time", p.start_time}}; }

ProcessRef process_from_json(const nlohmann::json& j) {
  if (j.is_null()) return {};
  return ProcessRef{j.at("pid").get<pid_t>(), j.at("start_time").get<uint64_t>()};
}

}  // namespace

std::string State::fmt_node(int node) { return node_name(node); }

const NodeRecord* State::find(int node) const {
  for (const auto& r : node_records)
    if (r.node == node) return &r;
  return nullptr;
}

std::vector<fs::path> State::node_cgroups(int node) const {
  std::vector<fs::path> out{node_cgroup(node)};
  for (fs::path p : {node_cpuset_cgroup(node), node_memory_cgroup(node)})
    if (!p.empty()) out.push_back(p);
  return out;
}

fs::path state_file(const fs::path& dir) { return dir / "state"; }

std::optional<State> load_state(const fs::path& dir) {
  std::ifstream in(state_file(dir));
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  try {
    auto j = nlohmann::json::parse(text.str());
    if (j.at("version").get<int>() != kStateVersion)
      throw UserError(fmt::format("{} was written by another version of mosctl (state version {}, this one reads {})",
                                  state_file(dir).string(), j.at("version").get<int>(), kStateVersion));
    State s;
    s.dir = j.at("dir").get<std::string>();
    s.phase = j.at("phase").get<std::string>();
    s.nodes = j.at("nodes").get<int>();
    s.cpus_per_node = j.at("cpus_per_node").get<int>();
    s.mosd = j.at("mosd").get<std::string>();
    s.cgroup = j.at("cgroup").get<std::string>();
    s.cpuset_cgroup = j.at("cpuset_cgroup").get<std::string>();
    // Absent from the state of a cluster brought up before memory limits existed.
    s.mem_per_node_mb = j.value("mem_per_node_mb", 0);
    s.memory_cgroup = j.value("memory_cgroup", std::string());
    s.enabled_root_memory = j.value("enabled_root_memory", false);
    s.made_node_state_dir = j.at("made_node_state_dir").get<bool>();
    s.enabled_root_cpuset = j.value("enabled_root_cpuset", false);
    s.bridge = process_from_json(j.at("bridge"));
    for (const auto& n : j.at("node_records")) {
      NodeRecord r;
      r.node = n.at("node").get<int>();
      r.init = process_from_json(n.at("init"));
      r.cpus = n.at("cpus").get<std::string>();
      s.node_records.push_back(r);
    }
    return s;
  } catch (const nlohmann::json::exception& e) {
    throw UserError(fmt::format("{} is damaged ({}); run 'mosctl cluster down' to clean up", state_file(dir).string(),
                                e.what()));
  }
}

State load_state_or_fail(const fs::path& dir) {
  auto s = load_state(dir);
  if (!s) throw UserError(fmt::format("no cluster is up in {} (start one with 'mosctl cluster up -n N')", dir.string()));
  return *s;
}

void save_state(const State& s) {
  nlohmann::json j;
  j["version"] = kStateVersion;
  j["dir"] = s.dir.string();
  j["phase"] = s.phase;
  j["nodes"] = s.nodes;
  j["cpus_per_node"] = s.cpus_per_node;
  j["mosd"] = s.mosd.string();
  j["cgroup"] = s.cgroup.string();
  j["cpuset_cgroup"] = s.cpuset_cgroup.string();
  j["mem_per_node_mb"] = s.mem_per_node_mb;
  j["memory_cgroup"] = s.memory_cgroup.string();
  j["enabled_root_memory"] = s.enabled_root_memory;
  j["made_node_state_dir"] = s.made_node_state_dir;
  j["enabled_root_cpuset"] = s.enabled_root_cpuset;
  j["bridge"] = s.bridge.empty() ? nlohmann::json() : to_json(s.bridge);
  j["node_records"] = nlohmann::json::array();
  for (const auto& r : s.node_records)
    j["node_records"].push_back({{"node", r.node}, {"init", to_json(r.init)}, {"cpus", r.cpus}});
  std::string text = j.dump(2) + "\n";
  fs::path tmp = state_file(s.dir).string() + ".tmp";
  FileDesc fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) throw SysError(fmt::format("create {}", tmp.string()), errno);
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
    throw SysError(fmt::format("write {}", tmp.string()), errno);
  if (::fsync(fd.get()) < 0) throw SysError(fmt::format("fsync {}", tmp.string()), errno);
  fd.reset();
  if (::rename(tmp.c_str(), state_file(s.dir).c_str()) < 0)
    throw SysError(fmt::format("rename {}", tmp.string()), errno);
}

const NodeRecord& node_or_fail(const State& s, int node) {
  if (const NodeRecord* r = s.find(node)) return *r;
  throw UserError(fmt::format("there is no {} in the cluster in {} (its nodes are node1..node{})", node_name(node),
                              s.dir.string(), s.nodes));
}

std::string cgroup_name(const fs::path& dir) {
  std::string base = dir.filename().string();
  if (base.empty()) base = dir.parent_path().filename().string();
  for (char& c : base)
    if (c == '\n' || c == '/') c = '_';
  if (base.rfind("roam", 0) == 0) return base;
  return "roam-cluster-" + base;
}

}  // namespace roam::cluster::detail
