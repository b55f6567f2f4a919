#include "roam/image_pages.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>

#include "roam/error.hpp"
#include "roam/image_proc.hpp"

namespace roam::image {
namespace {

// pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst). Bit 57
// (uffd-wp) and 56 (exclusive) say nothing about whether content exists.
constexpr uint64_t kPmPresent = 1ull << 63;
constexpr uint64_t kPmSwapped = 1ull << 62;
constexpr uint64_t kPmFile = 1ull << 61;  // file page, or shared anonymous (shmem)
constexpr uint64_t kPmPfnMask = (1ull << 55) - 1;

// The PAGEMAP_SCAN ABI (include/uapi/linux/fs.h, Linux 6.7). Declared here
// because the installed headers predate it.
struct PmScanArg {
  uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
  uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
struct PageRegion {
  uint64_t start, end, categories;
};
constexpr unsigned long kPagemapScan = _IOWR('f', 16, PmScanArg);
constexpr uint64_t kPageIsFile = 1ull << 2;
constexpr uint64_t kPageIsPresent = 1ull << 3;
constexpr uint64_t kPageIsSwapped = 1ull << 4;
constexpr uint64_t kPageIsPfnZero = 1ull << 5;

constexpr size_t kReadEntries = 65536;  // 512 KiB of pagemap, 256 MiB of address space per read
constexpr size_t kScanRegions = 4096;

// The frame of the shared zero page, learned by reading a fresh anonymous
// page of our own: a page a process only ever read maps it, and it reads as
// zeros on the target without being sent. 0 when PFNs are hidden from us.
uint64_t zero_page_frame() {
  static uint64_t pfn = [] {
    void* p = ::mmap(nullptr, kPageSize, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return uint64_t{0};
    (void)*static_cast<volatile const char*>(p);
    uint64_t entry = 0;
    FileDesc fd(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
    off_t at = static_cast<off_t>(reinterpret_cast<uintptr_t>(p) / kPageSize * sizeof entry);
    bool ok = fd && ::pread(fd.get(), &entry, sizeof entry, at) == static_cast<ssize_t>(sizeof entry);
    ::munmap(p, kPageSize);
    if (!ok || !(entry & kPmPresent) || (entry & kPmFile)) return uint64_t{0};
    return entry & kPmPfnMask;
  }();
  return pfn;
}

void append(std::vector<PageRun>& runs, uint64_t start, uint64_t npages, PageKind kind) {
  if (kind == PageKind::absent || npages == 0) return;
  if (!runs.empty() && runs.back().kind == kind && runs.back().end() == start) {
    runs.back().npages += npages;
  } else {
    runs.push_back({start, npages, kind});
  }
}

bool has_no_pages(const Vma& vma) { return vma.kernel_provided() || vma.has(kVmIo) || vma.has(kVmPfnMap); }

}  // namespace

PageScanner::PageScanner(pid_t pid, ScanMethod method) : pid_(pid), method_(method), zero_pfn_(zero_page_frame()) {
  std::string path = proc::path(pid, "pagemap");
  pagemap_.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!pagemap_) throw SysError("open " + path, errno);
}

std::vector<PageRun> PageScanner::runs(const Vma& vma) {
  if (has_no_pages(vma)) return {};
  if (method_ == ScanMethod::pagemap_read) return runs_by_read(vma);
  if (method_ == ScanMethod::pagemap_scan) return runs_by_scan(vma);
  try {
    auto r = runs_by_scan(vma);
    method_ = ScanMethod::pagemap_scan;
    return r;
  } catch (const SysError& e) {
    if (e.err() != ENOTTY && e.err() != EINVAL) throw;
    method_ = ScanMethod::pagemap_read;
    return runs_by_read(vma);
  }
}

std::vector<PageRun> PageScanner::runs(std::span<const Vma> vmas) {
  std::vector<PageRun> all;
  for (const Vma& v : vmas) {
    auto r = runs(v);
    all.insert(all.end(), r.begin(), r.end());
  }
  return all;
}

std::vector<PageRun> PageScanner::runs_by_read(const Vma& vma) {
  std::vector<PageRun> out;
  std::vector<uint64_t> entries(std::min<uint64_t>(kReadEntries, vma.pages()));
  bool file_backed = vma.file_backed();
  for (uint64_t page = 0; page < vma.pages();) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(entries.size(), vma.pages() - page));
    uint64_t addr = vma.start + page * kPageSize;
    off_t at = static_cast<off_t>(addr / kPageSize * sizeof(uint64_t));
    ssize_t n = ::pread(pagemap_.get(), entries.data(), want * sizeof(uint64_t), at);
    if (n < 0) throw SysError(fmt::format("read pagemap of {} at {:#x}", pid_, addr), errno);
    size_t got = static_cast<size_t>(n) / sizeof(uint64_t);
    if (got == 0) throw SysError(fmt::format("read pagemap of {} at {:#x}: short read", pid_, addr), EIO);
    for (size_t i = 0; i < got; ++i) {
      uint64_t e = entries[i];
      PageKind kind = PageKind::absent;
      if (e & (kPmPresent | kPmSwapped)) {
        bool zero = (e & kPmPresent) && !(e & kPmFile) && zero_pfn_ != 0 && (e & kPmPfnMask) == zero_pfn_;
        if (!zero) kind = (e & kPmFile) && file_backed ? PageKind::file_clean : PageKind::anon;
      }
      append(out, addr + i * kPageSize, 1, kind);
    }
    page += got;
  }
  return out;
}

std::vector<PageRun> PageScanner::runs_by_scan(const Vma& vma) {
  std::vector<PageRun> out;
  std::vector<PageRegion> regions(kScanRegions);
  bool file_backed = vma.file_backed();
  PmScanArg arg{};
  arg.size = sizeof arg;
  arg.start = vma.start;
  arg.end = vma.end;
  arg.vec = reinterpret_cast<uintptr_t>(regions.data());
  arg.vec_len = regions.size();
  arg.category_anyof_mask = kPageIsPresent | kPageIsSwapped;
  arg.return_mask = kPageIsFile | kPageIsPresent | kPageIsSwapped | kPageIsPfnZero;
  // When the vector fills, walk_end may lie before the end of regions this
  // call already returned (seen on 6.18: regions up to the end of a PMD,
  // walk_end at an earlier page of it), so the next call repeats them: keep
  // only what lies past what is recorded.
  uint64_t done = vma.start;
  for (;;) {
    int n = ::ioctl(pagemap_.get(), kPagemapScan, &arg);
    if (n < 0) throw SysError(fmt::format("PAGEMAP_SCAN of {} at {:#x}", pid_, arg.start), errno);
    for (int i = 0; i < n; ++i) {
      const PageRegion& r = regions[static_cast<size_t>(i)];
      uint64_t start = std::max(r.start, done);
      if (start >= r.end) continue;
      done = r.end;
      PageKind kind = PageKind::anon;
      if (r.categories & kPageIsPfnZero) kind = PageKind::absent;
      else if ((r.categories & kPageIsFile) && file_backed) kind = PageKind::file_clean;
      append(out, start, (r.end - start) / kPageSize, kind);
    }
    if (arg.walk_end >= vma.end || arg.walk_end <= arg.start) break;
    arg.start = arg.walk_end;
  }
  return out;
}

std::vector<PageRun> page_runs(pid_t pid, std::span<const Vma> vmas, ScanMethod method) {
  PageScanner s(pid, method);
  return s.runs(vmas);
}

}  // namespace roam::image
