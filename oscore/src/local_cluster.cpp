// The local cluster's life cycle: up, down, status, and a node's mosd
// stopped and started again. The pieces are in local_cluster_*.cpp.
#include "roam/local_cluster.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "local_cluster_detail.hpp"
#include "roam/cgroup.hpp"
#include "roam/config.hpp"
#include "roam/error.hpp"

namespace roam::cluster {
namespace {
using namespace detail;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Marks a /run/roam that a local cluster created on the host, so that the
// down() of whichever cluster ends last removes it.
constexpr const char* kMadeByMark = "trusted.roam.local_cluster";
constexpr int kMinMemPerNodeMb = 16;

fs::path normalized(const fs::path& dir) {
  fs::path p = fs::absolute(dir).lexically_normal();
  if (p.has_parent_path() && p.filename().empty()) p = p.parent_path();
  return p;
}

bool is_within(const fs::path& p, const fs::path& base) {
  auto rel = p.lexically_relative(base);
  return !rel.empty() && *rel.begin() != "..";
}

fs::path default_mosd() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw SysError("readlink /proc/self/exe", ec.value());
  return exe.parent_path() / "mosd";
}

void write_new_file(const fs::path& file, const std::string& text, mode_t mode) {
  FileDesc fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (!fd) throw SysError(fmt::format("create {}", file.string()), errno);
  if (::fchmod(fd.get(), mode) < 0) throw SysError(fmt::format("chmod {}", file.string()), errno);
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
    throw SysError(fmt::format("write {}", file.string()), errno);
}

std::string cluster_conf(const UpOptions& o) {
  std::string text = "# A local cluster, written by mosctl cluster up.\n";
  for (int i = 1; i <= o.nodes; ++i) {
    text += fmt::format("node {} {}:{}", i, node_address(i), kDefaultPort);
    for (const auto& [n, tag] : o.tags)
      if (n == i) text += " " + tag;
    text += "\n";
  }
  for (const auto& [key, value] : o.settings) text += fmt::format("{} = {}\n", key, value);
  return text;
}

void validate(const UpOptions& o, const fs::path& dir) {
  if (o.nodes < 1 || o.nodes > kMaxNodes)
    throw UserError(fmt::format("the number of nodes must be 1..{} (got {})", kMaxNodes, o.nodes));
  if (o.cpus_per_node < 0) throw UserError(fmt::format("--cpus-per-node must be 1 or more (got {})", o.cpus_per_node));
  // Below a few MiB the node's own init and mosd could not even start.
  if (o.mem_per_node_mb != 0 && o.mem_per_node_mb < kMinMemPerNodeMb)
    throw UserError(fmt::format("--mem-per-node must be at least {} (MiB; got {})", kMinMemPerNodeMb, o.mem_per_node_mb));
  for (const auto& [key, value] : o.settings) {
    if (key.empty() || key.find_first_of(" \t\n#=") != std::string::npos)
      throw UserError(fmt::format("bad setting name '{}' (expected KEY=VALUE, e.g. gossip.step_ms=200)", key));
    if (value.empty() || value.find_first_of("\n#") != std::string::npos)
      throw UserError(fmt::format("bad value '{}' for setting {}", value, key));
  }
  if (dir == "/" || is_within(dir, kNodeStateDir) || dir == kNodeStateDir || is_within(dir, "/proc") ||
      dir == "/tmp")
    throw UserError(fmt::format("{} cannot hold a cluster (pick another --dir)", dir.string()));
}

// Names up() and the nodes write into DIR; anything else there is not ours.
bool ours(const fs::path& entry, const fs::path& dir) {
  auto rel = entry.lexically_relative(dir);
  std::string first = rel.begin()->string();
  if (first == "state" || first == "state.tmp" || first == "cluster.conf" || first == "cluster.key") return true;
  if (first.rfind("node", 0) != 0 || first.size() == 4 ||
      !std::all_of(first.begin() + 4, first.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return false;
  if (std::distance(rel.begin(), rel.end()) == 1) return true;
  std::string second = std::next(rel.begin())->string();
  return second == "mosd.log" || second == "init.log" || second == "init.sock";
}

bool is_log(const fs::path& entry) { return entry.filename() == "mosd.log" || entry.filename() == "init.log"; }

// Removes what the cluster wrote into DIR (all but the logs when keep_logs),
// and DIR itself when nothing else is left. Returns whether anything was there.
bool remove_cluster_files(const fs::path& dir, bool keep_logs, std::vector<std::string>& warnings) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return false;
  std::vector<fs::path> entries;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec))
    entries.push_back(it->path());
  std::sort(entries.rbegin(), entries.rend());  // children before their folders
  bool foreign = false;
  for (const auto& e : entries) {
    if (!ours(e, dir)) {
      foreign = true;
      continue;
    }
    if (keep_logs && is_log(e)) continue;
    if (fs::is_directory(e, ec)) {
      if (!fs::is_empty(e, ec)) continue;  // holds a kept log or a foreign file
      fs::remove(e, ec);
    } else {
      fs::remove(e, ec);
    }
    if (ec) warnings.push_back(fmt::format("cannot remove {}: {}", e.string(), ec.message()));
  }
  if (fs::is_empty(dir, ec)) fs::remove(dir, ec);
  else if (foreign)
    warnings.push_back(fmt::format("left {} in place: it holds files that are not the cluster's", dir.string()));
  return !entries.empty() || !fs::exists(dir, ec);
}

