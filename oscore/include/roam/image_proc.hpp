// Small readers for /proc/PID files shared by the process-image modules:
// whole-file reads (the files report size 0, so read to EOF), the
// "Key:\tvalue" lines of status, and the fields of stat (whose comm may hold
// spaces and parentheses).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace roam::image {

// A /proc file whose text is not in the format this kernel documents.
class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace proc {

std::string path(pid_t pid, std::string_view name);  // "/proc/PID/name"

// The whole file; SysError (naming the path) when it cannot be opened or read.
std::string read_file(const std::string& path);
inline std::string read_file(pid_t pid, std::string_view name) { return read_file(path(pid, name)); }

// The value of "key:" in status-format text, leading blanks trimmed.
std::optional<std::string> status_field(std::string_view status, std::string_view key);
// The same, parsed as an unsigned number in the given base; FormatError when
// the key is missing or the value is not a number.
uint64_t status_number(std::string_view status, std::string_view key, int base = 10);

// The fields of /proc/PID/stat, 1-indexed as in proc(5): fields[1] is the
// pid, fields[2] the comm without its parentheses. fields[0] is empty.
std::vector<std::string> stat_fields(std::string_view stat);

// Parses a whole string_view as a number; FormatError naming `what` otherwise.
uint64_t parse_u64(std::string_view text, int base, std::string_view what);
int64_t parse_i64(std::string_view text, std::string_view what);

}  // namespace proc
}  // namespace roam::image
