// Control groups, as far as roam creates and removes them. Two layouts exist
// in the wild and both are supported: pure cgroup v2 (one cgroup2 mount at
// /sys/fs/cgroup, stock Debian 12) and hybrid (v1 controllers mounted at
// /sys/fs/cgroup/<controller> plus a controller-less cgroup2 tree, often at
// /sys/fs/cgroup/unified). The layout is read from /proc/self/mountinfo,
// never guessed from paths.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace roam::cgroup {

struct Mounts {
  std::filesystem::path unified;     // the cgroup2 mount; empty when there is none
  std::filesystem::path cpuset_v1;   // the v1 hierarchy carrying cpuset; empty when none
  std::filesystem::path memory_v1;   // the v1 hierarchy carrying memory; empty when none
  std::vector<std::filesystem::path> all;  // every cgroup and cgroup2 mount, for leftover scans
};

// Parses the text of a mountinfo file (see proc(5)).
Mounts parse_mountinfo(std::string_view text);
Mounts find_mounts();  // of this process's mount namespace

// Where a cpuset for our own cgroups comes from.
enum class CpusetSource { none, v2, v1 };
// v2 when the cgroup2 root offers the controller, else v1 when a v1 cpuset
// hierarchy is mounted, else none.
CpusetSource cpuset_source(const Mounts& m);

// Where a memory limit for our own cgroups comes from: v2 when the cgroup2
// root offers the memory controller, else v1 when a v1 memory hierarchy is
// mounted, else none.
enum class MemorySource { none, v2, v1 };
MemorySource memory_source(const Mounts& m);

// Puts the cgroup `dir` (made already) under a limit of `bytes` and lets it
// use no swap beyond that where the controller can say so: v2 memory.max and
// memory.swap.max = 0; v1 memory.limit_in_bytes and memory.memsw.limit_in_bytes
// = the same (a kernel without swap accounting lacks the swap files: skipped).
void limit_memory(const std::filesystem::path& dir, MemorySource source, uint64_t bytes);

// "0-3,8,10-11" <-> {0,1,2,3,8,10,11}. Throws UserError on bad text.
std::vector<int> parse_cpu_list(std::string_view text);
std::string format_cpu_list(std::vector<int> cpus);

// The CPUs a child of the hierarchy root may use (v2 cpuset.cpus.effective,
// v1 cpuset.effective_cpus, or the online CPUs when neither is readable).
std::vector<int> available_cpus(const Mounts& m, CpusetSource source);

// File helpers: errors name the file. write_file writes the value in one
// write(2), as cgroup files want.
std::string read_file(const std::filesystem::path& file);
void write_file(const std::filesystem::path& file, std::string_view value);
void make(const std::filesystem::path& dir);  // mkdir; an existing one is fine

// v2: enables a controller ("cpuset") in cgroup.subtree_control of every
// cgroup from the mount root down to the parent of `leaf`. Returns whether
// it had to enable it in the root (which removing our cgroups won't undo).
bool enable_controller(const std::filesystem::path& root, const std::filesystem::path& leaf,
                       std::string_view controller);

// Moves process `pid` (0: the caller) into the cgroup `dir`.
void attach(const std::filesystem::path& dir, pid_t pid);

// Processes in `dir` and every cgroup below it (pids as this process sees them).
std::vector<pid_t> procs_in_tree(const std::filesystem::path& dir);

// Sends SIGKILL to every process in the subtree: through cgroup.kill where
// the kernel has it (atomic, nothing can escape by forking), otherwise one
// pidfd at a time, each checked to still be in the subtree before the kill.
void kill_tree(const std::filesystem::path& dir);

// Removes `dir` and the cgroups under it, deepest first. Returns false (and
// leaves what it could not remove) when some cgroup still holds processes.
bool remove_tree(const std::filesystem::path& dir);

}  // namespace roam::cgroup