// Whether any process on the machine (in any mount namespace) has a mount on
// `path`: rmdir on a mount point detaches the mounts of other namespaces.
bool mounted_anywhere(const fs::path& path) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    std::string name = entry.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; })) continue;
    std::ifstream in(entry.path() / "mountinfo");
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string id, parent, devno, root, mountpoint;
      if (fields >> id >> parent >> devno >> root >> mountpoint && mountpoint == path.string()) return true;
    }
  }
  return false;
}

std::string expect_ok(const std::string& reply, int node) {
  if (reply.rfind("ok ", 0) == 0) return reply.substr(3);
  std::string why = reply.rfind("error ", 0) == 0 ? reply.substr(6) : reply;
  throw UserError(fmt::format("{}: {}", node_name(node), why));
}

pid_t parse_pid(const std::string& s) {
  pid_t pid = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), pid);
  return ec == std::errc() ? pid : 0;
}

fs::path mosd_socket_seen_from_host(const NodeRecord& rec) {
  return fs::path(fmt::format("/proc/{}/root", rec.init.pid)) / fs::path(kNodeStateDir).relative_path() / "mosd.sock";
}

bool has_mosd_socket(const NodeRecord& rec) {
  struct stat st {};
  return ::stat(mosd_socket_seen_from_host(rec).c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && alive(rec.init);
}

void wait_for_mosd(const State& st, std::vector<int> nodes, milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    for (auto it = nodes.begin(); it != nodes.end();) {
      const NodeRecord& rec = node_or_fail(st, *it);
      std::string name = node_name(rec.node);
      if (has_mosd_socket(rec)) {
        it = nodes.erase(it);
        continue;
      }
      if (!alive(rec.init))
        throw UserError(fmt::format("{}: the node init (pid {}) died; see {}", name, rec.init.pid,
                                    init_log(st.dir, rec.node).string()));
      std::string reply = init_request(st.dir, rec, "status");
      if (reply.rfind("mosd - ", 0) == 0)
        throw UserError(fmt::format("{}: mosd {} before it made its control socket {}/mosd.sock; see {}", name,
                                    reply.substr(7), kNodeStateDir, mosd_log(st.dir, rec.node).string()));
      ++it;
    }
    if (nodes.empty()) return;
    if (Clock::now() >= deadline)
      throw UserError(fmt::format("{}: mosd did not make its control socket {}/mosd.sock within {} s; see {}",
                                  node_name(nodes.front()), kNodeStateDir, (timeout.count() + 999) / 1000,
                                  mosd_log(st.dir, nodes.front()).string()));
    std::this_thread::sleep_for(milliseconds(50));
  }
}

std::vector<fs::path> cluster_cgroups(const fs::path& dir, const std::optional<State>& st) {
  std::vector<fs::path> trees;
  std::error_code ec;
  std::string name = cgroup_name(dir);
  for (const auto& mount : cgroup::find_mounts().all)
    if (fs::is_directory(mount / name, ec)) trees.push_back(mount / name);
  if (st)
    for (const fs::path& p : {st->cgroup, st->cpuset_cgroup, st->memory_cgroup})
      if (!p.empty() && fs::is_directory(p, ec) && std::find(trees.begin(), trees.end(), p) == trees.end())
        trees.push_back(p);
  return trees;
}

