// Which pages of a region exist, and reading them out of a (stopped)
// process. Presence comes from /proc/PID/pagemap (the baseline) or the
// PAGEMAP_SCAN ioctl on the same file (Linux 6.7+, one call per region
// instead of 8 bytes per page); both give the same runs.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "roam/fd.hpp"
#include "roam/image_maps.hpp"

namespace roam::image {

// Values are part of the image schema: append only.
enum class PageKind : uint8_t {
  absent = 0,      // never touched (or only read as the shared zero page): the target's fresh page is the same
  anon = 1,        // private memory only this process holds: its content must travel
  file_clean = 2,  // still the backing file's page (never written): the target maps it from the same
                   // file when FileIdentity matches, otherwise the content must travel
};

// `npages` consecutive pages of one kind starting at `start`. A region's runs
// are sorted, never overlap, never cross the region, never hold absent pages
// (the gaps between runs are the absent pages) and adjacent runs differ in
// kind, so a fully touched 1 GiB region is one run.
struct PageRun {
  uint64_t start = 0;
  uint64_t npages = 0;
  PageKind kind = PageKind::absent;

  uint64_t end() const { return start + npages * kPageSize; }
  uint64_t bytes() const { return npages * kPageSize; }
  bool operator==(const PageRun&) const = default;
};

enum class ScanMethod {
  automatic,     // PAGEMAP_SCAN when the kernel has it, else pagemap reads
  pagemap_read,  // 8 bytes per page from /proc/PID/pagemap
  pagemap_scan,  // the PAGEMAP_SCAN ioctl; SysError(ENOTTY) on older kernels
};

// Classifies the pages of one process. Holds /proc/PID/pagemap open, so
// scanning many regions costs one open.
class PageScanner {
 public:
  explicit PageScanner(pid_t pid, ScanMethod method = ScanMethod::automatic);

  // The non-absent runs of `vma`. Kernel-provided regions (vdso, vvar,
  // vsyscall) and VM_IO/VM_PFNMAP regions have no capturable pages: empty.
  std::vector<PageRun> runs(const Vma& vma);
  // Every region of `vmas` in turn, concatenated (sorted when vmas are).
  std::vector<PageRun> runs(std::span<const Vma> vmas);

  ScanMethod method() const { return method_; }

 private:
  std::vector<PageRun> runs_by_read(const Vma& vma);
  std::vector<PageRun> runs_by_scan(const Vma& vma);

  pid_t pid_;
  ScanMethod method_;
  FileDesc pagemap_;
  uint64_t zero_pfn_;  // the shared zero page's frame, 0 when not visible (no CAP_SYS_ADMIN)
};

// Convenience: one scanner, every region.
std::vector<PageRun> page_runs(pid_t pid, std::span<const Vma> vmas, ScanMethod method = ScanMethod::automatic);

// Receives the bytes of [addr, addr + data.size()); data is valid only for
// the call. Calls come in the order of the runs given, page-aligned.
using PageSink = std::function<void(uint64_t addr, std::span<const std::byte> data)>;

struct ReadStats {
  uint64_t bytes = 0;           // delivered to the sink
  uint64_t vm_readv_calls = 0;  // process_vm_readv system calls
  uint64_t mem_fallback_bytes = 0;  // read through /proc/PID/mem instead
};

// 1-8 MiB read equally fast here (8.6 GB/s on the dev VM; 64 MiB halves
// it): the smallest of those keeps a streaming sender's latency low.
inline constexpr size_t kDefaultReadBatch = 2u << 20;

// Reads the pages of `runs` (whatever their kind: the caller picks which runs
// need content) with process_vm_readv, up to `batch_bytes` and IOV_MAX
// regions per call. Pages process_vm_readv refuses (PROT_NONE and other
// unreadable regions: it answers EFAULT because it does not force access)
// are read through /proc/PID/mem, which does. The process should be stopped,
// or the bytes are a moving target. SysError when a page cannot be read at
// all (the process died, or the address is not mapped).
ReadStats read_pages(pid_t pid, std::span<const PageRun> runs, const PageSink& sink,
                     size_t batch_bytes = kDefaultReadBatch);

}  // namespace roam::image
