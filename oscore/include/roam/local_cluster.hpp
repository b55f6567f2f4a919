// The local cluster: one machine turned into N roam nodes, for tests, benches
// and demos (`mosctl cluster ...`). Node I ("nodeI", 1 <= I <= N) is a tree of
// processes under a small init that is PID 1 of its own PID namespace and
// holds the node's other namespaces:
//   mount  / made rprivate; private tmpfs on /tmp, /dev/shm and /run/roam
//          (mosd's state dir); a fresh /proc; the host's /sys (mosd needs the
//          host's /sys/fs/cgroup). DIR stays visible at its host path, even
//          under /tmp (bound back over the private /tmp).
//   UTS    hostname nodeI
//   IPC    its own
//   net    eth0 = 10.77.0.I/24, one end of a veth whose other end is in a
//          bridge that lives in a network namespace of its own; lo up; no
//          other route. The host's network namespace never sees either end.
//   time   CLOCK_MONOTONIC and CLOCK_BOOTTIME offset by I*1000 s
//   cgroup the init and everything under it is in CG/nodeI of the v2
//          hierarchy and, with cpus_per_node, of a cpuset (v2, or the v1
//          cpuset hierarchy on hybrid hosts); with mem_per_node_mb, under a
//          memory limit (v2 memory.max, or the v1 memory hierarchy on
//          hybrid hosts), swap included where the kernel accounts it. CG is DIR's base name when it
//          starts with "roam" (roam-cluster for the default DIR), else
//          roam-cluster-BASENAME. No cgroup namespace: mosd finds its own
//          cgroup through /proc/self/cgroup under the host's /sys/fs/cgroup,
//          which needs host-relative paths.
// No namespace is pinned by a bind mount or a name: all of them disappear
// with the processes, so killing the inits (even uncleanly) removes a node.
//
// The cluster directory DIR (default /run/roam-cluster, or $ROAM_CLUSTER_DIR)
// holds cluster.conf, cluster.key, the state file and, per node,
// nodeI/mosd.log (mosd's stdout and stderr), nodeI/init.log and
// nodeI/init.sock (the init's control socket). Clusters in directories with
// different base names can be up at once (each has its own bridge, so both
// may use 10.77.0.I).
//
// Processes: these functions fork and setns; call them from a single-threaded
// program (mosctl), or before a program starts its threads.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace roam::cluster {

inline constexpr const char* kDefaultDir = "/run/roam-cluster";
inline constexpr const char* kDirEnv = "ROAM_CLUSTER_DIR";
inline constexpr const char* kNodeStateDir = "/run/roam";  // mosd's --state-dir inside every node
inline constexpr const char* kNodeEnv = "ROAM_NODE";       // set to I for commands run by exec()
inline constexpr int kMaxNodes = 250;                      // addresses 10.77.0.1 .. 10.77.0.250
inline constexpr int64_t kClockOffsetStepSeconds = 1000;   // node I's clocks run I*1000 s ahead

// $ROAM_CLUSTER_DIR when set and not empty, else kDefaultDir.
std::filesystem::path default_dir();

std::string node_name(int node);     // "node3"
std::string node_address(int node);  // "10.77.0.3"
// "node3" or "3" -> 3. Throws UserError on anything else. Does not check
// that the node exists: operations on the cluster do that.
int parse_node(const std::string& text);

// The CPUs node `node` gets with `per_node` CPUs each: positions
// (node-1)*per_node .. node*per_node-1, modulo the count, of `available`.
std::vector<int> node_cpus(int node, int per_node, const std::vector<int>& available);

struct UpOptions {
  std::filesystem::path dir = default_dir();
  int nodes = 0;
  int cpus_per_node = 0;      // 0: not pinned
  int mem_per_node_mb = 0;    // 0: no memory limit; else MiB for all of a node's processes
  std::filesystem::path mosd;  // empty: "mosd" beside the running executable (/proc/self/exe)
  std::vector<std::pair<std::string, std::string>> settings;  // extra cluster.conf lines KEY = VALUE
  std::vector<std::pair<int, std::string>> tags;               // (node, tag) for the map's node lines
  bool wait_for_mosd = true;  // wait until every node's /run/roam/mosd.sock exists
  std::chrono::milliseconds wait_timeout{10000};
  // Host folders every node must see at the same path although they lie
  // under a node's private /tmp or /dev/shm. The folder holding the running
  // executable's bin/ (the build tree or install prefix) is always added, so
  // the roam tools and test helpers run inside nodes wherever they were built.
  std::vector<std::filesystem::path> shared;
};

// Brings the cluster up. On any failure it removes everything it made except
// the nodes' log files, then throws (UserError for what a user can fix).
void up(const UpOptions& options);

struct DownReport {
  bool found = false;  // anything of a cluster was there (state, processes, cgroups)
  int nodes = 0;       // node inits that were still running and got killed
  std::vector<std::string> warnings;  // what could not be removed
};

// Kills every process of the cluster (its inits, the bridge holder, and
// whatever else is in its cgroups), waits for them, removes the cgroups and
// DIR. Finds leftovers without a state file too. Never throws for a cluster
// that is partly gone; idempotent.
DownReport down(const std::filesystem::path& dir);

struct NodeStatus {
  int node = 0;
  pid_t init_pid = 0;
  bool init_alive = false;
  pid_t mosd_pid = 0;        // host PID, 0 when not running
  pid_t mosd_node_pid = 0;   // the same process's PID inside the node
  bool mosd_alive = false;
  bool mosd_socket = false;  // /run/roam/mosd.sock exists in the node
  std::string address;       // "10.77.0.I"
  uint16_t port = 0;
  std::string cpus;          // "0-1", or empty when not pinned
  int mem_limit_mb = 0;      // the node's memory limit in MiB, 0 when it has none
};

struct ClusterStatus {
  std::filesystem::path dir;
  std::string phase;        // "up", or "starting" while (or when) up() did not finish
  pid_t bridge_pid = 0;
  bool bridge_alive = false;  // without it no node has a network
  std::vector<NodeStatus> nodes;
};

// Throws UserError when no cluster is up in `dir`.
ClusterStatus status(const std::filesystem::path& dir);

// Runs argv inside every namespace and the cgroups of `node`, with this
// process's stdin, stdout, stderr and terminal, and $ROAM_NODE set. Returns
// the command's exit status, or 128+N when signal N killed it (127 when it
// cannot be run). See local_cluster_exec.cpp for terminal and signal handling.
int exec(const std::filesystem::path& dir, int node, const std::vector<std::string>& argv);

// Kills node `node`'s mosd (SIGKILL); its init stays and does not restart it.
// Returns the host PID it killed, or nullopt when mosd was not running.
std::optional<pid_t> stop_mosd(const std::filesystem::path& dir, int node);

// Starts a new mosd in node `node` (UserError when one runs already) and, when
// `wait` is set, waits until its control socket exists. Returns its host PID.
pid_t start_mosd(const std::filesystem::path& dir, int node, bool wait,
                 std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));

}  // namespace roam::cluster
