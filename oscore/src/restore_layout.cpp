// clear_stub: empties a stub's address space for a restore and moves its
// vDSO pieces to the image's addresses (see restore_detail.hpp).
#include <sys/mman.h>
#include <sys/syscall.h>

#include <algorithm>
#include <array>
#include <optional>

#include <fmt/format.h>

#include "restore_detail.hpp"
#include "roam/error.hpp"
#include "roam/image_maps.hpp"
#include "roam/restore.hpp"

namespace roam::restore::detail {
namespace {

using image::VmaKind;
using ptrace::RemotePtr;
using ptrace::RemoteSyscalls;

constexpr uint64_t kScratchBytes = 256 * 1024;
constexpr int kRseqUnregister = 1;  // RSEQ_FLAG_UNREGISTER
constexpr std::array kPieceKinds = {VmaKind::vvar, VmaKind::vvar_vclock, VmaKind::vdso};

struct Piece {
  VmaKind kind;
  uint64_t from;
  uint64_t to;
  uint64_t size;
};

bool overlaps(uint64_t a, uint64_t a_end, uint64_t b, uint64_t b_end) { return a < b_end && b < a_end; }

std::optional<image::Vma> find_kind(const std::vector<image::Vma>& vmas, VmaKind kind) {
  for (const image::Vma& v : vmas)
    if (v.kind == kind) return v;
  return std::nullopt;
}

std::vector<Piece> plan_pieces(const std::vector<image::Vma>& stub_vmas, const image::ProcessImage& image) {
  std::vector<image::Vma> saved;
  for (const image::ImageVma& iv : image.vmas) saved.push_back(iv.vma);
  std::vector<Piece> pieces;
  for (VmaKind kind : kPieceKinds) {
    auto here = find_kind(stub_vmas, kind);
    auto there = find_kind(saved, kind);
    if (!here && !there) continue;
    if (!here || !there || here->size() != there->size()) {
      throw RestoreError(fmt::format("the image's [{}] ({} bytes) does not fit this kernel's ({} bytes)",
                                     image::to_string(kind), there ? there->size() : 0, here ? here->size() : 0));
    }
    pieces.push_back({kind, here->start, there->start, here->size()});
  }
  return pieces;
}

// A free range of `size` bytes clear of every range in `busy`.
uint64_t free_range(uint64_t size, const std::vector<Range>& busy) {
  for (uint64_t base = 0x100000000000; base < 0x700000000000; base += 0x10000000000) {
    bool clear = std::none_of(busy.begin(), busy.end(),
                              [&](const Range& r) { return overlaps(base, base + size, r.start, r.end); });
    if (clear) return base;
  }
  throw RestoreError("no free address range for restore scratch");
}

// mremaps each piece from `from` to `to`, the vDSO last (the syscall site
// lives there); returns where the syscall instruction went.
RemotePtr<void> move_pieces(ptrace::Tracee& stub, std::vector<Piece> pieces, RemotePtr<void> insn) {
  std::stable_partition(pieces.begin(), pieces.end(), [](const Piece& p) { return p.kind != VmaKind::vdso; });
  for (const Piece& p : pieces) {
    if (p.from == p.to) continue;
    {
      RemoteSyscalls rs(stub, insn);
      rs.checked_syscall("mremap (vdso)", SYS_mremap, p.from, p.size, p.size, MREMAP_MAYMOVE | MREMAP_FIXED, p.to);
    }
    if (p.kind == VmaKind::vdso) insn = RemotePtr<void>(insn.addr() - p.from + p.to);
  }
  return insn;
}

void unregister_rseq(ptrace::Tracee& stub) {
  auto rseq = stub.rseq_config();
  if (!rseq) return;
  RemoteSyscalls rs(stub);
  rs.checked_syscall("rseq (unregister)", SYS_rseq, rseq->abi, rseq->size, kRseqUnregister, rseq->signature);
}

}  // namespace

Layout clear_stub(ptrace::Tracee& stub, const image::ProcessImage& image) {
  // A forked glibc stub inherits its parent's rseq: the kernel would write
  // into it (and kill the stub) once its memory is gone.
  unregister_rseq(stub);
  std::vector<image::Vma> stub_vmas = image::read_maps(stub.tid());
  std::vector<Piece> pieces = plan_pieces(stub_vmas, image);
  auto insn = RemoteSyscalls::find_syscall_in_vdso(stub);
  if (!insn) throw RestoreError(fmt::format("stub {} has no [vdso] to inject from", stub.tid()));

  std::vector<Range> busy;
  for (const image::ImageVma& iv : image.vmas) busy.push_back({iv.vma.start, iv.vma.end});
  for (const Piece& p : pieces) busy.push_back({p.from, p.from + p.size});
  uint64_t scratch = free_range(kScratchBytes, busy);
  busy.push_back({scratch, scratch + kScratchBytes});

  {
    RemoteSyscalls rs(stub, *insn, ptrace::StepMode::single_step);
    // One munmap per stretch of the stub's own regions between the
    // kernel's pieces (holes included): a handful of injections, not one
    // per region of a forked agent (~50, ~60 us each here).
    std::optional<Range> stretch;
    auto unmap = [&] {
      if (stretch) rs.checked_syscall("munmap (stub)", SYS_munmap, stretch->start, stretch->size());
      stretch.reset();
    };
    for (const image::Vma& v : stub_vmas) {
      if (v.kernel_provided()) {
        unmap();
        continue;
      }
      if (stretch) stretch->end = v.end;
      else stretch = Range{v.start, v.end};
    }
    unmap();
    rs.checked_syscall("mmap (scratch)", SYS_mmap, scratch, kScratchBytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  }

  // Moving a piece onto another one's current place would unmap it: go
  // through a range clear of both layouts when they overlap.
  bool clash = false;
  for (const Piece& a : pieces)
    for (const Piece& b : pieces)
      if (a.from != a.to && overlaps(a.to, a.to + a.size, b.from, b.from + b.size)) clash = true;
  RemotePtr<void> site = *insn;
  if (clash) {
    uint64_t lo = UINT64_MAX, hi = 0;
    for (const Piece& p : pieces) lo = std::min(lo, p.from), hi = std::max(hi, p.from + p.size);
    uint64_t temp = free_range(hi - lo, busy);
    std::vector<Piece> there = pieces;
    for (Piece& p : pieces) p.to = temp + (p.from - lo);
    site = move_pieces(stub, pieces, site);
    for (size_t i = 0; i < there.size(); ++i) there[i].from = pieces[i].to;
    pieces = there;
  }
  site = move_pieces(stub, pieces, site);

  // Point the stub's stack at the scratch, for ScratchMem.
  ptrace::Regs r = stub.regs();
  r.rsp = scratch + kScratchBytes - 4096;
  stub.set_regs(r);
  return Layout{site, {scratch, scratch + kScratchBytes}};
}

}  // namespace roam::restore::detail
