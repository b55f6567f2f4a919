// map_regions and write_pages: the image's address space in the stub (see
// restore_detail.hpp).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "restore_detail.hpp"
#include "roam/capture.hpp"
#include "roam/error.hpp"
#include "roam/image_file.hpp"
#include "roam/log.hpp"
#include "roam/restore.hpp"

namespace roam::restore::detail {
namespace {

using image::ImageVma;
using image::VmaKind;
using ptrace::RemoteSyscalls;
using ptrace::ScratchMem;

int prot_of(const image::Vma& v) {
  int prot = 0;
  if (v.prot & image::kProtRead) prot |= PROT_READ;
  if (v.prot & image::kProtWrite) prot |= PROT_WRITE;
  if (v.prot & image::kProtExec) prot |= PROT_EXEC;
  return prot;
}

void refuse_unsupported(const ImageVma& iv) {
  const image::Vma& v = iv.vma;
  // A read-only shared mapping of a file that can never be written through
  // it (no VM_MAYWRITE: glibc's locale and gconv caches) behaves like the
  // file: it is mapped shared from the same file here.
  bool readonly_file = v.kind == VmaKind::file && !(v.prot & image::kProtWrite) && !v.has(image::kVmMayWrite);
  if (v.shared && !readonly_file) {
    throw RestoreError(fmt::format("region {:#x}-{:#x} ({}) is a shared mapping: only home can serve it", v.start,
                                   v.end, v.path.empty() ? "anonymous" : v.path));
  }
  switch (v.kind) {
    case VmaKind::sysv_shm:
    case VmaKind::special_file:
    case VmaKind::other_special:
      throw RestoreError(fmt::format("region {:#x}-{:#x} ({}) cannot be recreated away from home", v.start, v.end,
                                     v.path));
    default:
      break;
  }
}

void map_anon(RemoteSyscalls& rs, const image::Vma& v) {
  int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
  if (v.kind == VmaKind::stack || v.has(image::kVmGrowsDown)) flags |= MAP_GROWSDOWN;
  rs.checked_syscall("mmap (anonymous region)", SYS_mmap, v.start, v.size(), prot_of(v), flags, -1, 0);
}

void map_file(RemoteSyscalls& rs, const image::Vma& v) {
  std::string path = v.path;
  path.push_back('\0');
  long fd;
  {
    ScratchMem name(rs, std::as_bytes(std::span(path.data(), path.size())));
    fd = static_cast<long>(
        rs.checked_syscall("openat (mapped file)", SYS_openat, AT_FDCWD, name.get(), O_RDONLY | O_CLOEXEC, 0));
  }
  long rc = rs.syscall(SYS_mmap, v.start, v.size(), prot_of(v), (v.shared ? MAP_SHARED : MAP_PRIVATE) | MAP_FIXED, fd,
                       v.offset);
  rs.syscall(SYS_close, fd);
  if (rc < 0 && rc >= -4095) {
    throw SysError(fmt::format("mmap of {} at {:#x} injected into stub {}", v.path, v.start, rs.tracee().tid()),
                   static_cast<int>(-rc));
  }
}

}  // namespace

void map_regions(RemoteSyscalls& rs, const image::ProcessImage& image, Range scratch,
                 const std::vector<image::Vma>* already, const std::vector<uint64_t>* sent_whole) {
  auto in = [](const std::vector<image::Vma>& list, const image::Vma& v) {
    return std::find(list.begin(), list.end(), v) != list.end();
  };
  std::vector<image::Vma> wanted;
  for (const ImageVma& iv : image.vmas) wanted.push_back(iv.vma);
  if (already) {
    // Regions mapped earlier that the image no longer has as they are go
    // first; mapping the image's new ones (MAP_FIXED) replaces the rest.
    for (const image::Vma& v : *already)
      if (!v.kernel_provided() && !in(wanted, v)) rs.checked_syscall("munmap (stale region)", SYS_munmap, v.start, v.size());
  }
  std::map<std::string, bool> same_file;  // libc is mapped five times: check it once
  for (const ImageVma& iv : image.vmas) {
    const image::Vma& v = iv.vma;
    if (v.kernel_provided()) continue;
    if (already && in(*already, v)) continue;
    refuse_unsupported(iv);
    ROAM_ASSERT(v.end <= scratch.start || v.start >= scratch.end,
                fmt::format("restore scratch {:#x} overlaps region {:#x}-{:#x}", scratch.start, v.start, v.end));
    bool whole = sent_whole && std::find(sent_whole->begin(), sent_whole->end(), v.start) != sent_whole->end();
    if (v.kind == VmaKind::file && iv.file && !whole) {
      auto it = same_file.find(v.path);
      if (it == same_file.end()) it = same_file.emplace(v.path, image::matches(*iv.file, v.path)).first;
      if (it->second) {
        map_file(rs, v);
        continue;
      }
      // The capture sent only written pages of a file it expected here.
      throw RestoreError(fmt::format("{} here is not the file the image mapped at {:#x}", v.path, v.start));
    }
    map_anon(rs, v);
  }
}

}  // namespace roam::restore::detail

