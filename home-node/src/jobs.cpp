#include "roam/home/jobs.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "roam/cgroup.hpp"
#include "roam/error.hpp"
#include "roam/log.hpp"

namespace fs = std::filesystem;

namespace roam::home {
namespace {

constexpr const char* kDaemonLeaf = "roam-mosd";
constexpr const char* kJobsDir = "roam-jobs";

std::string read_cmdline(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/cmdline", pid), std::ios::binary);
  std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!raw.empty() && raw.back() == '\0') raw.pop_back();
  // One line per process in every listing: argument separators and control
  // characters become spaces.
  for (auto& c : raw)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  if (!raw.empty()) return raw;
  std::ifstream comm(fmt::format("/proc/{}/comm", pid));
  std::string c;
  std::getline(comm, c);
  return "[" + c + "]";
}

}  // namespace

fs::path cgroup2_mount() { return cgroup::find_mounts().unified; }

std::string own_cgroup2_path() {
  std::ifstream cg("/proc/self/cgroup");
  std::string line;
  while (std::getline(cg, line))
    if (line.rfind("0::", 0) == 0) return line.substr(3);
  return {};
}

JobTracker::JobTracker() {
  fs::path mount = cgroup2_mount();
  std::string own = own_cgroup2_path();
  if (mount.empty() || own.empty())
    throw UserError("no cgroup v2 hierarchy is mounted: roam tracks jobs with cgroup v2 (mount cgroup2 on /sys/fs/cgroup)");
  fs::path own_dir = mount / own.substr(1);
  fs::path base = own_dir.filename() == kDaemonLeaf ? own_dir.parent_path() : own_dir;
  fs::create_directories(base / kDaemonLeaf);
  fs::create_directories(base / kJobsDir);
  if (own_dir.filename() != kDaemonLeaf) cgroup::attach(base / kDaemonLeaf, 0);
  jobs_dir_ = base / kJobsDir;
  for (auto& e : fs::directory_iterator(jobs_dir_)) {
    auto name = e.path().filename().string();
    if (name.rfind("job-", 0) == 0) {
      try {
        next_id_ = std::max<uint64_t>(next_id_, std::stoull(name.substr(4)) + 1);
      } catch (...) {
      }
    }
  }
  log_info("tracking jobs in cgroup {}", jobs_dir_.string());
}

uint64_t JobTracker::add(pid_t pid) {
  uint64_t id = next_id_++;
  fs::path dir = jobs_dir_ / fmt::format("job-{}", id);
  fs::create_directory(dir);
  try {
    cgroup::attach(dir, pid);
  } catch (...) {
    ::rmdir(dir.c_str());
    throw;
  }
  return id;
}

std::vector<JobProcess> JobTracker::processes() const {
  std::vector<JobProcess> out;
  std::error_code ec;
  for (auto& e : fs::directory_iterator(jobs_dir_, ec)) {
    auto name = e.path().filename().string();
    if (name.rfind("job-", 0) != 0) continue;
    uint64_t job = 0;
    try {
      job = std::stoull(name.substr(4));
    } catch (...) {
      continue;
    }
    std::ifstream procs(e.path() / "cgroup.procs");
    for (pid_t pid; procs >> pid;) {
      JobProcess p;
      p.job = job;
      p.pid = pid;
      p.command = read_cmdline(pid);
      std::ifstream statm(fmt::format("/proc/{}/statm", pid));
      uint64_t size = 0, resident = 0;
      if (statm >> size >> resident) p.rss = resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
      std::ifstream stat(fmt::format("/proc/{}/stat", pid));
      std::string s((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
      if (auto rp = s.rfind(')'); rp != std::string::npos && rp + 2 < s.size()) p.state = s[rp + 2];
      out.push_back(std::move(p));
    }
  }
  std::sort(out.begin(), out.end(), [](const JobProcess& a, const JobProcess& b) { return a.pid < b.pid; });
  return out;
}

size_t JobTracker::count() const {
  size_t n = 0;
  std::error_code ec;
  for (auto& e : fs::directory_iterator(jobs_dir_, ec)) {
    if (e.path().filename().string().rfind("job-", 0) != 0) continue;
    std::ifstream procs(e.path() / "cgroup.procs");
    for (pid_t pid; procs >> pid;) ++n;
  }
  return n;
}

size_t JobTracker::sweep() {
  size_t removed = 0;
  std::error_code ec;
  std::vector<fs::path> dirs;
  for (auto& e : fs::directory_iterator(jobs_dir_, ec))
    if (e.path().filename().string().rfind("job-", 0) == 0) dirs.push_back(e.path());
  for (auto& d : dirs) {
    std::ifstream events(d / "cgroup.events");
    std::string key;
    int value = 1;
    bool populated = true;
    while (events >> key >> value)
      if (key == "populated") populated = value != 0;
    if (!populated && ::rmdir(d.c_str()) == 0) ++removed;
  }
  return removed;
}

}  // namespace roam::home
