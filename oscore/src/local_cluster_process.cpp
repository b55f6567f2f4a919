// Processes of the local cluster, named so that a reused PID is never
// mistaken for ours, and the small helpers forked children share.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "local_cluster_detail.hpp"
#include "roam/error.hpp"

namespace roam::cluster::detail {
namespace {

// /proc/PID/stat after the comm field, which may itself hold ')' and blanks.
std::optional<std::vector<std::string>> stat_fields_after_comm(const std::string& stat_path) {
  std::ifstream in(stat_path);
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  auto rp = line.rfind(')');
  if (rp == std::string::npos) return std::nullopt;
  std::istringstream rest(line.substr(rp + 1));
  std::vector<std::string> fields;
  std::string f;
  while (rest >> f) fields.push_back(f);
  return fields;
}

// fields[0] is field 3 (state); field N is fields[N - 3].
constexpr size_t kStateField = 0;
constexpr size_t kStartTimeField = 22 - 3;

std::optional<char> state_of(pid_t pid) {
  auto f = stat_fields_after_comm(fmt::format("/proc/{}/stat", pid));
  if (!f || f->size() <= kStateField || (*f)[kStateField].empty()) return std::nullopt;
  return (*f)[kStateField][0];
}

}  // namespace

std::optional<uint64_t> start_time_of(pid_t pid) {
  auto f = stat_fields_after_comm(fmt::format("/proc/{}/stat", pid));
  if (!f || f->size() <= kStartTimeField) return std::nullopt;
  try {
    return std::stoull((*f)[kStartTimeField]);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::optional<ProcessRef> ref_of(pid_t pid) {
  auto t = start_time_of(pid);
  if (!t) return std::nullopt;
  return ProcessRef{pid, *t};
}

bool alive(const ProcessRef& p) {
  if (p.empty()) return false;
  auto t = start_time_of(p.pid);
  if (!t || *t != p.start_time) return false;
  auto s = state_of(p.pid);
  return s && *s != 'Z' && *s != 'X';
}

bool gone(const ProcessRef& p) {
  if (p.empty()) return true;
  auto t = start_time_of(p.pid);
  return !t || *t != p.start_time;
}

FileDesc open_pidfd(const ProcessRef& p) {
  if (p.empty()) return FileDesc();
  FileDesc fd(static_cast<int>(::syscall(SYS_pidfd_open, p.pid, 0)));
  if (!fd) return FileDesc();
  // The pidfd names whoever had the pid when it was opened; if that is still
  // the recorded process now, it was then too (a live pid is never reused).
  if (!alive(p)) return FileDesc();
  return fd;
}

bool send_signal(const FileDesc& pidfd, int sig) {
  return ::syscall(SYS_pidfd_send_signal, pidfd.get(), sig, nullptr, 0) == 0;
}

bool wait_exit(const FileDesc& pidfd, std::chrono::milliseconds timeout) {
  pollfd p{pidfd.get(), POLLIN, 0};
  for (;;) {
    int rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (rc < 0 && errno == EINTR) continue;
    return rc > 0;
  }
}

pid_t host_pid_of_child(const ProcessRef& parent, pid_t node_pid) {
  if (!alive(parent) || node_pid <= 0) return 0;
  std::ifstream children(fmt::format("/proc/{}/task/{}/children", parent.pid, parent.pid));
  pid_t child;
  while (children >> child) {
    std::ifstream status(fmt::format("/proc/{}/status", child));
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("NSpid:", 0) != 0) continue;
      std::istringstream ids(line.substr(6));
      pid_t id = 0, last = 0;
      while (ids >> id) last = id;
      if (last == node_pid) return child;
      break;
    }
  }
  return 0;
}

void write_all(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

void child_exit_error(int report_fd, const std::string& message) {
  std::string line = "error " + message;
  std::replace(line.begin(), line.end(), '\n', ' ');
  write_all(report_fd, line + "\n");
  ::_exit(1);
}

void stdio_to_devnull() {
  int null = ::open("/dev/null", O_RDWR);
  if (null < 0) return;
  for (int fd = 0; fd <= 2; ++fd)
    if (null != fd) ::dup2(null, fd);
  if (null > 2) ::close(null);
}

void close_fds_except(std::vector<int> keep) {
  keep.push_back(0);
  keep.push_back(1);
  keep.push_back(2);
  std::sort(keep.begin(), keep.end());
  keep.erase(std::unique(keep.begin(), keep.end()), keep.end());
  unsigned lo = 0;
  for (int k : keep) {
    if (k < 0) continue;
    if (static_cast<unsigned>(k) > lo) ::syscall(SYS_close_range, lo, static_cast<unsigned>(k) - 1, 0);
    lo = static_cast<unsigned>(k) + 1;
  }
  ::syscall(SYS_close_range, lo, UINT_MAX, 0);
}

void set_process_name(const std::string& name) {
  ::prctl(PR_SET_NAME, name.c_str(), 0, 0, 0);
  // Overwrite our copy of the command line as well (as setproctitle does), so
  // that ps shows what this fork is rather than the mosctl command line that
  // made it. The area is this process's own, copied on write at the fork.
  // /proc/self: inside a new PID namespace getpid() names someone else in
  // the /proc still mounted.
  auto f = stat_fields_after_comm("/proc/self/stat");
  constexpr size_t kArgStart = 48 - 3, kArgEnd = 49 - 3;
  if (!f || f->size() <= kArgEnd) return;
  uintptr_t start = std::stoull((*f)[kArgStart]), end = std::stoull((*f)[kArgEnd]);
  if (start == 0 || end <= start) return;
  size_t room = end - start;
  char* area = reinterpret_cast<char*>(start);
  std::memset(area, 0, room);
  std::memcpy(area, name.data(), std::min(name.size(), room - 1));
}

}  // namespace roam::cluster::detail
