// The wire codec shared by every roam connection (peer links and the local
// control socket). Little-endian, length-prefixed frames; each frame body is a
// u16 message type followed by that message's fields. Fields are append-only:
// a decoder ignores bytes after the fields it knows, so a newer peer may add
// fields at the end of a message without breaking an older one. Tags (message
// types) are never reused.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace roam::wire {

inline constexpr uint32_t kMagic = 0x4d414f52;  // "ROAM" as little-endian bytes
inline constexpr uint16_t kVersion = 1;
inline constexpr uint16_t kMinVersion = 1;
inline constexpr size_t kFrameHeader = 4;
inline constexpr uint32_t kFrameFlag = 0x80000000u;  // see FrameAssembler::pop(body, flagged)
inline constexpr size_t kDefaultMaxFrame = 1u << 20;  // peers and tools; bulk streams negotiate more

// Feature bits exchanged at connect. A peer refuses a connection whose
// required features it lacks.
enum Feature : uint64_t {
  kFeatGossip = 1ull << 0,
  kFeatControl = 1ull << 1,
};

// A message or frame that cannot be decoded. Its text says what and where.
class DecodeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Writer {
 public:
  void u8(uint8_t v) { put(&v, 1); }
  void u16(uint16_t v) { put_le(v); }
  void u32(uint32_t v) { put_le(v); }
  void u64(uint64_t v) { put_le(v); }
  void i32(int32_t v) { put_le(static_cast<uint32_t>(v)); }
  void i64(int64_t v) { put_le(static_cast<uint64_t>(v)); }
  void boolean(bool v) { u8(v ? 1 : 0); }
  void bytes(std::span<const std::byte> b) { put(b.data(), b.size()); }
  void str(std::string_view s);  // u32 length + bytes
  std::vector<std::byte>& buffer() { return buf_; }
  std::vector<std::byte> take() { return std::move(buf_); }

 private:
  template <typename T>
  void put_le(T v) {
    unsigned char b[sizeof(T)];
    for (size_t i = 0; i < sizeof(T); ++i) b[i] = static_cast<unsigned char>(v >> (8 * i));
    put(b, sizeof(T));
  }
  void put(const void* p, size_t n);
  std::vector<std::byte> buf_;
};

class Reader {
 public:
  explicit Reader(std::span<const std::byte> data) : data_(data) {}
  uint8_t u8();
  uint16_t u16() { return get_le<uint16_t>(); }
  uint32_t u32() { return get_le<uint32_t>(); }
  uint64_t u64() { return get_le<uint64_t>(); }
  int32_t i32() { return static_cast<int32_t>(get_le<uint32_t>()); }
  int64_t i64() { return static_cast<int64_t>(get_le<uint64_t>()); }
  bool boolean();
  std::span<const std::byte> bytes(size_t n);
  std::string str(size_t max_len = 4096);
  // A count of items that follow, each at least min_item_size bytes: refused
  // when above max or when the remaining bytes cannot hold that many.
  uint32_t count(uint32_t max, size_t min_item_size);
  size_t remaining() const { return data_.size() - pos_; }
  size_t position() const { return pos_; }

 private:
  void need(size_t n, const char* what);
  template <typename T>
  T get_le() {
    need(sizeof(T), "integer");
    T v = 0;
    for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(static_cast<T>(data_[pos_ + i]) << (8 * i));
    pos_ += sizeof(T);
    return v;
  }
  std::span<const std::byte> data_;
  size_t pos_ = 0;
};

// Prepends the u32 length header to a frame body.
std::vector<std::byte> frame(std::span<const std::byte> body);

// Splits a byte stream into frames. Feed it what arrives, or receive
// straight into space() and commit(); pop() returns each complete frame
// body (a copy), pop_view() a view of it in the assembler's buffer, valid
// until the next feed(), space() or pop. A zero-length or oversized frame is
// a DecodeError and the stream is unusable after it.
class FrameAssembler {
 public:
  explicit FrameAssembler(size_t max_frame = kDefaultMaxFrame) : max_frame_(max_frame) {}
  void feed(std::span<const std::byte> data);
  // Room for at least `want` more bytes after what is buffered (more when a
  // frame whose length is known needs it), for a read to fill; commit(n)
  // then takes the n bytes read. Compacts the buffer: views die.
  std::span<std::byte> space(size_t want);
  void commit(size_t n);
  bool pop(std::vector<std::byte>& body);
  // For streams that mark some frames with the length's top bit (kFrameFlag):
  // `flagged` tells which kind this one was.
  bool pop(std::vector<std::byte>& body, bool& flagged);
  bool pop_view(std::span<std::byte>& body, bool* flagged);
  size_t buffered() const { return end_ - head_; }
  // Bytes still missing from the frame begun in the buffer (0 when none
  // has begun or its header is not complete).
  size_t missing() const;
  // A whole frame is buffered (pop would return one, or refuse a bad one).
  bool complete() const { return buffered() >= kFrameHeader && missing() == 0; }

 private:
  size_t max_frame_;
  std::vector<std::byte> buf_;  // storage; bytes [head_, end_) are buffered
  size_t head_ = 0;
  size_t end_ = 0;
};

}  // namespace roam::wire
