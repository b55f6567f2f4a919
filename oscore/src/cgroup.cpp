#include "roam/cgroup.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <fstream>
#include <set>
#include <sstream>
#include <system_error>

#include <fmt/format.h>

#include "roam/error.hpp"
#include "roam/fd.hpp"

namespace roam::cgroup {
namespace fs = std::filesystem;

namespace {

// mountinfo escapes blanks and backslashes in paths as \ooo.
std::string unescape_octal(std::string_view s) {
  std::string out;
  auto octal = [](char c) { return c >= '0' && c <= '7'; };
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && octal(s[i + 1]) && octal(s[i + 2]) && octal(s[i + 3])) {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(sep, start);
    if (end == std::string_view::npos) end = s.size();
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// Whether `word` is one of the items of `list`, which are separated by `sep`
// (cgroup files end in a newline, so that separates too).
bool has_word(std::string_view list, std::string_view word, char sep) {
  for (auto line : split(list, '\n'))
    for (auto w : split(line, sep))
      if (w == word) return true;
  return false;
}

// Prefers the conventional places when a controller is mounted twice.
bool preferred(const fs::path& candidate, const fs::path& current) {
  auto rank = [](const fs::path& p) {
    if (p == "/sys/fs/cgroup" || p == "/sys/fs/cgroup/unified" || p == "/sys/fs/cgroup/cpuset") return 0;
    return 1;
  };
  return current.empty() || rank(candidate) < rank(current);
}

long pidfd_open(pid_t pid) { return ::syscall(SYS_pidfd_open, pid, 0); }
long pidfd_send_signal(int pidfd, int sig) { return ::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0); }

// Whether /proc/PID/cgroup still names a cgroup at or below `rel` in some
// hierarchy: the check between opening a pidfd and killing through it.
bool process_in(pid_t pid, const std::string& rel) {
  std::ifstream in(fmt::format("/proc/{}/cgroup", pid));
  std::string line;
  while (std::getline(in, line)) {
    auto colon = line.find(':', line.find(':') + 1);
    if (colon == std::string::npos) continue;
    std::string_view path = std::string_view(line).substr(colon + 1);
    if (path == rel || (path.size() > rel.size() && path.substr(0, rel.size()) == rel && path[rel.size()] == '/'))
      return true;
  }
  return false;
}

// The cgroup path of `dir` relative to the hierarchy it lives in, as
// /proc/PID/cgroup prints it ("/roam-cluster/node1").
std::string relative_to_mount(const fs::path& dir) {
  for (const auto& m : find_mounts().all) {
    auto rel = dir.lexically_relative(m);
    if (!rel.empty() && *rel.begin() != "..") return "/" + rel.string();
  }
  return {};
}

}  // namespace

Mounts parse_mountinfo(std::string_view text) {
  Mounts m;
  for (auto line : split(text, '\n')) {
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
    auto fields = split(line, ' ');
    auto dash = std::find(fields.begin(), fields.end(), std::string_view("-"));
    if (fields.size() < 5 || dash == fields.end() || fields.end() - dash < 4) continue;
    std::string_view fstype = dash[1];
    std::string_view superopts = dash[3];
    fs::path mountpoint = unescape_octal(fields[4]);
    if (fstype == "cgroup2") {
      m.all.push_back(mountpoint);
      if (preferred(mountpoint, m.unified)) m.unified = mountpoint;
    } else if (fstype == "cgroup") {
      m.all.push_back(mountpoint);
      if (has_word(superopts, "cpuset", ',') && preferred(mountpoint, m.cpuset_v1)) m.cpuset_v1 = mountpoint;
      if (has_word(superopts, "memory", ',') && preferred(mountpoint, m.memory_v1)) m.memory_v1 = mountpoint;
    }
  }
  return m;
}

Mounts find_mounts() {
  std::ifstream in("/proc/self/mountinfo");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_mountinfo(ss.str());
}

CpusetSource cpuset_source(const Mounts& m) {
  if (!m.unified.empty()) {
    std::error_code ec;
    if (fs::exists(m.unified / "cgroup.controllers", ec) &&
        has_word(read_file(m.unified / "cgroup.controllers"), "cpuset", ' '))
      return CpusetSource::v2;
  }
  if (!m.cpuset_v1.empty()) return CpusetSource::v1;
  return CpusetSource::none;
}

MemorySource memory_source(const Mounts& m) {
  if (!m.unified.empty()) {
    std::error_code ec;
    if (fs::exists(m.unified / "cgroup.controllers", ec) &&
        has_word(read_file(m.unified / "cgroup.controllers"), "memory", ' '))
      return MemorySource::v2;
  }
  if (!m.memory_v1.empty()) return MemorySource::v1;
  return MemorySource::none;
}

void limit_memory(const fs::path& dir, MemorySource source, uint64_t bytes) {
  ROAM_ASSERT(source != MemorySource::none, fmt::format("no memory controller for {}", dir.string()));
  std::error_code ec;
  std::string value = fmt::format("{}", bytes);
  if (source == MemorySource::v2) {
    write_file(dir / "memory.max", value);
    if (fs::exists(dir / "memory.swap.max", ec)) write_file(dir / "memory.swap.max", "0");
    return;
  }
  // memsw (memory + swap) may never be below the memory limit: set that first.
  write_file(dir / "memory.limit_in_bytes", value);
  if (fs::exists(dir / "memory.memsw.limit_in_bytes", ec)) write_file(dir / "memory.memsw.limit_in_bytes", value);
}

std::vector<int> parse_cpu_list(std::string_view text) {
  std::set<int> cpus;
  auto bad = [&] { return UserError(fmt::format("bad CPU list '{}'", text)); };
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  for (auto part : split(text, ',')) {
    auto dash = part.find('-');
    auto number = [&](std::string_view s) {
      int v = 0;
      auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (ec != std::errc() || p != s.data() + s.size() || v < 0) throw bad();
      return v;
    };
    int lo = number(part.substr(0, dash));
    int hi = dash == std::string_view::npos ? lo : number(part.substr(dash + 1));
    if (hi < lo) throw bad();
    for (int c = lo; c <= hi; ++c) cpus.insert(c);
  }
  return {cpus.begin(), cpus.end()};
}

std::string format_cpu_list(std::vector<int> cpus) {
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  std::string out;
  for (size_t i = 0; i < cpus.size();) {
    size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += j == i ? fmt::format("{}", cpus[i]) : fmt::format("{}-{}", cpus[i], cpus[j]);
    i = j + 1;
  }
  return out;
}

std::vector<int> available_cpus(const Mounts& m, CpusetSource source) {
  std::vector<fs::path> candidates;
  if (source == CpusetSource::v2) candidates.push_back(m.unified / "cpuset.cpus.effective");
  if (source == CpusetSource::v1) {
    candidates.push_back(m.cpuset_v1 / "cpuset.effective_cpus");
    candidates.push_back(m.cpuset_v1 / "cpuset.cpus");
  }
  candidates.push_back("/sys/devices/system/cpu/online");
  for (const auto& f : candidates) {
    std::error_code ec;
    if (!fs::exists(f, ec)) continue;
    auto cpus = parse_cpu_list(read_file(f));
    if (!cpus.empty()) return cpus;
  }
  throw UserError("cannot tell which CPUs this machine has (/sys/devices/system/cpu/online is unreadable)");
}

std::string read_file(const fs::path& file) {
  FileDesc fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw SysError(fmt::format("open {}", file.string()), errno);
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw SysError(fmt::format("read {}", file.string()), errno);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

void write_file(const fs::path& file, std::string_view value) {
  FileDesc fd(::open(file.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) throw SysError(fmt::format("open {}", file.string()), errno);
  if (::write(fd.get(), value.data(), value.size()) < 0)
    throw SysError(fmt::format("write '{}' to {}", value, file.string()), errno);
}

void make(const fs::path& dir) {
  if (::mkdir(dir.c_str(), 0755) < 0 && errno != EEXIST) throw SysError(fmt::format("mkdir {}", dir.string()), errno);
}

bool enable_controller(const fs::path& root, const fs::path& leaf, std::string_view controller) {
  auto rel = leaf.lexically_relative(root);
  ROAM_ASSERT(!rel.empty() && *rel.begin() != "..", fmt::format("{} is not below {}", leaf.string(), root.string()));
  auto enable_in = [&](const fs::path& cg) {
    if (has_word(read_file(cg / "cgroup.subtree_control"), controller, ' ')) return false;
    write_file(cg / "cgroup.subtree_control", fmt::format("+{}", controller));
    return true;
  };
  bool at_root = enable_in(root);
  fs::path at = root;
  for (const auto& part : rel.parent_path()) {
    at /= part;
    enable_in(at);
  }
  return at_root;
}

void attach(const fs::path& dir, pid_t pid) { write_file(dir / "cgroup.procs", fmt::format("{}", pid)); }

std::vector<pid_t> procs_in_tree(const fs::path& dir) {
  std::vector<pid_t> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  std::vector<fs::path> dirs{dir};
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec))
    if (it->is_directory(ec)) dirs.push_back(it->path());
  for (const auto& d : dirs) {
    std::ifstream in(d / "cgroup.procs");
    pid_t pid;
    while (in >> pid) out.push_back(pid);
  }
  return out;
}

void kill_tree(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return;
  if (fs::exists(dir / "cgroup.kill", ec)) {
    write_file(dir / "cgroup.kill", "1");
    return;
  }
  std::string rel = relative_to_mount(dir);
  for (pid_t pid : procs_in_tree(dir)) {
    FileDesc pidfd(static_cast<int>(pidfd_open(pid)));
    if (!pidfd) continue;  // gone already
    if (!rel.empty() && !process_in(pid, rel)) continue;  // the pid was reused outside the tree
    pidfd_send_signal(pidfd.get(), SIGKILL);
  }
}

bool remove_tree(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return true;
  bool all = true;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (entry.is_directory(ec) && !remove_tree(entry.path())) all = false;
  if (::rmdir(dir.c_str()) < 0 && errno != ENOENT) return false;
  return all;
}

}  // namespace roam::cgroup
