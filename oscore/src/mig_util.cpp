#include "roam/mig_util.hpp"

#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "roam/error.hpp"
#include "roam/syscalls.hpp"

namespace roam::mig {

Identity identity_of(pid_t pid) {
  std::ifstream status(fmt::format("/proc/{}/status", pid));
  std::string line;
  Identity id;
  while (std::getline(status, line)) {
    std::istringstream in(line);
    std::string key;
    in >> key;
    if (key == "PPid:") in >> id.ppid;
    if (key == "Uid:") in >> id.uid >> id.euid;
    if (key == "Gid:") in >> id.gid >> id.egid;
  }
  if (id.ppid < 0 || id.uid < 0 || id.gid < 0) throw SysError(fmt::format("/proc/{}/status unreadable", pid), EIO);
  return id;
}

FileDesc pidfd_of(pid_t pid) {
  return FileDesc(check_sys(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)), fmt::format("pidfd_open {}", pid)));
}

const char* syscall_name(int nr) {
  const SyscallInfo* info = syscall_info(nr);
  return info ? info->name : "unknown";
}

std::vector<std::string> list_fds(pid_t pid) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(fmt::format("/proc/{}/fd", pid), ec))
    names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

Range vdso_of(pid_t pid) {
  std::ifstream maps(fmt::format("/proc/{}/maps", pid));
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find("[vdso]") == std::string::npos) continue;
    Range r;
    std::sscanf(line.c_str(), "%lx-%lx", &r.begin, &r.end);
    return r;
  }
  throw SysError(fmt::format("no [vdso] in /proc/{}/maps", pid), ENOENT);
}

long rss_kib(pid_t pid) {
  std::ifstream status(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  return -1;
}

SignalSets signal_sets(pid_t pid) {
  std::ifstream status(fmt::format("/proc/{}/status", pid));
  std::string line;
  SignalSets s;
  while (std::getline(status, line)) {
    auto field = [&](const char* key, uint64_t& out) {
      if (line.rfind(key, 0) == 0) out = std::strtoull(line.c_str() + std::strlen(key), nullptr, 16);
    };
    field("SigBlk:", s.blocked);
    field("SigIgn:", s.ignored);
    field("SigCgt:", s.caught);
  }
  return s;
}

int64_t clock_ns(clockid_t clock) {
  timespec ts{};
  ::clock_gettime(clock, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

}  // namespace roam::mig