DownReport take_down(const fs::path& dir, bool keep_logs) {
  DownReport report;
  std::optional<State> st;
  try {
    st = load_state(dir);
  } catch (const UserError& e) {
    report.warnings.push_back(e.what());
  }
  if (st) report.found = true;

  // The recorded processes first, through pidfds: a reused PID is never hit.
  std::vector<FileDesc> exits;
  std::vector<ProcessRef> ours_to_reap;
  if (st) {
    for (const auto& rec : st->node_records) {
      ours_to_reap.push_back(rec.init);
      if (FileDesc fd = open_pidfd(rec.init)) {
        send_signal(fd, SIGKILL);
        exits.push_back(std::move(fd));
        ++report.nodes;
      }
    }
    ours_to_reap.push_back(st->bridge);
    if (FileDesc fd = open_pidfd(st->bridge)) {
      send_signal(fd, SIGKILL);
      exits.push_back(std::move(fd));
    }
  }
  // Then whatever else is in the cluster's cgroups: the processes of an up()
  // that was killed before it recorded them, commands run by exec().
  auto trees = cluster_cgroups(dir, st);
  if (!trees.empty()) report.found = true;
  for (const auto& t : trees)
    for (pid_t pid : cgroup::procs_in_tree(t))
      if (auto ref = ref_of(pid)) ours_to_reap.push_back(*ref);
  if (!st && !trees.empty()) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(trees.front(), ec))
      if (entry.path().filename().string().rfind("node", 0) == 0 && !cgroup::procs_in_tree(entry.path()).empty())
        ++report.nodes;
  }
  auto warn_once = [&](const std::string& w) {
    if (std::find(report.warnings.begin(), report.warnings.end(), w) == report.warnings.end())
      report.warnings.push_back(w);
  };
  auto deadline = Clock::now() + milliseconds(10000);
  for (;;) {
    for (const auto& t : trees) {
      try {
        cgroup::kill_tree(t);
      } catch (const std::exception& e) {
        warn_once(e.what());
      }
    }
    bool done = std::all_of(exits.begin(), exits.end(), [](const FileDesc& fd) { return wait_exit(fd, milliseconds(0)); });
    for (const auto& t : trees) done = done && cgroup::procs_in_tree(t).empty();
    if (done) break;
    if (Clock::now() >= deadline) {
      report.warnings.push_back("some of the cluster's processes did not die within 10 s");
      break;
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  // The inits were adopted by init(1) or a subreaper: give it time to reap
  // them, so that not even a zombie is left behind.
  deadline = Clock::now() + milliseconds(5000);
  while (!std::all_of(ours_to_reap.begin(), ours_to_reap.end(), gone) && Clock::now() < deadline) {
    // Reap those that are our own children (up() failing halfway).
    for (const auto& p : ours_to_reap)
      if (!gone(p)) ::waitpid(p.pid, nullptr, WNOHANG);
    std::this_thread::sleep_for(milliseconds(20));
  }

  for (const auto& t : trees) {
    bool removed = false;
    for (int attempt = 0; attempt < 50 && !(removed = cgroup::remove_tree(t)); ++attempt)
      std::this_thread::sleep_for(milliseconds(20));
    if (!removed) report.warnings.push_back(fmt::format("cannot remove cgroup {}: it is still in use", t.string()));
  }
  // Put the v2 root's controllers back as they were. The kernel refuses
  // (EBUSY) while another cgroup, say another local cluster's, uses them.
  for (auto [enabled, controller] : {std::pair{st && st->enabled_root_cpuset, "-cpuset"},
                                      std::pair{st && st->enabled_root_memory, "-memory"}}) {
    if (!enabled) continue;
    try {
      cgroup::write_file(st->cgroup.parent_path() / "cgroup.subtree_control", controller);
    } catch (const SysError&) {
    }
  }
  // /run/roam on the host is only a mount point for the nodes. Without a
  // state file, leftovers in the cgroups say it was ours; rmdir removes it
  // only when empty, and never while some namespace still mounts on it.
  // Another cluster's up() may have made it: the mark says so.
  bool made_it = st ? st->made_node_state_dir : !trees.empty();
  made_it = made_it || ::getxattr(kNodeStateDir, kMadeByMark, nullptr, 0) >= 0;
  if (made_it && !mounted_anywhere(kNodeStateDir)) ::rmdir(kNodeStateDir);
  if (remove_cluster_files(dir, keep_logs, report.warnings)) report.found = true;
  return report;
}

}  // namespace

