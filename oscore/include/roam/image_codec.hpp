// The process-image stream, encoded with the wire codec (little-endian).
//
//   stream  := magic "RIMG" (u32) | version (u16) | record*
//   record  := tag (u16) | length (u32) | body[length]
//
// The state sections come first, in any order, then kHeaderEnd, then any
// number of kPages records, then kTrailer, which ends the stream. Tags are
// never reused; a decoder skips tags it does not know, and fields inside a
// section (and inside each length-prefixed list item) are append-only: a
// decoder reads the fields it knows and ignores what follows. The version
// changes only for an incompatible change, and a decoder refuses versions
// outside [kImageMinVersion, kImageVersion] with a message saying which side
// to upgrade. Optional state (what injection fills) is an absent section.
//
// Page contents stream: encode the header, then one kPages record per
// piece read_pages() delivers, straight from its buffer (pages_prefix() lets
// a sender writev the record head and the page bytes without a copy), then
// the trailer. Nothing needs the whole image in one buffer.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "roam/image.hpp"
#include "roam/wire.hpp"

namespace roam::image {

inline constexpr uint32_t kImageMagic = 0x474d4952;  // "RIMG" as little-endian bytes
inline constexpr uint16_t kImageVersion = 1;
inline constexpr uint16_t kImageMinVersion = 1;
inline constexpr size_t kPreambleBytes = 6;
inline constexpr size_t kRecordHead = 6;                  // tag + length
inline constexpr size_t kPagesPrefixBytes = kRecordHead + 8;  // record head + address
inline constexpr size_t kDefaultMaxRecord = 64u << 20;

enum class Tag : uint16_t {
  process = 1,          // pid, comm, exe, personality, umask
  mm = 2,               // MmFields
  vmas = 3,             // ImageVma list, each item length-prefixed
  page_map = 4,         // PageRun list, packed (17 bytes each)
  signal_masks = 5,     // SignalMasks
  sigactions = 6,       // 64 SigAction
  sigaltstack = 7,      // SigAltStack
  pending_siginfo = 8,  // PendingSiginfo list
  regs = 9,             // Registers
  robust_list = 10,     // RobustList
  rseq = 11,            // Rseq
  clear_child_tid = 12, // u64
  rlimits = 13,         // Rlimit list
  itimers = 14,         // 3 TimerValue
  posix_timers = 15,    // PosixTimer list, each item length-prefixed
  misc = 16,            // MiscState
  seccomp_filters = 17, // SeccompFilter list, each item length-prefixed (absent when none)
  header_end = 0x100,   // empty: the state is complete, page records follow
  pages = 0x101,        // address (u64), then whole pages up to the record's end
  trailer = 0x102,      // page count (u64), byte count (u64): the stream is complete
};

// Writes one stream. Counts the pages it encodes so the trailer can vouch
// for them.
class ImageEncoder {
 public:
  // Preamble, every state section the image holds, kHeaderEnd.
  std::vector<std::byte> header(const ProcessImage& image);
  // A whole kPages record (copies `data`).
  std::vector<std::byte> pages(uint64_t addr, std::span<const std::byte> data);
  // Only the head of a kPages record of `len` bytes; send `len` page bytes
  // right after it.
  std::array<std::byte, kPagesPrefixBytes> pages_prefix(uint64_t addr, size_t len);
  std::vector<std::byte> trailer();

  uint64_t pages_encoded() const { return pages_; }

 private:
  uint64_t pages_ = 0;
  uint64_t bytes_ = 0;
};

// Reads one stream fed in arbitrary pieces. next() yields the header once,
// then each page record, then the end; it throws wire::DecodeError (with what
// and where) for anything malformed, a wrong magic, an unsupported version,
// page data outside the image's regions (or inside vdso/vvar), or a trailer
// that disagrees with what came.
class ImageDecoder {
 public:
  struct Event {
    enum class Type { header, pages, end } type;
    uint64_t addr = 0;                 // pages: where data goes
    std::span<const std::byte> data;   // pages: valid until the next feed() or next()
  };

  explicit ImageDecoder(size_t max_record = kDefaultMaxRecord) : max_record_(max_record) {}
  void feed(std::span<const std::byte> bytes);
  // feed() without a copy: the decoder reads `bytes` where they lie, and
  // they must stay valid until next() returns nullopt (it wants more; what
  // it has not consumed is copied then) or the next feed.
  void feed_view(std::span<const std::byte> bytes);
  std::optional<Event> next();

  const ProcessImage& header() const { return image_; }  // complete after the header event
  ProcessImage take_header() { return std::move(image_); }
  bool finished() const { return stage_ == Stage::done; }
  size_t buffered() const { return buf_.size() - head_ + view_.size() - view_head_; }

 private:
  std::span<const std::byte> current() const;
  void advance(size_t n);
  void keep_view_rest();
  std::optional<Event> next_event();
  enum class Stage { preamble, header, pages, done };
  bool pop_record(uint16_t& tag, std::span<const std::byte>& body);
  void header_section(uint16_t tag, std::span<const std::byte> body);
  Event page_record(std::span<const std::byte> body);
  void check_header_complete();
  void compact();

  size_t max_record_;
  std::vector<std::byte> buf_;
  size_t head_ = 0;
  std::span<const std::byte> view_;  // fed by feed_view, read before buf_ is used again
  size_t view_head_ = 0;
  uint64_t consumed_ = 0;  // stream offset of the next unread byte, for messages
  Stage stage_ = Stage::preamble;
  ProcessImage image_;
  std::vector<uint16_t> seen_;
  uint64_t pages_ = 0;
  uint64_t bytes_ = 0;
};

// The whole stream for an image that carries its pages in `image.pages`.
std::vector<std::byte> encode(const ProcessImage& image);

// The reverse: page records land in `pages`, one PageData each. Bytes after
// the trailer are an error.
ProcessImage decode(std::span<const std::byte> stream);

// A file's identity as the stream carries it (also in FwdResult).
void encode_identity(wire::Writer& w, const FileIdentity& id);
FileIdentity decode_identity(wire::Reader& r);  // wire::DecodeError

}  // namespace roam::image
