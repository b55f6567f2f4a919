// The identity of a mapped file, independent of the device and inode it sits
// on, so a target node can tell whether its copy of "/usr/lib/libc.so.6" is
// the same file and re-map never-written pages from it instead of receiving
// them.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "roam/fd.hpp"

namespace roam::image {

// Values are part of the image schema: append only.
enum class DigestKind : uint8_t {
  elf_build_id = 1,    // the NT_GNU_BUILD_ID note of an ELF file (names the build, not the bytes)
  blake2b = 2,         // BLAKE2b-256 of the whole content
  blake2b_sampled = 3, // BLAKE2b-256 of size, mtime, the first and the last MiB (big non-ELF files)
};

// Files above this size that carry no build id are sampled, not hashed: a
// restore must not spend seconds hashing a 20 GiB data file it maps
// privately. The sample binds the size and mtime into the digest, so a
// rewrite that keeps both and touches only the middle goes unnoticed.
inline constexpr uint64_t kFullHashLimit = 64ull << 20;
inline constexpr uint64_t kSampleBytes = 1ull << 20;

struct FileIdentity {
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  DigestKind kind = DigestKind::blake2b;
  std::vector<uint8_t> digest;
  bool operator==(const FileIdentity&) const = default;
};

// SysError when the file cannot be opened or read.
FileIdentity identify(const std::string& path);
FileIdentity identify(const FileDesc& fd, const std::string& name_for_errors);

// Whether the file at `path` (on this node) is the one `id` describes:
// size and digest must agree; so must mtime, except for a whole-content hash,
// which proves the bytes by itself. A build id names a build but a stripped,
// prelinked or patched file keeps it while its bytes (and usually size)
// change, hence the mtime. False when the file is missing or unreadable.
bool matches(const FileIdentity& id, const std::string& path);
// The same rule for a file already identified here.
bool same_file(const FileIdentity& id, const FileIdentity& here);

// identify() once per version of a file (device, inode, size, mtime): a
// dlopen maps a library four or five times.
class IdentityCache {
 public:
  // The identity of the open file `fd`; SysError when it cannot be read.
  const FileIdentity& of(int fd, const std::string& name_for_errors);

 private:
  std::map<std::tuple<uint64_t, uint64_t, uint64_t, int64_t>, FileIdentity> known_;
};

}  // namespace roam::image
