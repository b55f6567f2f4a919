// read_pages: process_vm_readv in big batches, /proc/PID/mem for the pages
// it refuses.
#include <fcntl.h>
#include <limits.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>

#include "roam/error.hpp"
#include "roam/image_pages.hpp"
#include "roam/image_proc.hpp"

namespace roam::image {
namespace {

struct Piece {
  uint64_t addr;
  size_t len;
  size_t at;  // offset in the batch buffer
};

class BatchReader {
 public:
  BatchReader(pid_t pid, ReadStats& stats) : pid_(pid), stats_(stats) {}

  // Fills buf with the pieces' bytes.
  void fill(std::span<const Piece> pieces, std::byte* buf) {
    remote_.resize(pieces.size());
    for (size_t i = 0; i < pieces.size(); ++i)
      remote_[i] = {reinterpret_cast<void*>(static_cast<uintptr_t>(pieces[i].addr)), pieces[i].len};
    size_t k = 0;
    while (k < pieces.size()) {
      size_t want = pieces.back().at + pieces.back().len - pieces[k].at;
      iovec local{buf + pieces[k].at, want};
      ssize_t r = ::process_vm_readv(pid_, &local, 1, &remote_[k], pieces.size() - k, 0);
      ++stats_.vm_readv_calls;
      if (r < 0 && errno != EFAULT)
        throw SysError(fmt::format("process_vm_readv of {} at {:#x}", pid_, pieces[k].addr), errno);
      // Short (or EFAULT at once): everything before the refused page arrived.
      size_t done = r < 0 ? 0 : static_cast<size_t>(r);
      while (k < pieces.size() && done >= pieces[k].len) done -= pieces[k++].len;
      if (k == pieces.size()) break;
      const Piece& p = pieces[k];
      read_mem(p.addr + done, buf + p.at + done, p.len - done);
      ++k;
    }
  }

 private:
  // /proc/PID/mem reads with FOLL_FORCE, so PROT_NONE and other unreadable
  // pages of a mapping the process may read (VM_MAYREAD) come through.
  void read_mem(uint64_t addr, std::byte* out, size_t len) {
    if (!mem_) {
      std::string path = proc::path(pid_, "mem");
      mem_.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
      if (!mem_) throw SysError("open " + path, errno);
    }
    while (len > 0) {
      ssize_t n = ::pread(mem_.get(), out, len, static_cast<off_t>(addr));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0)
        throw SysError(fmt::format("read {:#x} of process {} (neither process_vm_readv nor /proc/{}/mem could)",
                                   addr, pid_, pid_),
                       n < 0 ? errno : EIO);
      stats_.mem_fallback_bytes += static_cast<uint64_t>(n);
      addr += static_cast<uint64_t>(n);
      out += n;
      len -= static_cast<size_t>(n);
    }
  }

  pid_t pid_;
  ReadStats& stats_;
  FileDesc mem_;
  std::vector<iovec> remote_;
};

}  // namespace

ReadStats read_pages(pid_t pid, std::span<const PageRun> runs, const PageSink& sink, size_t batch_bytes) {
  batch_bytes = std::max<size_t>(kPageSize, batch_bytes / kPageSize * kPageSize);
  uint64_t total = 0;
  for (const PageRun& r : runs) total += r.bytes();
  std::vector<std::byte> buf(static_cast<size_t>(std::min<uint64_t>(batch_bytes, total)));
  ReadStats stats;
  BatchReader reader(pid, stats);
  std::vector<Piece> pieces;
  pieces.reserve(IOV_MAX);

  size_t run = 0;
  uint64_t done_in_run = 0;
  while (run < runs.size()) {
    pieces.clear();
    size_t used = 0;
    while (run < runs.size() && used < buf.size() && pieces.size() < IOV_MAX) {
      const PageRun& r = runs[run];
      size_t len = static_cast<size_t>(std::min<uint64_t>(r.bytes() - done_in_run, buf.size() - used));
      if (len > 0) pieces.push_back({r.start + done_in_run, len, used});
      used += len;
      done_in_run += len;
      if (done_in_run == r.bytes()) {
        ++run;
        done_in_run = 0;
      }
    }
    if (pieces.empty()) continue;
    reader.fill(pieces, buf.data());
    for (const Piece& p : pieces) {
      sink(p.addr, std::span<const std::byte>(buf.data() + p.at, p.len));
      stats.bytes += p.len;
    }
  }
  return stats;
}

}  // namespace roam::image