fs::path default_dir() {
  const char* env = std::getenv(kDirEnv);
  return env && *env ? fs::path(env) : fs::path(kDefaultDir);
}

std::string node_name(int node) { return fmt::format("node{}", node); }
std::string node_address(int node) { return fmt::format("10.77.0.{}", node); }

int parse_node(const std::string& text) {
  std::string_view digits = text;
  if (digits.rfind("node", 0) == 0) digits.remove_prefix(4);
  int node = 0;
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), node);
  if (digits.empty() || ec != std::errc() || p != digits.data() + digits.size() || node < 1 || node > kMaxNodes)
    throw UserError(fmt::format("'{}' names no node (write nodeI or I, e.g. node2 or 2)", text));
  return node;
}

std::vector<int> node_cpus(int node, int per_node, const std::vector<int>& available) {
  ROAM_ASSERT(!available.empty() && node >= 1 && per_node >= 1, fmt::format("node {} per_node {}", node, per_node));
  std::vector<int> cpus;
  for (int j = (node - 1) * per_node; j < node * per_node; ++j)
    cpus.push_back(available[static_cast<size_t>(j) % available.size()]);
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  return cpus;
}

void up(const UpOptions& o) {
  fs::path dir = normalized(o.dir);
  validate(o, dir);
  fs::path mosd = o.mosd.empty() ? default_mosd() : fs::absolute(o.mosd).lexically_normal();
  struct stat mosd_stat {};
  if (::stat(mosd.c_str(), &mosd_stat) < 0 || !S_ISREG(mosd_stat.st_mode) || ::access(mosd.c_str(), X_OK) < 0)
    throw UserError(fmt::format("no executable mosd at {} (build it with 'make', or pass --mosd PATH)", mosd.string()));

  auto mounts = cgroup::find_mounts();
  if (mounts.unified.empty())
    throw UserError("no cgroup v2 hierarchy is mounted (none in /proc/self/mountinfo); the local cluster needs one");
  auto cpuset = cgroup::CpusetSource::none;
  std::vector<int> available;
  if (o.cpus_per_node > 0) {
    cpuset = cgroup::cpuset_source(mounts);
    if (cpuset == cgroup::CpusetSource::none)
      throw UserError("--cpus-per-node needs the cpuset controller, which this machine has neither in cgroup v2 nor as a v1 hierarchy");
    available = cgroup::available_cpus(mounts, cpuset);
    if (static_cast<size_t>(o.cpus_per_node) > available.size())
      throw UserError(fmt::format("--cpus-per-node {} is more than the {} CPUs this machine has", o.cpus_per_node,
                                  available.size()));
  }
  auto memory = cgroup::MemorySource::none;
  if (o.mem_per_node_mb > 0) {
    memory = cgroup::memory_source(mounts);
    if (memory == cgroup::MemorySource::none)
      throw UserError("--mem-per-node needs the memory controller, which this machine has neither in cgroup v2 nor as a v1 hierarchy");
  }

  if (auto existing = load_state(dir))
    throw UserError(fmt::format("a cluster is already up in {} ({} nodes); run 'mosctl cluster down' first", dir.string(),
                                existing->nodes));
  std::string name = cgroup_name(dir);
  for (const auto& mount : mounts.all) {
    fs::path stale = mount / name;
    std::error_code ec;
    if (!fs::is_directory(stale, ec)) continue;
    if (!cgroup::procs_in_tree(stale).empty())
      throw UserError(fmt::format("a cluster is already up: processes of it still run in cgroup {}; run 'mosctl cluster "
                                  "down' (with its --dir) first",
                                  stale.string()));
    cgroup::remove_tree(stale);
  }
  std::vector<std::string> ignored;
  remove_cluster_files(dir, /*keep_logs=*/false, ignored);  // logs of an earlier failed up
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_empty(dir, ec))
    throw UserError(fmt::format("{} is not empty and holds no cluster; pick another --dir or empty it", dir.string()));

  State st;
  st.dir = dir;
  st.nodes = o.nodes;
  st.cpus_per_node = o.cpus_per_node;
  st.mem_per_node_mb = o.mem_per_node_mb;
  st.mosd = mosd;
  st.cgroup = mounts.unified / name;
  if (cpuset == cgroup::CpusetSource::v1) st.cpuset_cgroup = mounts.cpuset_v1 / name;
  if (memory == cgroup::MemorySource::v1) st.memory_cgroup = mounts.memory_v1 / name;
  fs::create_directories(dir, ec);
  if (ec) throw SysError(fmt::format("mkdir {}", dir.string()), ec.value());
  // Claims DIR: of two concurrent up()s, only one creates the state file.
  FileDesc claim(::open(state_file(dir).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!claim) {
    if (errno == EEXIST)
      throw UserError(fmt::format("a cluster is already up in {}; run 'mosctl cluster down' first", dir.string()));
    throw SysError(fmt::format("create {}", state_file(dir).string()), errno);
  }
  claim.reset();
  save_state(st);

  try {
    write_new_file(dir / "cluster.conf", cluster_conf(o), 0644);
    write_new_file(dir / "cluster.key", generate_key_hex() + "\n", 0600);
    for (int i = 1; i <= o.nodes; ++i) cgroup::make(dir / node_name(i));
    if (!fs::exists(kNodeStateDir, ec)) {
      cgroup::make(kNodeStateDir);
      ::setxattr(kNodeStateDir, kMadeByMark, "1", 1, 0);  // best effort: not every file system keeps it
      st.made_node_state_dir = true;
      save_state(st);
    }

    cgroup::make(st.cgroup);
    if (cpuset == cgroup::CpusetSource::v2) {
      st.enabled_root_cpuset = cgroup::enable_controller(mounts.unified, st.cgroup / "node1", "cpuset");
      save_state(st);
    }
    if (cpuset == cgroup::CpusetSource::v1) {
      // A v1 cpuset is unusable until its cpus and mems are set.
      cgroup::make(st.cpuset_cgroup);
      cgroup::write_file(st.cpuset_cgroup / "cpuset.cpus", cgroup::read_file(mounts.cpuset_v1 / "cpuset.cpus"));
      cgroup::write_file(st.cpuset_cgroup / "cpuset.mems", cgroup::read_file(mounts.cpuset_v1 / "cpuset.mems"));
    }
    if (memory == cgroup::MemorySource::v2) {
      st.enabled_root_memory = cgroup::enable_controller(mounts.unified, st.cgroup / "node1", "memory");
      save_state(st);
    }
    if (memory == cgroup::MemorySource::v1) cgroup::make(st.memory_cgroup);
    cgroup::make(st.cgroup / "bridge");
    st.bridge = spawn_bridge_holder(st.cgroup / "bridge");
    save_state(st);

    for (int i = 1; i <= o.nodes; ++i) {
      NodeRecord rec;
      rec.node = i;
      cgroup::make(st.node_cgroup(i));
      if (cpuset != cgroup::CpusetSource::none) {
        rec.cpus = cgroup::format_cpu_list(node_cpus(i, o.cpus_per_node, available));
        if (cpuset == cgroup::CpusetSource::v2) {
          cgroup::write_file(st.node_cgroup(i) / "cpuset.cpus", rec.cpus);
        } else {
          cgroup::make(st.node_cpuset_cgroup(i));
          cgroup::write_file(st.node_cpuset_cgroup(i) / "cpuset.cpus", rec.cpus);
          cgroup::write_file(st.node_cpuset_cgroup(i) / "cpuset.mems", cgroup::read_file(st.cpuset_cgroup / "cpuset.mems"));
        }
      }
      if (memory != cgroup::MemorySource::none) {
        fs::path cg = memory == cgroup::MemorySource::v2 ? st.node_cgroup(i) : st.node_memory_cgroup(i);
        if (memory == cgroup::MemorySource::v1) cgroup::make(cg);
        cgroup::limit_memory(cg, memory, static_cast<uint64_t>(o.mem_per_node_mb) << 20);
      }
      NodeSpawn spawn;
      spawn.node = i;
      spawn.dir = dir;
      spawn.mosd = mosd;
      spawn.shared = o.shared;
      std::error_code exe_ec;
      fs::path exe = fs::read_symlink("/proc/self/exe", exe_ec);
      if (!exe_ec) spawn.shared.push_back(exe.parent_path().parent_path());
      spawn.cgroup = st.node_cgroup(i);
      spawn.cpuset_cgroup = st.node_cpuset_cgroup(i);
      spawn.memory_cgroup = st.node_memory_cgroup(i);
      rec.init = spawn_node_init(spawn);
      st.node_records.push_back(rec);
      save_state(st);
      connect_node(st.bridge, rec.init, i);
    }
    for (const auto& rec : st.node_records) {
      std::string reply = init_request(dir, rec, "start");
      if (reply.rfind("ok ", 0) != 0)
        throw UserError(fmt::format("{}: cannot start mosd: {}; see {}", node_name(rec.node),
                                    reply.rfind("error ", 0) == 0 ? reply.substr(6) : reply,
                                    init_log(dir, rec.node).string()));
    }
    if (o.wait_for_mosd) {
      std::vector<int> all;
      for (int i = 1; i <= o.nodes; ++i) all.push_back(i);
      wait_for_mosd(st, all, o.wait_timeout);
    }
    st.phase = "up";
    save_state(st);
  } catch (...) {
    take_down(dir, /*keep_logs=*/true);
    throw;
  }
}

