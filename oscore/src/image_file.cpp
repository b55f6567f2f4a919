#include "roam/image_file.hpp"

#include <elf.h>
#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <optional>

#include "roam/error.hpp"

namespace roam::image {
namespace {

constexpr size_t kDigestBytes = 32;
constexpr uint64_t kMaxNoteBytes = 1u << 16;
constexpr size_t kMaxProgramHeaders = 4096;

void read_exact(const FileDesc& fd, void* out, size_t len, uint64_t at, const std::string& name) {
  auto* p = static_cast<unsigned char*>(out);
  while (len > 0) {
    ssize_t n = ::pread(fd.get(), p, len, static_cast<off_t>(at));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw SysError("read " + name, errno);
    if (n == 0) throw SysError("read " + name + ": file shrank while being identified", EIO);
    p += n;
    at += static_cast<uint64_t>(n);
    len -= static_cast<size_t>(n);
  }
}

// The NT_GNU_BUILD_ID of a little-endian ELF64 file, from its PT_NOTE
// segments; nullopt for anything else or any inconsistency.
std::optional<std::vector<uint8_t>> elf_build_id(const FileDesc& fd, uint64_t size, const std::string& name) {
  Elf64_Ehdr eh{};
  if (size < sizeof eh) return std::nullopt;
  read_exact(fd, &eh, sizeof eh, 0, name);
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
      eh.e_ident[EI_DATA] != ELFDATA2LSB || eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 ||
      eh.e_phnum > kMaxProgramHeaders || eh.e_phoff > size ||
      size - eh.e_phoff < uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr))
    return std::nullopt;
  std::vector<Elf64_Phdr> ph(eh.e_phnum);
  read_exact(fd, ph.data(), ph.size() * sizeof(Elf64_Phdr), eh.e_phoff, name);
  for (const Elf64_Phdr& p : ph) {
    if (p.p_type != PT_NOTE || p.p_filesz > kMaxNoteBytes || p.p_offset > size || size - p.p_offset < p.p_filesz)
      continue;
    std::vector<unsigned char> notes(p.p_filesz);
    read_exact(fd, notes.data(), notes.size(), p.p_offset, name);
    uint64_t align = p.p_align >= 8 ? 8 : 4;
    auto up = [align](uint64_t v) { return (v + align - 1) / align * align; };
    for (uint64_t at = 0; at + sizeof(Elf64_Nhdr) <= notes.size();) {
      Elf64_Nhdr nh{};
      std::memcpy(&nh, notes.data() + at, sizeof nh);
      uint64_t name_at = at + sizeof nh;
      uint64_t desc_at = name_at + up(nh.n_namesz);
      uint64_t next = desc_at + up(nh.n_descsz);
      if (desc_at > notes.size() || nh.n_descsz > notes.size() - desc_at) break;
      if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 && std::memcmp(notes.data() + name_at, "GNU", 4) == 0 &&
          nh.n_descsz > 0)
        return std::vector<uint8_t>(notes.data() + desc_at, notes.data() + desc_at + nh.n_descsz);
      at = next;
    }
  }
  return std::nullopt;
}

class Blake2b {
 public:
  Blake2b() {
    static const int ready = sodium_init();  // picks the fastest BLAKE2b for this CPU; idempotent
    ROAM_ASSERT(ready >= 0, "sodium_init");
    crypto_generichash_init(&st_, nullptr, 0, kDigestBytes);
  }
  void update(const void* p, size_t n) { crypto_generichash_update(&st_, static_cast<const unsigned char*>(p), n); }
  void update_range(const FileDesc& fd, uint64_t at, uint64_t len, const std::string& name) {
    std::vector<unsigned char> buf(static_cast<size_t>(std::min<uint64_t>(len, 1u << 20)));
    while (len > 0) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(len, buf.size()));
      read_exact(fd, buf.data(), n, at, name);
      update(buf.data(), n);
      at += n;
      len -= n;
    }
  }
  std::vector<uint8_t> finish() {
    std::vector<uint8_t> out(kDigestBytes);
    crypto_generichash_final(&st_, out.data(), out.size());
    return out;
  }

 private:
  crypto_generichash_state st_{};
};

}  // namespace

FileIdentity identify(const FileDesc& fd, const std::string& name) {
  struct stat st {};
  if (::fstat(fd.get(), &st) < 0) throw SysError("stat " + name, errno);
  FileIdentity id;
  id.size = static_cast<uint64_t>(st.st_size);
  id.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  if (auto build_id = elf_build_id(fd, id.size, name)) {
    id.kind = DigestKind::elf_build_id;
    id.digest = std::move(*build_id);
    return id;
  }
  Blake2b h;
  if (id.size <= kFullHashLimit) {
    id.kind = DigestKind::blake2b;
    h.update_range(fd, 0, id.size, name);
  } else {
    id.kind = DigestKind::blake2b_sampled;
    h.update(&id.size, sizeof id.size);
    h.update(&id.mtime_ns, sizeof id.mtime_ns);
    h.update_range(fd, 0, kSampleBytes, name);
    h.update_range(fd, id.size - kSampleBytes, kSampleBytes, name);
  }
  id.digest = h.finish();
  return id;
}

FileIdentity identify(const std::string& path) {
  FileDesc fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw SysError("open " + path, errno);
  return identify(fd, path);
}

bool matches(const FileIdentity& id, const std::string& path) {
  FileIdentity here;
  try {
    here = identify(path);
  } catch (const SysError&) {
    return false;
  }
  return same_file(id, here);
}

const FileIdentity& IdentityCache::of(int fd, const std::string& name) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw SysError("stat " + name, errno);
  auto key = std::make_tuple(static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino),
                             static_cast<uint64_t>(st.st_size), int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec);
  auto known = known_.find(key);
  if (known == known_.end()) {
    FileDesc dup(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
    if (!dup) throw SysError("dup " + name, errno);
    known = known_.emplace(key, identify(dup, name)).first;
  }
  return known->second;
}

bool same_file(const FileIdentity& id, const FileIdentity& here) {
  if (here.kind != id.kind || here.size != id.size || here.digest != id.digest) return false;
  return id.kind == DigestKind::blake2b || here.mtime_ns == id.mtime_ns;
}

}  // namespace roam::image
