#include "roam/image_codec.hpp"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "roam/error.hpp"

namespace roam::image {
namespace {

using wire::DecodeError;
using wire::Reader;
using wire::Writer;

// Limits that keep a hostile or corrupt stream from asking for absurd
// allocations; each is far above what a real process has.
constexpr uint32_t kMaxVmas = 1u << 22;
constexpr uint32_t kMaxRuns = 1u << 28;
constexpr uint32_t kMaxAuxv = 1024;
constexpr uint32_t kMaxRlimits = 64;
constexpr uint32_t kMaxTimers = 1u << 20;
constexpr uint32_t kMaxSeccompFilters = 1024;  // the kernel's bound: 32768 instructions in all
constexpr uint32_t kMaxBpfInsns = 4096;        // BPF_MAXINSNS
constexpr uint32_t kMaxSiginfo = 1u << 16;
constexpr size_t kMaxPath = 4096;
constexpr size_t kMaxDigest = 256;
constexpr size_t kMaxGpRegs = 4096;
constexpr size_t kMaxXstate = 1u << 20;
constexpr size_t kMaxSiginfoBytes = 1024;
constexpr size_t kRunBytes = 17;

void blob(Writer& w, std::span<const std::byte> b) {
  w.u32(static_cast<uint32_t>(b.size()));
  w.bytes(b);
}

std::vector<std::byte> read_blob(Reader& r, size_t max, const char* what) {
  uint32_t n = r.u32();
  if (n > max) throw DecodeError(fmt::format("{} of {} bytes exceeds limit {}", what, n, max));
  auto b = r.bytes(n);
  return {b.begin(), b.end()};
}

}  // namespace

void encode_identity(Writer& w, const FileIdentity& id) {
  w.u64(id.size);
  w.i64(id.mtime_ns);
  w.u8(static_cast<uint8_t>(id.kind));
  blob(w, std::as_bytes(std::span(id.digest)));
}

FileIdentity decode_identity(Reader& r) {
  FileIdentity id;
  id.size = r.u64();
  id.mtime_ns = r.i64();
  uint8_t kind = r.u8();
  if (kind < static_cast<uint8_t>(DigestKind::elf_build_id) || kind > static_cast<uint8_t>(DigestKind::blake2b_sampled))
    throw DecodeError(fmt::format("unknown file digest kind {}", kind));
  id.kind = static_cast<DigestKind>(kind);
  auto d = read_blob(r, kMaxDigest, "file digest");
  id.digest.resize(d.size());
  std::memcpy(id.digest.data(), d.data(), d.size());
  return id;
}

namespace {

// A list item that may grow fields later: u32 length + body.
template <typename F>
void item(Writer& w, F&& fill) {
  Writer body;
  fill(body);
  blob(w, body.buffer());
}

Reader read_item(Reader& r) {
  uint32_t n = r.u32();
  return Reader(r.bytes(n));
}

void record(Writer& out, Tag tag, std::span<const std::byte> body) {
  out.u16(static_cast<uint16_t>(tag));
  out.u32(static_cast<uint32_t>(body.size()));
  out.bytes(body);
}

template <typename F>
void section(Writer& out, Tag tag, F&& fill) {
  Writer body;
  fill(body);
  record(out, tag, body.buffer());
}

// ---- sections: encode ----


void put_vma(Writer& w, const ImageVma& iv) {
  const Vma& v = iv.vma;
  w.u64(v.start);
  w.u64(v.end);
  w.u8(v.prot);
  w.boolean(v.shared);
  w.u64(v.offset);
  w.u32(v.dev_major);
  w.u32(v.dev_minor);
  w.u64(v.inode);
  w.str(v.path);
  w.u8(static_cast<uint8_t>(v.kind));
  w.u64(v.flags);
  w.boolean(iv.file.has_value());
  if (iv.file) encode_identity(w, *iv.file);
}

void put_timer_value(Writer& w, const TimerValue& t) {
  w.u64(t.interval_ns);
  w.u64(t.value_ns);
}

void put_state(Writer& out, const ProcessImage& img) {
  section(out, Tag::process, [&](Writer& w) {
    w.i32(img.pid);
    w.str(img.comm);
    w.str(img.exe);
    w.u32(img.personality);
    w.u32(img.umask);
  });
  section(out, Tag::mm, [&](Writer& w) {
    const MmFields& m = img.mm;
    for (uint64_t v : {m.start_code, m.end_code, m.start_data, m.end_data, m.start_brk, m.start_stack, m.arg_start,
                       m.arg_end, m.env_start, m.env_end})
      w.u64(v);
    w.boolean(m.brk.has_value());
    w.u64(m.brk.value_or(0));
    w.u32(static_cast<uint32_t>(m.auxv.size()));
    for (const AuxvEntry& e : m.auxv) {
      w.u64(e.type);
      w.u64(e.value);
    }
  });
  section(out, Tag::vmas, [&](Writer& w) {
    w.u32(static_cast<uint32_t>(img.vmas.size()));
    for (const ImageVma& iv : img.vmas) item(w, [&](Writer& iw) { put_vma(iw, iv); });
  });
  section(out, Tag::page_map, [&](Writer& w) {
    w.u32(static_cast<uint32_t>(img.page_map.size()));
    for (const PageRun& r : img.page_map) {
      w.u64(r.start);
      w.u64(r.npages);
      w.u8(static_cast<uint8_t>(r.kind));
    }
  });
  section(out, Tag::signal_masks, [&](Writer& w) {
    const SignalMasks& s = img.signals;
    for (uint64_t v : {s.blocked, s.pending_private, s.pending_shared, s.ignored, s.caught}) w.u64(v);
  });
  if (img.sigactions) section(out, Tag::sigactions, [&](Writer& w) {
      w.u32(static_cast<uint32_t>(img.sigactions->size()));
      for (const SigAction& a : *img.sigactions)
        for (uint64_t v : {a.handler, a.flags, a.restorer, a.mask}) w.u64(v);
    });
  if (img.sigaltstack) section(out, Tag::sigaltstack, [&](Writer& w) {
      w.u64(img.sigaltstack->sp);
      w.i32(img.sigaltstack->flags);
      w.u64(img.sigaltstack->size);
    });
  if (img.pending_siginfo) section(out, Tag::pending_siginfo, [&](Writer& w) {
      w.u32(static_cast<uint32_t>(img.pending_siginfo->size()));
      for (const PendingSiginfo& p : *img.pending_siginfo) item(w, [&](Writer& iw) {
          iw.boolean(p.shared);
          blob(iw, p.siginfo);
        });
    });
  if (img.regs) section(out, Tag::regs, [&](Writer& w) {
      blob(w, img.regs->gp);
      blob(w, img.regs->xstate);
    });
  if (img.robust_list) section(out, Tag::robust_list, [&](Writer& w) {
      w.u64(img.robust_list->head);
      w.u64(img.robust_list->len);
    });
  if (img.rseq) section(out, Tag::rseq, [&](Writer& w) {
      w.u64(img.rseq->addr);
      w.u32(img.rseq->len);
      w.u32(img.rseq->signature);
      w.u32(img.rseq->flags);
    });
  if (img.clear_child_tid) section(out, Tag::clear_child_tid, [&](Writer& w) { w.u64(*img.clear_child_tid); });
  section(out, Tag::rlimits, [&](Writer& w) {
    w.u32(static_cast<uint32_t>(img.rlimits.size()));
    for (const Rlimit& l : img.rlimits) {
      w.u32(l.resource);
      w.u64(l.cur);
      w.u64(l.max);
    }
  });
  if (img.itimers) section(out, Tag::itimers, [&](Writer& w) {
      for (const TimerValue& t : *img.itimers) put_timer_value(w, t);
    });
  section(out, Tag::posix_timers, [&](Writer& w) {
    w.u32(static_cast<uint32_t>(img.posix_timers.size()));
    for (const PosixTimer& t : img.posix_timers) item(w, [&](Writer& iw) {
        iw.i32(t.id);
        iw.i32(t.clock);
        iw.i32(t.signo);
        iw.u64(t.sigev_value);
        iw.i32(t.sigev_notify);
        iw.i32(t.notify_pid);
        iw.boolean(t.time.has_value());
        put_timer_value(iw, t.time.value_or(TimerValue{}));
      });
  });
  section(out, Tag::misc, [&](Writer& w) {
    w.boolean(img.misc.no_new_privs);
    w.boolean(img.misc.thp_disabled);
    w.u32(img.misc.mlockall_future);
    w.boolean(img.misc.ipc_lock);
  });
  if (!img.seccomp_filters.empty()) section(out, Tag::seccomp_filters, [&](Writer& w) {
      w.u32(static_cast<uint32_t>(img.seccomp_filters.size()));
      for (const SeccompFilter& f : img.seccomp_filters) item(w, [&](Writer& iw) {
          iw.u32(f.flags);
          iw.u32(static_cast<uint32_t>(f.insns.size()));
          for (uint64_t insn : f.insns) iw.u64(insn);
        });
    });
}

// ---- sections: decode ----


ImageVma get_vma(Reader& r) {
  ImageVma iv;
  Vma& v = iv.vma;
  v.start = r.u64();
  v.end = r.u64();
  v.prot = r.u8();
  v.shared = r.boolean();
  v.offset = r.u64();
  v.dev_major = r.u32();
  v.dev_minor = r.u32();
  v.inode = r.u64();
  v.path = r.str(kMaxPath);
  uint8_t kind = r.u8();
  if (kind > static_cast<uint8_t>(VmaKind::other_special))
    throw DecodeError(fmt::format("region {:#x}: unknown kind {}", v.start, kind));
  v.kind = static_cast<VmaKind>(kind);
  v.flags = r.u64();
  if (r.boolean()) iv.file = decode_identity(r);
  if (v.end <= v.start || v.start % kPageSize || v.end % kPageSize || v.prot > 7)
    throw DecodeError(fmt::format("bad region {:#x}-{:#x} prot {}", v.start, v.end, v.prot));
  return iv;
}

TimerValue get_timer_value(Reader& r) {
  TimerValue t;
  t.interval_ns = r.u64();
  t.value_ns = r.u64();
  return t;
}

void get_section(ProcessImage& img, Tag tag, Reader& r) {
  switch (tag) {
    case Tag::process:
      img.pid = r.i32();
      img.comm = r.str(64);
      img.exe = r.str(kMaxPath);
      img.personality = r.u32();
      img.umask = r.u32();
      return;
    case Tag::mm: {
      MmFields& m = img.mm;
      for (uint64_t* v : {&m.start_code, &m.end_code, &m.start_data, &m.end_data, &m.start_brk, &m.start_stack,
                          &m.arg_start, &m.arg_end, &m.env_start, &m.env_end})
        *v = r.u64();
      bool has_brk = r.boolean();
      uint64_t brk = r.u64();
      if (has_brk) m.brk = brk;
      uint32_t n = r.count(kMaxAuxv, 16);
      for (uint32_t i = 0; i < n; ++i) {
        AuxvEntry e;
        e.type = r.u64();
        e.value = r.u64();
        m.auxv.push_back(e);
      }
      return;
    }
    case Tag::vmas: {
      uint32_t n = r.count(kMaxVmas, 4);
      img.vmas.reserve(n);
      for (uint32_t i = 0; i < n; ++i) {
        Reader ir = read_item(r);
        img.vmas.push_back(get_vma(ir));
        if (i > 0 && img.vmas[i].vma.start < img.vmas[i - 1].vma.end)
          throw DecodeError(fmt::format("region {:#x} overlaps or precedes the one before it", img.vmas[i].vma.start));
      }
      return;
    }
    case Tag::page_map: {
      uint32_t n = r.count(kMaxRuns, kRunBytes);
      img.page_map.reserve(n);
      for (uint32_t i = 0; i < n; ++i) {
        PageRun run;
        run.start = r.u64();
        run.npages = r.u64();
        uint8_t kind = r.u8();
        if (kind != static_cast<uint8_t>(PageKind::anon) && kind != static_cast<uint8_t>(PageKind::file_clean))
          throw DecodeError(fmt::format("page run {:#x}: bad kind {}", run.start, kind));
        run.kind = static_cast<PageKind>(kind);
        if (run.start % kPageSize || run.npages == 0 || run.npages > (~run.start) / kPageSize ||
            (i > 0 && run.start < img.page_map.back().end()))
          throw DecodeError(fmt::format("bad page run {:#x}+{} pages", run.start, run.npages));
        img.page_map.push_back(run);
      }
      return;
    }
    case Tag::signal_masks: {
      SignalMasks& s = img.signals;
      for (uint64_t* v : {&s.blocked, &s.pending_private, &s.pending_shared, &s.ignored, &s.caught}) *v = r.u64();
      return;
    }
    case Tag::sigactions: {
      uint32_t n = r.u32();
      if (n != kSignals) throw DecodeError(fmt::format("{} signal actions, want {}", n, kSignals));
      auto& acts = img.sigactions.emplace();
      for (SigAction& a : acts)
        for (uint64_t* v : {&a.handler, &a.flags, &a.restorer, &a.mask}) *v = r.u64();
      return;
    }
    case Tag::sigaltstack: {
      SigAltStack s;
      s.sp = r.u64();
      s.flags = r.i32();
      s.size = r.u64();
      img.sigaltstack = s;
      return;
    }
    case Tag::pending_siginfo: {
      uint32_t n = r.count(kMaxSiginfo, 4);
      auto& list = img.pending_siginfo.emplace();
      for (uint32_t i = 0; i < n; ++i) {
        Reader ir = read_item(r);
        PendingSiginfo p;
        p.shared = ir.boolean();
        p.siginfo = read_blob(ir, kMaxSiginfoBytes, "siginfo");
        list.push_back(std::move(p));
      }
      return;
    }
    case Tag::regs: {
      Registers regs;
      regs.gp = read_blob(r, kMaxGpRegs, "general registers");
      regs.xstate = read_blob(r, kMaxXstate, "xstate");
      img.regs = std::move(regs);
      return;
    }
    case Tag::robust_list: {
      RobustList l;
      l.head = r.u64();
      l.len = r.u64();
      img.robust_list = l;
      return;
    }
    case Tag::rseq: {
      Rseq s;
      s.addr = r.u64();
      s.len = r.u32();
      s.signature = r.u32();
      s.flags = r.u32();
      img.rseq = s;
      return;
    }
    case Tag::clear_child_tid: img.clear_child_tid = r.u64(); return;
    case Tag::rlimits: {
      uint32_t n = r.count(kMaxRlimits, 20);
      for (uint32_t i = 0; i < n; ++i) {
        Rlimit l;
        l.resource = r.u32();
        l.cur = r.u64();
        l.max = r.u64();
        img.rlimits.push_back(l);
      }
      return;
    }
    case Tag::itimers: {
      auto& t = img.itimers.emplace();
      for (TimerValue& v : t) v = get_timer_value(r);
      return;
    }
    case Tag::posix_timers: {
      uint32_t n = r.count(kMaxTimers, 4);
      for (uint32_t i = 0; i < n; ++i) {
        Reader ir = read_item(r);
        PosixTimer t;
        t.id = ir.i32();
        t.clock = ir.i32();
        t.signo = ir.i32();
        t.sigev_value = ir.u64();
        t.sigev_notify = ir.i32();
        t.notify_pid = ir.i32();
        bool has_time = ir.boolean();
        TimerValue v = get_timer_value(ir);
        if (has_time) t.time = v;
        img.posix_timers.push_back(t);
      }
      return;
    }
    case Tag::misc:
      img.misc.no_new_privs = r.boolean();
      img.misc.thp_disabled = r.boolean();
      if (r.remaining() > 0) {  // older writers have neither
        img.misc.mlockall_future = r.u32();
        img.misc.ipc_lock = r.boolean();
      }
      return;
    case Tag::seccomp_filters: {
      uint32_t n = r.count(kMaxSeccompFilters, 8);
      for (uint32_t i = 0; i < n; ++i) {
        Reader ir = read_item(r);
        SeccompFilter f;
        f.flags = ir.u32();
        uint32_t len = ir.count(kMaxBpfInsns, 8);
        if (len == 0) throw DecodeError("a seccomp filter without instructions");
        f.insns.reserve(len);
        for (uint32_t k = 0; k < len; ++k) f.insns.push_back(ir.u64());
        img.seccomp_filters.push_back(std::move(f));
      }
      return;
    }
    case Tag::header_end:
    case Tag::pages:
    case Tag::trailer: break;
  }
  ROAM_ASSERT(false, fmt::format("get_section called for tag {}", static_cast<int>(tag)));
}

bool is_state_tag(uint16_t tag) {
  return tag >= static_cast<uint16_t>(Tag::process) && tag <= static_cast<uint16_t>(Tag::seccomp_filters);
}

std::array<std::byte, kRecordHead> record_head(Tag tag, size_t len) {
  ROAM_ASSERT(len <= UINT32_MAX, fmt::format("image record of {} bytes", len));
  Writer w;
  w.u16(static_cast<uint16_t>(tag));
  w.u32(static_cast<uint32_t>(len));
  std::array<std::byte, kRecordHead> out{};
  std::memcpy(out.data(), w.buffer().data(), out.size());
  return out;
}

}  // namespace

// ---- ImageEncoder ----

std::vector<std::byte> ImageEncoder::header(const ProcessImage& image) {
  Writer out;
  out.u32(kImageMagic);
  out.u16(kImageVersion);
  put_state(out, image);
  record(out, Tag::header_end, {});
  return out.take();
}

std::array<std::byte, kPagesPrefixBytes> ImageEncoder::pages_prefix(uint64_t addr, size_t len) {
  ROAM_ASSERT(len > 0 && len % kPageSize == 0 && addr % kPageSize == 0,
              fmt::format("page record {:#x}+{} is not whole pages", addr, len));
  std::array<std::byte, kPagesPrefixBytes> out{};
  auto head = record_head(Tag::pages, 8 + len);
  std::memcpy(out.data(), head.data(), head.size());
  Writer w;
  w.u64(addr);
  std::memcpy(out.data() + kRecordHead, w.buffer().data(), 8);
  pages_ += len / kPageSize;
  bytes_ += len;
  return out;
}

std::vector<std::byte> ImageEncoder::pages(uint64_t addr, std::span<const std::byte> data) {
  auto prefix = pages_prefix(addr, data.size());
  std::vector<std::byte> out;
  out.reserve(prefix.size() + data.size());
  out.insert(out.end(), prefix.begin(), prefix.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

std::vector<std::byte> ImageEncoder::trailer() {
  Writer out;
  section(out, Tag::trailer, [&](Writer& w) {
    w.u64(pages_);
    w.u64(bytes_);
  });
  return out.take();
}

// ---- ImageDecoder ----

void ImageDecoder::feed(std::span<const std::byte> bytes) {
  keep_view_rest();
  buf_.insert(buf_.end(), bytes.begin(), bytes.end());
}

void ImageDecoder::feed_view(std::span<const std::byte> bytes) {
  keep_view_rest();
  compact();
  if (buf_.size() > head_) {  // a record begun earlier: it continues here
    buf_.insert(buf_.end(), bytes.begin(), bytes.end());
    return;
  }
  view_ = bytes;
  view_head_ = 0;
}

// Unread bytes of a borrowed view move into the decoder's own buffer.
void ImageDecoder::keep_view_rest() {
  if (view_head_ < view_.size()) buf_.insert(buf_.end(), view_.begin() + static_cast<ptrdiff_t>(view_head_), view_.end());
  view_ = {};
  view_head_ = 0;
}

std::span<const std::byte> ImageDecoder::current() const {
  if (!view_.empty()) return view_.subspan(view_head_);
  return std::span<const std::byte>(buf_).subspan(head_);
}

void ImageDecoder::advance(size_t n) {
  consumed_ += n;
  if (!view_.empty()) {
    view_head_ += n;
  } else {
    head_ += n;
  }
}

void ImageDecoder::compact() {
  if (head_ > 0 && (head_ == buf_.size() || head_ > (1u << 20))) {
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<ptrdiff_t>(head_));
    head_ = 0;
  }
}

bool ImageDecoder::pop_record(uint16_t& tag, std::span<const std::byte>& body) {
  std::span<const std::byte> cur = current();
  if (cur.size() < kRecordHead) return false;
  Reader r(cur.first(kRecordHead));
  tag = r.u16();
  uint32_t len = r.u32();
  if (len > max_record_)
    throw DecodeError(fmt::format("image record (tag {:#x}) of {} bytes at offset {} exceeds limit {}", tag, len,
                                  consumed_, max_record_));
  if (cur.size() < kRecordHead + len) return false;
  body = cur.subspan(kRecordHead, len);
  advance(kRecordHead + len);
  return true;
}

void ImageDecoder::header_section(uint16_t tag, std::span<const std::byte> body) {
  if (!is_state_tag(tag)) return;  // a section from a newer writer: skipped
  if (std::find(seen_.begin(), seen_.end(), tag) != seen_.end())
    throw DecodeError(fmt::format("image section {} appears twice", tag));
  seen_.push_back(tag);
  Reader r(body);
  try {
    get_section(image_, static_cast<Tag>(tag), r);
  } catch (const DecodeError& e) {
    throw DecodeError(fmt::format("image section {}: {}", tag, e.what()));
  }
  // Bytes left in r are fields appended by a newer writer.
}

void ImageDecoder::check_header_complete() {
  for (Tag required : {Tag::process, Tag::mm, Tag::vmas, Tag::page_map})
    if (std::find(seen_.begin(), seen_.end(), static_cast<uint16_t>(required)) == seen_.end())
      throw DecodeError(fmt::format("image header lacks section {}", static_cast<int>(required)));
  // Every run inside a region: restore trusts the map to say where to write.
  size_t vi = 0;
  for (const PageRun& run : image_.page_map) {
    while (vi < image_.vmas.size() && image_.vmas[vi].vma.end <= run.start) ++vi;
    if (vi == image_.vmas.size() || image_.vmas[vi].vma.start > run.start || run.end() > image_.vmas[vi].vma.end)
      throw DecodeError(fmt::format("page run {:#x}+{} pages lies outside every region", run.start, run.npages));
  }
}

ImageDecoder::Event ImageDecoder::page_record(std::span<const std::byte> body) {
  Reader r(body);
  uint64_t addr = r.u64();
  std::span<const std::byte> data = body.subspan(8);
  if (data.empty() || data.size() % kPageSize || addr % kPageSize)
    throw DecodeError(fmt::format("page record {:#x}+{} bytes is not whole pages", addr, data.size()));
  // The data must lie in regions the header declared (consecutive ones
  // allowed), never in those the target's kernel provides. Not only in the
  // page map: a file the target cannot match sends pages never touched.
  uint64_t end = addr + data.size();
  if (end < addr) throw DecodeError(fmt::format("page record {:#x} wraps around", addr));
  const auto& vmas = image_.vmas;
  auto it = std::upper_bound(vmas.begin(), vmas.end(), addr,
                             [](uint64_t a, const ImageVma& v) { return a < v.vma.start; });
  uint64_t covered = addr;
  if (it != vmas.begin()) {
    for (--it; it != vmas.end() && it->vma.start <= covered && covered < end && !it->vma.kernel_provided(); ++it)
      covered = std::max(covered, it->vma.end);
  }
  if (covered < end)
    throw DecodeError(fmt::format("page record {:#x}+{} bytes lies outside the regions the image may fill", addr,
                                  data.size()));
  pages_ += data.size() / kPageSize;
  bytes_ += data.size();
  return Event{Event::Type::pages, addr, data};
}

std::optional<ImageDecoder::Event> ImageDecoder::next() {
  if (view_.empty()) compact();
  std::optional<Event> ev = next_event();
  // Wanting more: the caller may reuse what it lent, so keep what is left.
  if (!ev) keep_view_rest();
  return ev;
}

std::optional<ImageDecoder::Event> ImageDecoder::next_event() {
  for (;;) {
    if (stage_ == Stage::preamble) {
      if (buffered() < kPreambleBytes) return std::nullopt;
      keep_view_rest();  // the preamble may straddle feeds: read it whole
      Reader r(std::span<const std::byte>(buf_).subspan(head_, kPreambleBytes));
      uint32_t magic = r.u32();
      uint16_t version = r.u16();
      if (magic != kImageMagic)
        throw DecodeError(fmt::format("not a process image: magic {:#010x}, want {:#010x} (\"RIMG\")", magic,
                                      kImageMagic));
      if (version > kImageVersion)
        throw DecodeError(fmt::format("process image version {} is newer than this node reads (up to {}): "
                                      "upgrade roam on this node",
                                      version, kImageVersion));
      if (version < kImageMinVersion)
        throw DecodeError(fmt::format("process image version {} is older than this node reads (from {}): "
                                      "capture it again with a current roam",
                                      version, kImageMinVersion));
      advance(kPreambleBytes);
      stage_ = Stage::header;
    }
    if (stage_ == Stage::done) {
      if (buffered() > 0)
        throw DecodeError(fmt::format("{} bytes after the end of the process image", buffered()));
      return std::nullopt;
    }
    uint16_t tag = 0;
    std::span<const std::byte> body;
    if (!pop_record(tag, body)) return std::nullopt;
    if (stage_ == Stage::header) {
      if (tag == static_cast<uint16_t>(Tag::header_end)) {
        check_header_complete();
        stage_ = Stage::pages;
        return Event{Event::Type::header, 0, {}};
      }
      if (tag == static_cast<uint16_t>(Tag::pages) || tag == static_cast<uint16_t>(Tag::trailer))
        throw DecodeError(fmt::format("page record (tag {:#x}) before the end of the image header", tag));
      header_section(tag, body);
      continue;
    }
    // Stage::pages
    if (tag == static_cast<uint16_t>(Tag::pages)) return page_record(body);
    if (tag == static_cast<uint16_t>(Tag::trailer)) {
      Reader r(body);
      uint64_t pages = r.u64(), bytes = r.u64();
      if (pages != pages_ || bytes != bytes_)
        throw DecodeError(fmt::format("process image incomplete: trailer counts {} pages ({} bytes), stream held {} "
                                      "({} bytes)",
                                      pages, bytes, pages_, bytes_));
      stage_ = Stage::done;
      return Event{Event::Type::end, 0, {}};
    }
    if (is_state_tag(tag) || tag == static_cast<uint16_t>(Tag::header_end))
      throw DecodeError(fmt::format("image section {} after the end of the header", tag));
    // Unknown record from a newer writer: skipped.
  }
}

// ---- whole images ----

std::vector<std::byte> encode(const ProcessImage& image) {
  ImageEncoder enc;
  std::vector<std::byte> out = enc.header(image);
  for (const PageData& p : image.pages) {
    auto prefix = enc.pages_prefix(p.addr, p.bytes.size());
    out.insert(out.end(), prefix.begin(), prefix.end());
    out.insert(out.end(), p.bytes.begin(), p.bytes.end());
  }
  auto t = enc.trailer();
  out.insert(out.end(), t.begin(), t.end());
  return out;
}

ProcessImage decode(std::span<const std::byte> stream) {
  ImageDecoder dec(std::max(kDefaultMaxRecord, stream.size()));
  dec.feed(stream);
  std::vector<PageData> pages;
  for (;;) {
    auto ev = dec.next();
    if (!ev) {
      if (dec.finished()) break;
      throw DecodeError(fmt::format("truncated process image: {} bytes end before its trailer", stream.size()));
    }
    if (ev->type == ImageDecoder::Event::Type::pages)
      pages.push_back({ev->addr, std::vector<std::byte>(ev->data.begin(), ev->data.end())});
  }
  ProcessImage img = dec.take_header();
  img.pages = std::move(pages);
  return img;
}

}  // namespace roam::image
