#include "roam/image_proc.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <charconv>

#include <fmt/format.h>

#include "roam/error.hpp"
#include "roam/fd.hpp"

namespace roam::image::proc {

std::string path(pid_t pid, std::string_view name) { return fmt::format("/proc/{}/{}", pid, name); }

std::string read_file(const std::string& file) {
  FileDesc fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw SysError("open " + file, errno);
  std::string out;
  size_t chunk = 16384;
  for (;;) {
    size_t old = out.size();
    out.resize(old + chunk);
    ssize_t n = ::read(fd.get(), out.data() + old, chunk);
    if (n < 0) {
      if (errno == EINTR) {
        out.resize(old);
        continue;
      }
      throw SysError("read " + file, errno);
    }
    out.resize(old + static_cast<size_t>(n));
    if (n == 0) break;
    if (chunk < (1u << 20)) chunk *= 2;
  }
  return out;
}

std::optional<std::string> status_field(std::string_view status, std::string_view key) {
  size_t pos = 0;
  while (pos < status.size()) {
    size_t eol = status.find('\n', pos);
    if (eol == std::string_view::npos) eol = status.size();
    std::string_view line = status.substr(pos, eol - pos);
    pos = eol + 1;
    if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == ':') {
      std::string_view v = line.substr(key.size() + 1);
      while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
      while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
      return std::string(v);
    }
  }
  return std::nullopt;
}

uint64_t status_number(std::string_view status, std::string_view key, int base) {
  auto v = status_field(status, key);
  if (!v) throw FormatError(fmt::format("status has no {} line", key));
  return parse_u64(*v, base, key);
}

std::vector<std::string> stat_fields(std::string_view stat) {
  // "pid (comm) state ...": comm ends at the last ')' because it may contain
  // anything, ')' and spaces included.
  size_t open = stat.find(" (");
  size_t close = stat.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open)
    throw FormatError("unexpected /proc/PID/stat text");
  std::vector<std::string> f;
  f.emplace_back();
  f.emplace_back(stat.substr(0, open));
  f.emplace_back(stat.substr(open + 2, close - open - 2));
  size_t pos = close + 1;
  while (pos < stat.size()) {
    while (pos < stat.size() && (stat[pos] == ' ' || stat[pos] == '\n')) ++pos;
    size_t end = pos;
    while (end < stat.size() && stat[end] != ' ' && stat[end] != '\n') ++end;
    if (end > pos) f.emplace_back(stat.substr(pos, end - pos));
    pos = end;
  }
  return f;
}

uint64_t parse_u64(std::string_view text, int base, std::string_view what) {
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v, base);
  if (ec != std::errc() || p != text.data() + text.size() || text.empty())
    throw FormatError(fmt::format("bad number '{}' for {}", text, what));
  return v;
}

int64_t parse_i64(std::string_view text, std::string_view what) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v, 10);
  if (ec != std::errc() || p != text.data() + text.size() || text.empty())
    throw FormatError(fmt::format("bad number '{}' for {}", text, what));
  return v;
}

}  // namespace roam::image::proc
