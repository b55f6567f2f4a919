// Private pieces of the local cluster (roam/local_cluster.hpp), shared by the
// local_cluster_*.cpp files. One section per file.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "roam/fd.hpp"

namespace roam::cluster::detail {
namespace fs = std::filesystem;

// ---- local_cluster_process.cpp: processes named safely -------------------

// A process as (pid, start time): the start time (field 22 of /proc/PID/stat,
// clock ticks since boot) tells a reused PID from the process we started.
struct ProcessRef {
  pid_t pid = 0;
  uint64_t start_time = 0;
  bool empty() const { return pid <= 0; }
};

std::optional<uint64_t> start_time_of(pid_t pid);
// The process with this pid now; nullopt when there is none.
std::optional<ProcessRef> ref_of(pid_t pid);
// Running (or stopped), not a zombie, and the same process as recorded.
bool alive(const ProcessRef& p);
// Reaped: no process with this pid and start time exists any more.
bool gone(const ProcessRef& p);
// A pidfd for exactly this process, or an invalid FileDesc when it has exited
// (a zombie counts as exited) or its pid now names another process.
FileDesc open_pidfd(const ProcessRef& p);
bool send_signal(const FileDesc& pidfd, int sig);
// Waits until pidfd reports the exit; false on timeout.
bool wait_exit(const FileDesc& pidfd, std::chrono::milliseconds timeout);

// The host PID of the child of `parent` whose PID in its own namespace is
// `node_pid` (from /proc/PARENT/task/PARENT/children and NSpid); 0 when none.
pid_t host_pid_of_child(const ProcessRef& parent, pid_t node_pid);

// For forked children that never return into the caller's code.
[[noreturn]] void child_exit_error(int report_fd, const std::string& message);
void write_all(int fd, const std::string& text);
void stdio_to_devnull();
void close_fds_except(std::vector<int> keep);
void set_process_name(const std::string& name);  // comm, and cmdline where the kernel lets us

// ---- local_cluster_state.cpp: DIR/state ----------------------------------

struct NodeRecord {
  int node = 0;
  ProcessRef init;
  std::string cpus;  // cpuset.cpus, empty when not pinned
};

struct State {
  fs::path dir;
  std::string phase = "starting";  // "starting" while up() runs, then "up"
  int nodes = 0;
  int cpus_per_node = 0;
  int mem_per_node_mb = 0;
  fs::path mosd;
  fs::path cgroup;         // this cluster's cgroup in the v2 hierarchy
  fs::path cpuset_cgroup;  // this cluster's cgroup in a v1 cpuset hierarchy, or empty
  fs::path memory_cgroup;  // this cluster's cgroup in a v1 memory hierarchy, or empty
  bool made_node_state_dir = false;  // up() created /run/roam on the host
  bool enabled_root_cpuset = false;  // up() enabled cpuset in the v2 root's subtree_control
  bool enabled_root_memory = false;  // up() enabled memory in the v2 root's subtree_control
  ProcessRef bridge;
  std::vector<NodeRecord> node_records;

  const NodeRecord* find(int node) const;
  fs::path node_cgroup(int node) const { return cgroup / fmt_node(node); }
  fs::path node_cpuset_cgroup(int node) const {
    return cpuset_cgroup.empty() ? fs::path() : cpuset_cgroup / fmt_node(node);
  }
  fs::path node_memory_cgroup(int node) const {
    return memory_cgroup.empty() ? fs::path() : memory_cgroup / fmt_node(node);
  }
  // The node's cgroups in every hierarchy: v2, then v1 cpuset and memory where used.
  std::vector<fs::path> node_cgroups(int node) const;
  static std::string fmt_node(int node);
};

fs::path state_file(const fs::path& dir);
std::optional<State> load_state(const fs::path& dir);  // nullopt when there is no state file
State load_state_or_fail(const fs::path& dir);          // UserError "no cluster is up in DIR"
void save_state(const State& s);                          // atomically (write + rename)
// The record of `node`, or UserError naming the nodes that exist.
const NodeRecord& node_or_fail(const State& s, int node);

// This cluster's cgroup name: DIR's base name when it starts with "roam"
// (so the default /run/roam-cluster gives roam-cluster), else
// roam-cluster-BASENAME. Derived from DIR alone so that down() finds the
// cgroups of a cluster whose state file was never written.
std::string cgroup_name(const fs::path& dir);

// ---- local_cluster_init.cpp: the node init and its control socket --------

struct NodeSpawn {
  int node = 0;
  fs::path dir;
  fs::path mosd;
  fs::path cgroup;         // the node's v2 cgroup
  fs::path cpuset_cgroup;  // the node's v1 cpuset cgroup, or empty
  fs::path memory_cgroup;  // the node's v1 memory cgroup, or empty
  std::vector<fs::path> shared;  // host folders kept visible at the same path (UpOptions::shared)
  std::chrono::milliseconds timeout{10000};
};

// Starts node `node`'s init with all its namespaces set up (mounts, hostname,
// clocks, cgroups; the network interface comes later from the host side).
// Throws UserError when the init reports a failure.
ProcessRef spawn_node_init(const NodeSpawn& spawn);

// One request to a node init ("start", "stop", "status"); returns its reply
// line. Throws UserError when the init does not answer.
std::string init_request(const fs::path& dir, const NodeRecord& rec, const std::string& request);

fs::path init_socket(const fs::path& dir, int node);
fs::path mosd_log(const fs::path& dir, int node);
fs::path init_log(const fs::path& dir, int node);

// ---- local_cluster_net.cpp: the bridge and the nodes' links --------------

// Runs `ip -batch -` with `commands` on stdin inside the network namespace of
// `owner`. Throws UserError carrying ip's complaint.
void run_ip(const ProcessRef& owner, const std::string& commands);
// A process that only holds a network namespace with bridge br0 in it.
ProcessRef spawn_bridge_holder(const fs::path& cgroup);
void connect_node(const ProcessRef& bridge, const ProcessRef& init, int node);

}  // namespace roam::cluster::detail