DownReport down(const fs::path& dir) { return take_down(normalized(dir), /*keep_logs=*/false); }

ClusterStatus status(const fs::path& dir_in) {
  fs::path dir = normalized(dir_in);
  State st = load_state_or_fail(dir);
  ClusterStatus cluster;
  cluster.dir = dir;
  cluster.phase = st.phase;
  cluster.bridge_pid = st.bridge.pid;
  cluster.bridge_alive = alive(st.bridge);
  auto& out = cluster.nodes;
  for (const auto& rec : st.node_records) {
    NodeStatus s;
    s.node = rec.node;
    s.init_pid = rec.init.pid;
    s.init_alive = alive(rec.init);
    s.address = node_address(rec.node);
    s.port = kDefaultPort;
    s.cpus = rec.cpus;
    s.mem_limit_mb = st.mem_per_node_mb;
    if (s.init_alive) {
      try {
        std::string reply = init_request(dir, rec, "status");
        if (reply.rfind("mosd ", 0) == 0 && reply.rfind("mosd - ", 0) != 0) {
          s.mosd_node_pid = parse_pid(reply.substr(5));
          s.mosd_alive = s.mosd_node_pid > 0;
          s.mosd_pid = host_pid_of_child(rec.init, s.mosd_node_pid);
        }
      } catch (const UserError&) {
        // An init that does not answer counts as a node without a mosd.
      }
      s.mosd_socket = has_mosd_socket(rec);
    }
    out.push_back(s);
  }
  return cluster;
}

