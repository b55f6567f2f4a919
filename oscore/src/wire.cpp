#include "roam/wire.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "roam/error.hpp"

namespace roam::wire {

void Writer::put(const void* p, size_t n) {
  auto b = static_cast<const std::byte*>(p);
  buf_.insert(buf_.end(), b, b + n);
}

void Writer::str(std::string_view s) {
  u32(static_cast<uint32_t>(s.size()));
  put(s.data(), s.size());
}

void Reader::need(size_t n, const char* what) {
  if (remaining() < n)
    throw DecodeError(fmt::format("truncated message: {} needs {} bytes at offset {}, {} left", what, n, pos_,
                                  remaining()));
}

uint8_t Reader::u8() {
  need(1, "byte");
  return static_cast<uint8_t>(data_[pos_++]);
}

bool Reader::boolean() {
  uint8_t v = u8();
  if (v > 1) throw DecodeError(fmt::format("bad boolean {} at offset {}", v, pos_ - 1));
  return v == 1;
}

std::span<const std::byte> Reader::bytes(size_t n) {
  need(n, "byte string");
  auto s = data_.subspan(pos_, n);
  pos_ += n;
  return s;
}

std::string Reader::str(size_t max_len) {
  uint32_t n = u32();
  if (n > max_len) throw DecodeError(fmt::format("string of {} bytes exceeds limit {} at offset {}", n, max_len, pos_));
  auto b = bytes(n);
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

uint32_t Reader::count(uint32_t max, size_t min_item_size) {
  uint32_t n = u32();
  if (n > max) throw DecodeError(fmt::format("count {} exceeds limit {} at offset {}", n, max, pos_));
  if (min_item_size && n > remaining() / min_item_size)
    throw DecodeError(fmt::format("count {} cannot fit in the {} bytes left", n, remaining()));
  return n;
}

std::vector<std::byte> frame(std::span<const std::byte> body) {
  Writer w;
  w.u32(static_cast<uint32_t>(body.size()));
  w.bytes(body);
  return w.take();
}

void FrameAssembler::feed(std::span<const std::byte> data) {
  auto room = space(data.size());
  std::memcpy(room.data(), data.data(), data.size());
  commit(data.size());
}

std::span<std::byte> FrameAssembler::space(size_t want) {
  if (head_ == end_) head_ = end_ = 0;
  // A frame whose header has come: make room for all of it at once, so a
  // big frame is read into place in few reads and never copied again.
  if (buffered() >= kFrameHeader) {
    Reader r(std::span<const std::byte>(buf_).subspan(head_, kFrameHeader));
    size_t len = r.u32() & ~kFrameFlag;
    if (len <= max_frame_ && kFrameHeader + len > buffered()) want = std::max(want, kFrameHeader + len - buffered());
  }
  if (buf_.size() - end_ < want) {
    if (head_ > 0) {
      std::memmove(buf_.data(), buf_.data() + head_, buffered());
      end_ -= head_;
      head_ = 0;
    }
    if (buf_.size() - end_ < want) buf_.resize(end_ + want);
  }
  return std::span<std::byte>(buf_).subspan(end_);
}

size_t FrameAssembler::missing() const {
  if (buffered() < kFrameHeader) return 0;
  Reader r(std::span<const std::byte>(buf_).subspan(head_, kFrameHeader));
  size_t len = r.u32() & ~kFrameFlag;
  return kFrameHeader + len > buffered() ? kFrameHeader + len - buffered() : 0;
}

void FrameAssembler::commit(size_t n) {
  ROAM_ASSERT(end_ + n <= buf_.size(), "FrameAssembler::commit past its space");
  end_ += n;
}

bool FrameAssembler::pop(std::vector<std::byte>& body) {
  std::span<std::byte> view;
  if (!pop_view(view, nullptr)) return false;
  body.assign(view.begin(), view.end());
  return true;
}

bool FrameAssembler::pop(std::vector<std::byte>& body, bool& flagged) {
  std::span<std::byte> view;
  if (!pop_view(view, &flagged)) return false;
  body.assign(view.begin(), view.end());
  return true;
}

bool FrameAssembler::pop_view(std::span<std::byte>& body, bool* flagged) {
  size_t avail = buffered();
  if (avail < kFrameHeader) return false;
  Reader r(std::span<const std::byte>(buf_).subspan(head_, kFrameHeader));
  uint32_t len = r.u32();
  if (flagged) {
    *flagged = (len & kFrameFlag) != 0;
    len &= ~kFrameFlag;
  }
  if (len == 0) throw DecodeError("empty frame");
  if (len > max_frame_) throw DecodeError(fmt::format("oversized frame: {} bytes, limit {}", len, max_frame_));
  if (avail < kFrameHeader + len) return false;
  body = std::span<std::byte>(buf_).subspan(head_ + kFrameHeader, len);
  head_ += kFrameHeader + len;
  return true;
}

}  // namespace roam::wire
