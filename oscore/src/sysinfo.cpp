#include "roam/sysinfo.hpp"

#include "roam/cgroup.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>

namespace roam {
namespace {

// The state letter of /proc/.../stat: after the last ')' of the comm field.
char stat_state(const char* path) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[512];
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  const char* rp = std::strrchr(buf, ')');
  if (!rp || rp[1] != ' ') return 0;
  return rp[2];
}

bool is_number(const char* s) { return *s && std::all_of(s, s + std::strlen(s), [](char c) { return c >= '0' && c <= '9'; }); }

uint64_t read_u64_file(const std::string& path, bool* ok) {
  std::ifstream in(path);
  std::string s;
  *ok = false;
  if (!(in >> s) || s == "max") return 0;
  try {
    *ok = true;
    return std::stoull(s);
  } catch (...) {
    *ok = false;
    return 0;
  }
}

}  // namespace

uint32_t count_runnable_tasks() {
  uint32_t count = 0;
  DIR* proc = ::opendir("/proc");
  if (!proc) return 0;
  pid_t self_tid = static_cast<pid_t>(::syscall(SYS_gettid));
  char path[600];
  while (dirent* de = ::readdir(proc)) {
    if (!is_number(de->d_name)) continue;
    std::snprintf(path, sizeof path, "/proc/%s/task", de->d_name);
    DIR* tasks = ::opendir(path);
    if (!tasks) continue;
    while (dirent* te = ::readdir(tasks)) {
      if (!is_number(te->d_name)) continue;
      if (std::atoi(te->d_name) == self_tid) continue;
      std::snprintf(path, sizeof path, "/proc/%s/task/%s/stat", de->d_name, te->d_name);
      if (stat_state(path) == 'R') ++count;
    }
    ::closedir(tasks);
  }
  ::closedir(proc);
  return count;
}

uint32_t usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return static_cast<uint32_t>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));
  return static_cast<uint32_t>(std::max(1, CPU_COUNT(&set)));
}

MemoryInfo memory_info() {
  MemoryInfo m;
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  uint64_t kb;
  std::string unit;
  while (meminfo >> key >> kb) {
    std::getline(meminfo, unit);
    if (key == "MemTotal:") m.total = kb * 1024;
    if (key == "MemAvailable:") m.free = kb * 1024;
  }
  // Narrow by the memory cgroup limits on the path from our cgroup to the
  // root. The hierarchies are found once from mountinfo (they do not move
  // under a running daemon), not guessed from paths.
  static const cgroup::Mounts mounts = cgroup::find_mounts();
  std::ifstream cg("/proc/self/cgroup");
  std::string line;
  while (std::getline(cg, line)) {
    // "ID:CONTROLLERS:PATH"; v2 has "0::PATH"; v1 memory has "N:memory:PATH".
    auto c1 = line.find(':'), c2 = line.find(':', c1 + 1);
    if (c1 == std::string::npos || c2 == std::string::npos) continue;
    std::string ctrls = line.substr(c1 + 1, c2 - c1 - 1), path = line.substr(c2 + 1);
    std::string base, limit_file, usage_file;
    if (ctrls.empty() && !mounts.unified.empty()) {
      base = mounts.unified.string();
      limit_file = "memory.max";
      usage_file = "memory.current";
    } else if (("," + ctrls + ",").find(",memory,") != std::string::npos && !mounts.memory_v1.empty()) {
      base = mounts.memory_v1.string();
      limit_file = "memory.limit_in_bytes";
      usage_file = "memory.usage_in_bytes";
    } else {
      continue;
    }
    for (std::string p = path; !p.empty(); p = p.substr(0, p.rfind('/'))) {
      bool ok_limit, ok_usage;
      uint64_t limit = read_u64_file(base + p + "/" + limit_file, &ok_limit);
      uint64_t usage = read_u64_file(base + p + "/" + usage_file, &ok_usage);
      if (ok_limit && ok_usage && limit < m.total) {
        m.total = limit;
        m.free = std::min(m.free, limit > usage ? limit - usage : 0);
      }
      if (p == "/") break;
    }
  }
  return m;
}

void LoadMeter::sample(uint32_t runnable, uint32_t cpus) {
  double v = 100.0 * runnable / std::max(1u, cpus) * 10000.0 / std::max(1u, speed_);
  smoothed_ = primed_ ? smoothed_ + alpha_ * (v - smoothed_) : v;
  primed_ = true;
}

double LoadMeter::time_constant_ms(uint32_t sample_ms, double alpha) {
  return -static_cast<double>(sample_ms) / std::log(1.0 - std::clamp(alpha, 0.01, 0.99));
}

uint32_t LoadMeter::load() const { return static_cast<uint32_t>(std::lround(std::max(0.0, smoothed_))); }

}  // namespace roam