std::optional<pid_t> stop_mosd(const fs::path& dir_in, int node) {
  fs::path dir = normalized(dir_in);
  State st = load_state_or_fail(dir);
  const NodeRecord& rec = node_or_fail(st, node);
  if (!alive(rec.init))
    throw UserError(fmt::format("{} is down: its init (pid {}) has exited", node_name(node), rec.init.pid));
  std::string before = init_request(dir, rec, "status");
  pid_t host_pid = 0;
  if (before.rfind("mosd - ", 0) != 0) host_pid = host_pid_of_child(rec.init, parse_pid(before.substr(5)));
  std::string stopped = expect_ok(init_request(dir, rec, "stop"), node);
  if (stopped == "-") return std::nullopt;
  return host_pid ? host_pid : parse_pid(stopped);
}

pid_t start_mosd(const fs::path& dir_in, int node, bool wait, milliseconds timeout) {
  fs::path dir = normalized(dir_in);
  State st = load_state_or_fail(dir);
  const NodeRecord& rec = node_or_fail(st, node);
  if (!alive(rec.init))
    throw UserError(fmt::format("{} is down: its init (pid {}) has exited", node_name(node), rec.init.pid));
  pid_t node_pid = parse_pid(expect_ok(init_request(dir, rec, "start"), node));
  pid_t host_pid = host_pid_of_child(rec.init, node_pid);
  if (wait) wait_for_mosd(st, {node}, timeout);
  return host_pid;
}

}  // namespace roam::cluster
