// capture_from_proc: the part of a process image readable without ptrace.
#include <fcntl.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <utility>

#include <fstream>

#include <fmt/format.h>

#include "roam/error.hpp"
#include "roam/image.hpp"
#include "roam/image_proc.hpp"
#include "roam/log.hpp"

namespace roam::image {
namespace {

std::string read_link(const std::string& path) {
  std::string buf(4096, '\0');
  ssize_t n = ::readlink(path.c_str(), buf.data(), buf.size());
  if (n < 0) throw SysError("readlink " + path, errno);
  buf.resize(static_cast<size_t>(n));
  return buf;
}

std::string trim_newline(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

MmFields mm_fields(const std::vector<std::string>& stat, const std::string& auxv) {
  if (stat.size() < 52) throw FormatError(fmt::format("/proc/PID/stat has {} fields, want 52", stat.size() - 1));
  auto f = [&](size_t n) { return proc::parse_u64(stat[n], 10, fmt::format("stat field {}", n)); };
  MmFields mm;
  mm.start_code = f(26);
  mm.end_code = f(27);
  mm.start_stack = f(28);
  mm.start_data = f(45);
  mm.end_data = f(46);
  mm.start_brk = f(47);
  mm.arg_start = f(48);
  mm.arg_end = f(49);
  mm.env_start = f(50);
  mm.env_end = f(51);
  for (size_t at = 0; at + 16 <= auxv.size(); at += 16) {
    AuxvEntry e;
    std::memcpy(&e.type, auxv.data() + at, 8);
    std::memcpy(&e.value, auxv.data() + at + 8, 8);
    if (e.type == 0) break;  // AT_NULL
    mm.auxv.push_back(e);
  }
  return mm;
}

SignalMasks signal_masks(const std::string& status) {
  SignalMasks s;
  s.blocked = proc::status_number(status, "SigBlk", 16);
  s.pending_private = proc::status_number(status, "SigPnd", 16);
  s.pending_shared = proc::status_number(status, "ShdPnd", 16);
  s.ignored = proc::status_number(status, "SigIgn", 16);
  s.caught = proc::status_number(status, "SigCgt", 16);
  return s;
}

// /proc/PID/timers (fs/proc/base.c show_timer), four lines a timer:
//   ID: 3 / signal: 10/0000000000001234 / notify: signal/pid.77 / ClockID: 1
std::vector<PosixTimer> posix_timers(const std::string& text) {
  std::vector<PosixTimer> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    std::string_view line(text.data() + pos, eol - pos);
    pos = eol + 1;
    size_t colon = line.find(": ");
    if (colon == std::string_view::npos) continue;
    std::string_view key = line.substr(0, colon), v = line.substr(colon + 2);
    if (key == "ID") {
      out.emplace_back();
      out.back().id = static_cast<int32_t>(proc::parse_i64(v, "timer ID"));
      continue;
    }
    if (out.empty()) throw FormatError("/proc/PID/timers: a field before the first ID");
    PosixTimer& t = out.back();
    if (key == "signal") {
      size_t slash = v.find('/');
      if (slash == std::string_view::npos) throw FormatError(fmt::format("timers: bad signal line '{}'", line));
      t.signo = static_cast<int32_t>(proc::parse_i64(v.substr(0, slash), "timer signal"));
      std::string_view value = v.substr(slash + 1);
      if (value.substr(0, 2) == "0x") value.remove_prefix(2);
      t.sigev_value = proc::parse_u64(value, 16, "timer sigev_value");
    } else if (key == "notify") {
      size_t slash = v.find('/'), dot = v.find('.');
      if (slash == std::string_view::npos || dot == std::string_view::npos || dot < slash)
        throw FormatError(fmt::format("timers: bad notify line '{}'", line));
      std::string_view how = v.substr(0, slash), who = v.substr(slash + 1, dot - slash - 1);
      if (how == "signal") t.sigev_notify = SIGEV_SIGNAL;
      else if (how == "none") t.sigev_notify = SIGEV_NONE;
      else if (how == "thread") t.sigev_notify = SIGEV_THREAD;
      else throw FormatError(fmt::format("timers: unknown notify '{}'", how));
      if (who == "tid") t.sigev_notify |= SIGEV_THREAD_ID;
      t.notify_pid = static_cast<int32_t>(proc::parse_i64(v.substr(dot + 1), "timer notify pid"));
    } else if (key == "ClockID") {
      t.clock = static_cast<int32_t>(proc::parse_i64(v, "timer clock"));
    }
  }
  return out;
}

// /proc/PID/limits, one row per resource in number order: what prlimit
// gives, for a process of another user when we lack CAP_SYS_RESOURCE.
std::vector<Rlimit> rlimits_from_proc(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/limits", pid));
  std::string line;
  std::vector<Rlimit> out;
  auto value = [](std::string v) {
    v.erase(0, v.find_first_not_of(' '));
    v.erase(v.find_last_not_of(' ') + 1);
    return v == "unlimited" ? RLIM64_INFINITY : static_cast<uint64_t>(proc::parse_i64(v, "limit"));
  };
  std::getline(in, line);  // header
  while (std::getline(in, line) && out.size() < RLIMIT_NLIMITS) {
    if (line.size() < 47) throw FormatError(fmt::format("/proc/{}/limits: short line '{}'", pid, line));
    out.push_back({static_cast<uint32_t>(out.size()), value(line.substr(26, 21)), value(line.substr(47, 21))});
  }
  if (out.size() != RLIMIT_NLIMITS) throw FormatError(fmt::format("/proc/{}/limits: {} rows", pid, out.size()));
  return out;
}

std::vector<Rlimit> rlimits(pid_t pid) {
  std::vector<Rlimit> out;
  for (int r = 0; r < RLIMIT_NLIMITS; ++r) {
    struct rlimit64 lim {};
    if (::prlimit64(pid, static_cast<__rlimit_resource>(r), nullptr, &lim) < 0) {
      if (errno == EPERM) return rlimits_from_proc(pid);
      throw SysError(fmt::format("prlimit({}, {})", pid, r), errno);
    }
    out.push_back({static_cast<uint32_t>(r), lim.rlim_cur, lim.rlim_max});
  }
  return out;
}

std::optional<RobustList> robust_list(pid_t pid) {
  void* head = nullptr;
  size_t len = 0;
  if (::syscall(SYS_get_robust_list, pid, &head, &len) < 0) {
    if (errno == ESRCH) throw SysError(fmt::format("get_robust_list({})", pid), errno);
    return std::nullopt;  // EPERM: not ours to read; leave it to the injection path
  }
  return RobustList{reinterpret_cast<uintptr_t>(head), len};
}

// Identifies the file a region maps. map_files opens exactly the mapped
// inode (renamed or replaced files included); without CAP_SYS_ADMIN fall back
// to the path and accept it only when it is still the same inode.
std::optional<FileIdentity> identify_mapping(pid_t pid, const Vma& v) {
  std::string mapped = map_files_path(pid, v);
  FileDesc fd(::open(mapped.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    fd.reset(::open(v.path.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat st {};
    if (!fd || ::fstat(fd.get(), &st) < 0 || static_cast<uint64_t>(st.st_ino) != v.inode) return std::nullopt;
  }
  try {
    return identify(fd, v.path);
  } catch (const SysError& e) {
    log_warn("cannot identify {} mapped by {}: {}", v.path, pid, e.what());
    return std::nullopt;
  }
}

}  // namespace

ProcessImage capture_from_proc(pid_t pid, const CaptureOptions& options) {
  return capture_from_proc(pid, options, read_maps(pid));
}

ProcessImage capture_from_proc(pid_t pid, const CaptureOptions& options, std::vector<Vma> vmas) {
  ProcessImage img;
  img.pid = pid;
  std::string status = proc::read_file(pid, "status");
  std::vector<std::string> stat = proc::stat_fields(proc::read_file(pid, "stat"));
  img.comm = trim_newline(proc::read_file(pid, "comm"));
  img.exe = read_link(proc::path(pid, "exe"));
  img.personality =
      static_cast<uint32_t>(proc::parse_u64(trim_newline(proc::read_file(pid, "personality")), 16, "personality"));
  img.umask = static_cast<uint32_t>(proc::status_number(status, "Umask", 8));
  img.mm = mm_fields(stat, proc::read_file(pid, "auxv"));
  img.signals = signal_masks(status);
  img.robust_list = robust_list(pid);
  img.rlimits = rlimits(pid);
  try {
    img.posix_timers = posix_timers(proc::read_file(pid, "timers"));
  } catch (const SysError& e) {
    if (e.err() != ENOENT) throw;
    log_warn("/proc/{}/timers is missing (kernel without CONFIG_CHECKPOINT_RESTORE): POSIX timers not captured", pid);
  }
  img.misc.no_new_privs = proc::status_number(status, "NoNewPrivs") != 0;
  if (auto thp = proc::status_field(status, "THP_enabled")) img.misc.thp_disabled = *thp == "0";
  img.misc.ipc_lock = (proc::status_number(status, "CapEff", 16) >> CAP_IPC_LOCK) & 1;

  std::map<std::pair<uint64_t, uint64_t>, std::optional<FileIdentity>> seen;  // (dev, inode): libc is mapped 5 times
  for (Vma& v : vmas) {
    ImageVma iv{std::move(v), std::nullopt};
    if (options.file_identities && (iv.vma.kind == VmaKind::file || iv.vma.kind == VmaKind::deleted_file)) {
      auto key = std::make_pair(uint64_t{iv.vma.dev_major} << 32 | iv.vma.dev_minor, iv.vma.inode);
      auto it = seen.find(key);
      if (it == seen.end()) it = seen.emplace(key, identify_mapping(pid, iv.vma)).first;
      iv.file = it->second;
    }
    img.vmas.push_back(std::move(iv));
  }
  if (options.page_map) {
    PageScanner scanner(pid, options.scan);
    for (const ImageVma& iv : img.vmas) {
      auto runs = scanner.runs(iv.vma);
      img.page_map.insert(img.page_map.end(), runs.begin(), runs.end());
    }
  }
  return img;
}

bool content_required(const ImageVma& vma, const PageRun& run, bool target_file_matches) {
  switch (run.kind) {
    case PageKind::anon: return true;
    case PageKind::file_clean: return !vma.file.has_value() || !target_file_matches;
    case PageKind::absent: return false;
  }
  return true;
}

std::vector<PageRun> runs_to_send(const ProcessImage& image, std::span<const uint64_t> mismatched) {
  std::vector<PageRun> out;
  auto emit = [&](uint64_t start, uint64_t end, PageKind kind) {
    if (end <= start) return;
    if (!out.empty() && out.back().kind == kind && out.back().end() == start) {
      out.back().npages += (end - start) / kPageSize;
    } else {
      out.push_back({start, (end - start) / kPageSize, kind});
    }
  };
  auto run = image.page_map.begin();
  for (const ImageVma& iv : image.vmas) {
    const Vma& v = iv.vma;
    while (run != image.page_map.end() && run->end() <= v.start) ++run;
    auto first = run;
    while (run != image.page_map.end() && run->start < v.end) {
      ROAM_ASSERT(run->start >= v.start && run->end() <= v.end,
                  fmt::format("page run {:#x}+{} crosses region {:#x}-{:#x}", run->start, run->npages, v.start, v.end));
      ++run;
    }
    bool matches = std::find(mismatched.begin(), mismatched.end(), v.start) == mismatched.end();
    bool whole_file = v.file_backed() && !v.shared && iv.file && !matches;
    if (!whole_file) {
      for (auto r = first; r != run; ++r)
        if (content_required(iv, *r, matches)) emit(r->start, r->end(), r->kind);
      continue;
    }
    // Everything backed by the file: its pages as file_clean, written ones as
    // anon. Pages past the end of the file fault (SIGBUS) and are skipped.
    uint64_t file_bytes = iv.file->size > v.offset ? iv.file->size - v.offset : 0;
    uint64_t file_end = v.start + std::min(v.size(), (file_bytes + kPageSize - 1) / kPageSize * kPageSize);
    uint64_t at = v.start;
    for (auto r = first; r != run; ++r) {
      emit(at, std::min(r->start, file_end), PageKind::file_clean);
      if (r->kind == PageKind::anon) emit(r->start, r->end(), PageKind::anon);
      else emit(std::max(r->start, at), std::min(r->end(), file_end), PageKind::file_clean);
      at = std::max(at, r->end());
    }
    emit(at, file_end, PageKind::file_clean);
  }
  return out;
}

}  // namespace roam::image
