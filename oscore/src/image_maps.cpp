#include "roam/image_maps.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <utility>

#include <fmt/format.h>

#include "roam/image_proc.hpp"

namespace roam::image {
namespace {

constexpr std::string_view kDeletedSuffix = " (deleted)";

// show_map_vma() pads the header to this column before it prints a name
// (seq_setwidth(25 + 6 * sizeof(void*) - 1), then seq_pad(m, ' ')).
constexpr size_t kNameColumn = 25 + 6 * 8 - 1;

constexpr std::array<std::pair<std::string_view, uint64_t>, 33> kFlagCodes{{
    {"rd", kVmReadable},     {"wr", kVmWritable},    {"ex", kVmExecutable},  {"sh", kVmShared},
    {"mr", kVmMayRead},      {"mw", kVmMayWrite},    {"me", kVmMayExec},     {"ms", kVmMayShare},
    {"gd", kVmGrowsDown},    {"pf", kVmPfnMap},      {"lo", kVmLocked},      {"io", kVmIo},
    {"sr", kVmSeqRead},      {"rr", kVmRandRead},    {"dc", kVmDontCopy},    {"de", kVmDontExpand},
    {"lf", kVmLockOnFault},  {"ac", kVmAccount},     {"nr", kVmNoReserve},   {"ht", kVmHugetlb},
    {"sf", kVmSync},         {"wf", kVmWipeOnFork},  {"dd", kVmDontDump},    {"sd", kVmSoftDirty},
    {"mm", kVmMixedMap},     {"hg", kVmHugePage},    {"nh", kVmNoHugePage},  {"mg", kVmMergeable},
    {"um", kVmUffdMissing},  {"uw", kVmUffdWp},      {"ui", kVmUffdMinor},   {"ss", kVmShadowStack},
    {"sl", kVmSealed},
}};

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// Reads one token ending at `stop` starting at pos; advances pos past it and the stop char.
std::string_view token(std::string_view line, size_t& pos, char stop) {
  size_t end = line.find(stop, pos);
  if (end == std::string_view::npos) end = line.size();
  std::string_view t = line.substr(pos, end - pos);
  pos = end < line.size() ? end + 1 : end;
  return t;
}

bool is_header(std::string_view line) {
  // "start-end ...": only region headers begin with a hex digit; smaps'
  // attribute lines begin with a capitalised key ("Size:", "VmFlags:").
  return !line.empty() && ((line[0] >= '0' && line[0] <= '9') || (line[0] >= 'a' && line[0] <= 'f'));
}

std::string unescape_newlines(std::string_view s) {
  // maps escapes only '\n' (as "\012"); a literal "\012" in a name is
  // indistinguishable and reads back as a newline.
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && s.substr(i, 4) == "\\012") {
      out.push_back('\n');
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

VmaKind kind_of(std::string_view path, bool deleted) {
  if (path.empty()) return VmaKind::anon;
  if (path == "[heap]") return VmaKind::heap;
  if (path == "[stack]") return VmaKind::stack;
  if (path == "[vdso]") return VmaKind::vdso;
  if (path == "[vvar]") return VmaKind::vvar;
  if (path == "[vvar_vclock]") return VmaKind::vvar_vclock;
  if (path == "[vsyscall]") return VmaKind::vsyscall;
  if (starts_with(path, "[anon:") || starts_with(path, "[anon_shmem:")) return VmaKind::anon;
  if (path.front() == '[') return VmaKind::other_special;
  if (path.front() != '/') return VmaKind::special_file;  // anon_inode:[io_uring], socket:[..]
  if (deleted && path == "/dev/zero") return VmaKind::anon;  // MAP_SHARED|MAP_ANONYMOUS (shmem)
  if (deleted && starts_with(path, "/SYSV")) return VmaKind::sysv_shm;
  if (deleted && path == "/[aio]") return VmaKind::special_file;
  return deleted ? VmaKind::deleted_file : VmaKind::file;
}

Vma parse_header(std::string_view line) {
  auto bad = [&](const char* what) {
    return FormatError(fmt::format("unexpected maps line ({}): '{}'", what, line));
  };
  Vma v;
  size_t pos = 0;
  try {
    v.start = proc::parse_u64(token(line, pos, '-'), 16, "start");
    v.end = proc::parse_u64(token(line, pos, ' '), 16, "end");
    std::string_view perms = token(line, pos, ' ');
    if (perms.size() != 4) throw bad("permissions");
    if (perms[0] == 'r') v.prot |= kProtRead;
    if (perms[1] == 'w') v.prot |= kProtWrite;
    if (perms[2] == 'x') v.prot |= kProtExec;
    v.shared = perms[3] == 's';
    v.offset = proc::parse_u64(token(line, pos, ' '), 16, "offset");
    v.dev_major = static_cast<uint32_t>(proc::parse_u64(token(line, pos, ':'), 16, "device major"));
    v.dev_minor = static_cast<uint32_t>(proc::parse_u64(token(line, pos, ' '), 16, "device minor"));
    size_t inode_start = pos;
    size_t inode_end = line.find(' ', pos);
    if (inode_end == std::string_view::npos) inode_end = line.size();
    v.inode = proc::parse_u64(line.substr(inode_start, inode_end - inode_start), 10, "inode");
    pos = inode_end;
  } catch (const FormatError&) {
    throw bad("fields");
  }
  if (v.end <= v.start || v.start % kPageSize || v.end % kPageSize) throw bad("range");
  if (pos < line.size()) {
    // The header ends with a blank after the inode (at pos); the kernel pads
    // it to kNameColumn and writes one more blank before the name. Taking the
    // name from exactly there keeps names that begin with blanks; fall back
    // to skipping blanks if the padding is not as expected.
    size_t name_at = std::max(kNameColumn, pos + 1) + 1;
    bool padded = name_at <= line.size() &&
                  line.substr(pos, name_at - pos).find_first_not_of(' ') == std::string_view::npos;
    if (!padded) {
      name_at = line.find_first_not_of(' ', pos);
      if (name_at == std::string_view::npos) name_at = line.size();
    }
    std::string_view name = line.substr(name_at);
    bool deleted = name.size() > kDeletedSuffix.size() &&
                   name.substr(name.size() - kDeletedSuffix.size()) == kDeletedSuffix;
    if (deleted) name.remove_suffix(kDeletedSuffix.size());
    v.path = unescape_newlines(name);
    v.kind = kind_of(v.path, deleted);
  }
  return v;
}

}  // namespace

std::string_view to_string(VmaKind k) {
  switch (k) {
    case VmaKind::anon: return "anon";
    case VmaKind::heap: return "heap";
    case VmaKind::stack: return "stack";
    case VmaKind::file: return "file";
    case VmaKind::deleted_file: return "deleted file";
    case VmaKind::vdso: return "vdso";
    case VmaKind::vvar: return "vvar";
    case VmaKind::vvar_vclock: return "vvar_vclock";
    case VmaKind::vsyscall: return "vsyscall";
    case VmaKind::sysv_shm: return "sysv shm";
    case VmaKind::special_file: return "special file";
    case VmaKind::other_special: return "special";
  }
  return "unknown";
}

uint64_t parse_vm_flags(std::string_view codes) {
  uint64_t bits = 0;
  size_t pos = 0;
  while (pos < codes.size()) {
    while (pos < codes.size() && codes[pos] == ' ') ++pos;
    size_t end = codes.find(' ', pos);
    if (end == std::string_view::npos) end = codes.size();
    std::string_view code = codes.substr(pos, end - pos);
    for (const auto& [name, bit] : kFlagCodes)
      if (name == code) bits |= bit;
    pos = end;
  }
  return bits;
}

bool Vma::file_backed() const {
  switch (kind) {
    case VmaKind::file:
    case VmaKind::deleted_file:
    case VmaKind::sysv_shm:
    case VmaKind::special_file: return true;
    default: return false;
  }
}

bool Vma::kernel_provided() const {
  switch (kind) {
    case VmaKind::vdso:
    case VmaKind::vvar:
    case VmaKind::vvar_vclock:
    case VmaKind::vsyscall: return true;
    default: return false;
  }
}

std::vector<Vma> parse_maps(std::string_view text) {
  std::vector<Vma> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    if (is_header(line)) {
      out.push_back(parse_header(line));
    } else if (starts_with(line, "VmFlags:") && !out.empty()) {
      out.back().flags = parse_vm_flags(line.substr(8));
    }
  }
  return out;
}

std::string map_files_path(pid_t pid, const Vma& vma) {
  return fmt::format("/proc/{}/map_files/{:x}-{:x}", pid, vma.start, vma.end);
}

std::vector<Vma> read_maps(pid_t pid) {
  std::vector<Vma> vmas = parse_maps(proc::read_file(pid, "smaps"));
  for (Vma& v : vmas) {
    if (v.kind != VmaKind::deleted_file) continue;
    // A file literally named "... (deleted)" still has links: take the name
    // back as it was. When map_files cannot be read, trust the suffix.
    struct stat st {};
    if (::stat(map_files_path(pid, v).c_str(), &st) == 0 && st.st_nlink > 0 &&
        static_cast<uint64_t>(st.st_ino) == v.inode) {
      std::string named = v.path + std::string(kDeletedSuffix);
      struct stat by_name {};
      if (::stat(named.c_str(), &by_name) == 0 && by_name.st_ino == st.st_ino && by_name.st_dev == st.st_dev) {
        v.path = named;
        v.kind = VmaKind::file;
      }
    }
  }
  return vmas;
}

}  // namespace roam::image