namespace roam::restore {

std::vector<uint64_t> differing_files(const image::ProcessImage& image) {
  std::vector<uint64_t> out;
  std::map<std::string, bool> same;  // libc is mapped five times: check it once
  for (const image::ImageVma& iv : image.vmas) {
    const image::Vma& v = iv.vma;
    if (v.kind != image::VmaKind::file || v.shared || !iv.file) continue;
    auto it = same.find(v.path);
    if (it == same.end()) it = same.emplace(v.path, image::matches(*iv.file, v.path)).first;
    if (!it->second) out.push_back(v.start);
  }
  return out;
}

}  // namespace roam::restore

namespace roam::restore::detail {

void write_run(RemoteSyscalls& rs, const image::ProcessImage& image, uint64_t addr, std::span<const std::byte> bytes) {
  ptrace::Tracee& stub = rs.tracee();
  ptrace::RemotePtr<void> at(addr);
  try {
    // /proc/PID/mem writes reach read-only pages on this kernel (the
    // tracer forces them), so regions keep their final protection.
    stub.write_mem(at, bytes);
  } catch (const SysError&) {
    // A kernel that does not force them (proc_mem.force_override): open
    // the regions for writing for as long as it takes.
    uint64_t end = addr + bytes.size();
    std::vector<const image::Vma*> opened;
    for (const ImageVma& iv : image.vmas) {
      const image::Vma& v = iv.vma;
      if (v.end <= addr || v.start >= end || (v.prot & image::kProtWrite)) continue;
      rs.checked_syscall("mprotect (open for writing)", SYS_mprotect, v.start, v.size(),
                         prot_of(v) | PROT_READ | PROT_WRITE);
      opened.push_back(&v);
    }
    if (opened.empty()) throw;
    stub.write_mem(at, bytes);
    for (const image::Vma* v : opened)
      rs.checked_syscall("mprotect (close)", SYS_mprotect, v->start, v->size(), prot_of(*v));
  }
}

uint64_t populate(RemoteSyscalls& rs, const image::ProcessImage& image, const std::vector<uint64_t>& sent_whole) {
  constexpr int kMadvPopulateWrite = 23;  // Linux 5.14
  constexpr uint64_t kMergeGap = 64 * 1024;
  std::vector<image::PageRun> runs = image::pages_to_send(image, sent_whole);
  uint64_t done = 0;
  size_t vi = 0;
  std::optional<Range> pending;
  auto flush = [&]() -> bool {
    if (!pending) return true;
    long rc = rs.syscall(SYS_madvise, pending->start, pending->size(), kMadvPopulateWrite);
    if (rc < 0 && rc >= -4095) return false;  // an older kernel, or no memory: faults will do
    done += pending->size();
    pending.reset();
    return true;
  };
  for (const image::PageRun& r : runs) {
    while (vi < image.vmas.size() && image.vmas[vi].vma.end <= r.start) ++vi;
    if (vi == image.vmas.size()) break;
    const image::Vma& v = image.vmas[vi].vma;
    bool whole = std::find(sent_whole.begin(), sent_whole.end(), v.start) != sent_whole.end();
    bool anon = v.kind == VmaKind::anon || v.kind == VmaKind::heap || v.kind == VmaKind::stack;
    // A region mapped anonymous in place of its file gets every page sent
    // (those of a read-only one are faulted in as they are written).
    if (!(v.prot & image::kProtWrite) || (!whole && (!anon || v.shared || r.kind != image::PageKind::anon))) continue;
    if (pending && r.start >= pending->end && r.start - pending->end <= kMergeGap && r.end() <= v.end &&
        pending->start >= v.start) {
      pending->end = r.end();
      continue;
    }
    if (!flush()) return done;
    pending = Range{r.start, r.end()};
  }
  flush();
  return done;
}

void set_advice(RemoteSyscalls& rs, const image::ProcessImage& image) {
  struct Advice {
    uint64_t flag;
    int advice;
    const char* name;
  };
  static constexpr Advice kAdvice[] = {
      {image::kVmDontCopy, MADV_DONTFORK, "MADV_DONTFORK"},     {image::kVmWipeOnFork, MADV_WIPEONFORK, "MADV_WIPEONFORK"},
      {image::kVmDontDump, MADV_DONTDUMP, "MADV_DONTDUMP"},     {image::kVmHugePage, MADV_HUGEPAGE, "MADV_HUGEPAGE"},
      {image::kVmNoHugePage, MADV_NOHUGEPAGE, "MADV_NOHUGEPAGE"}, {image::kVmSeqRead, MADV_SEQUENTIAL, "MADV_SEQUENTIAL"},
      {image::kVmRandRead, MADV_RANDOM, "MADV_RANDOM"},         {image::kVmMergeable, MADV_MERGEABLE, "MADV_MERGEABLE"},
  };
  auto refused = [&](const image::Vma& v, const char* what, long rc) {
    log_warn("restore: {} of {:#x}-{:#x} refused here ({}): the process runs on without it", what, v.start, v.end,
             std::strerror(static_cast<int>(-rc)));
  };
  for (const ImageVma& iv : image.vmas) {
    const image::Vma& v = iv.vma;
    if (v.kernel_provided()) continue;
    for (const Advice& a : kAdvice) {
      if (!v.has(a.flag)) continue;
      long rc = rs.syscall(SYS_madvise, v.start, v.size(), a.advice);
      if (rc < 0) refused(v, a.name, rc);
    }
    if (v.has(image::kVmLocked)) {
      long rc = v.has(image::kVmLockOnFault) ? rs.syscall(SYS_mlock2, v.start, v.size(), MLOCK_ONFAULT)
                                             : rs.syscall(SYS_mlock, v.start, v.size());
      if (rc < 0) refused(v, "mlock", rc);
    }
  }
  set_mlockall_future(rs, image);
}

// mlockall(MCL_FUTURE): the regions are locked one by one (set_advice);
// this locks those the process maps from now on.
void set_mlockall_future(RemoteSyscalls& rs, const image::ProcessImage& image) {
  uint32_t future = image.misc.mlockall_future & (MCL_FUTURE | MCL_ONFAULT);
  if ((future & MCL_FUTURE) == 0) return;
  const char* what = future & MCL_ONFAULT ? "MCL_FUTURE|MCL_ONFAULT" : "MCL_FUTURE";
  long rc = rs.syscall(SYS_mlockall, future);
  if (rc < 0)
    log_warn("restore: mlockall({}) refused here ({}): regions mapped from now on are not locked", what,
             std::strerror(static_cast<int>(-rc)));
}

uint64_t write_pages(RemoteSyscalls& rs, const image::ProcessImage& image) {
  uint64_t bytes = 0;
  for (const image::PageData& p : image.pages) {
    write_run(rs, image, p.addr, p.bytes);
    bytes += p.bytes.size();
  }
  return bytes;
}

}  // namespace roam::restore::detail
