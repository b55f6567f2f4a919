#include "roam/mig_image.hpp"

#include <fmt/format.h>

#include "roam/capture.hpp"
#include "roam/image_pages.hpp"
#include "roam/mig_messages.hpp"

namespace roam::mig {


uint64_t send_image(Channel& ch, const image::ProcessImage& image, pid_t stopped, std::span<const uint64_t> mismatched) {
  image::ImageEncoder enc;
  uint64_t sent = 0;
  std::vector<std::byte> head = enc.header(image);
  for (size_t off = 0; off < head.size(); off += msg::kMigChunkBytes) {
    auto piece = std::span<const std::byte>(head).subspan(off, std::min(msg::kMigChunkBytes, head.size() - off));
    ch.send_msg(msg::MigChunk{{piece.begin(), piece.end()}});
  }
  sent += head.size();
  constexpr size_t kPiece = (msg::kMigChunkBytes - image::kPagesPrefixBytes) & ~size_t{4095};
  // One MigChunk frame per piece: MigChunk's own head (type, blob length),
  // then the page record's prefix, then the pages, written from where they
  // lie.
  auto send_piece = [&](uint64_t addr, std::span<const std::byte> piece) {
    auto prefix = enc.pages_prefix(addr, piece.size());
    wire::Writer h;
    h.u16(static_cast<uint16_t>(msg::Type::mig_chunk));
    h.u32(static_cast<uint32_t>(prefix.size() + piece.size()));
    ch.send_bulk({std::span<const std::byte>(h.buffer()), std::span<const std::byte>(prefix), piece});
    sent += prefix.size() + piece.size();
  };
  for (const image::PageData& p : image.pages) {
    std::span<const std::byte> all(p.bytes);
    for (size_t off = 0; off < all.size(); off += kPiece)
      send_piece(p.addr + off, all.subspan(off, std::min(kPiece, all.size() - off)));
  }
  if (stopped > 0 && image.pages.empty()) {
    // Reading a little and sending it before reading more keeps the batch
    // in cache and the receiver busy: it checks and writes a frame only
    // once all of it came. With the receiver's SO_RCVLOWAT wake-ups,
    // 128 KiB batches froze a 1 GiB process slowest here (median 2.5x raw
    // TCP over 5 moves), 256 KiB-2 MiB within the noise of each other
    // (1.6-2.0x); 512 KiB it is.
    constexpr size_t kBatch = size_t{512} << 10;
    static_assert(kBatch <= kPiece);
    std::vector<image::PageRun> runs = image::pages_to_send(image, mismatched);
    image::read_pages(stopped, runs, send_piece, kBatch);
  }
  std::vector<std::byte> tail = enc.trailer();
  ch.send_msg(msg::MigChunk{std::move(tail)});
  return sent + tail.size();
}

uint64_t relay_image(Channel& ch, const image::ProcessImage& header, const restore::PageSource& pages) {
  image::ImageEncoder enc;
  std::vector<std::byte> head;
  if (header.pages.empty()) {
    head = enc.header(header);
  } else {
    image::ProcessImage state = header;
    state.pages.clear();
    head = enc.header(state);
  }
  for (size_t off = 0; off < head.size(); off += msg::kMigChunkBytes) {
    auto piece = std::span<const std::byte>(head).subspan(off, std::min(msg::kMigChunkBytes, head.size() - off));
    ch.send_msg(msg::MigChunk{{piece.begin(), piece.end()}});
  }
  uint64_t sent = head.size();
  constexpr size_t kPiece = (msg::kMigChunkBytes - image::kPagesPrefixBytes) & ~size_t{4095};
  while (auto run = pages()) {
    for (size_t off = 0; off < run->second.size(); off += kPiece) {
      auto piece = run->second.subspan(off, std::min(kPiece, run->second.size() - off));
      auto prefix = enc.pages_prefix(run->first + off, piece.size());
      wire::Writer h;
      h.u16(static_cast<uint16_t>(msg::Type::mig_chunk));
      h.u32(static_cast<uint32_t>(prefix.size() + piece.size()));
      ch.send_bulk({std::span<const std::byte>(h.buffer()), std::span<const std::byte>(prefix), piece});
      sent += prefix.size() + piece.size();
    }
  }
  std::vector<std::byte> tail = enc.trailer();
  ch.send_msg(msg::MigChunk{std::move(tail)});
  return sent + tail.size();
}

ImageReceiver::ImageReceiver(Channel& ch, std::chrono::milliseconds timeout)
    : ch_(ch), timeout_(timeout), dec_(msg::kMigMaxFrame) {}

void ImageReceiver::more() {
  // The decoder reads the chunk where the channel received it; what it has
  // not used when it asks for more it has copied (ImageDecoder::feed_view).
  auto data = msg::mig_chunk_data(ch_.recv_view(timeout_));
  if (data.empty()) throw wire::DecodeError("empty image chunk");
  dec_.feed_view(data);
}

const image::ProcessImage& ImageReceiver::header() {
  while (!have_header_) {
    if (auto ev = dec_.next()) {
      if (ev->type != image::ImageDecoder::Event::Type::header)
        throw wire::DecodeError("image stream: pages before the header");
      have_header_ = true;
    } else {
      more();
    }
  }
  return dec_.header();
}

restore::PageSource ImageReceiver::pages() {
  return [this]() -> std::optional<std::pair<uint64_t, std::span<const std::byte>>> {
    header();
    for (;;) {
      if (dec_.finished()) return std::nullopt;
      if (auto ev = dec_.next()) {
        if (ev->type == image::ImageDecoder::Event::Type::end) return std::nullopt;
        if (ev->type == image::ImageDecoder::Event::Type::pages) return std::pair{ev->addr, ev->data};
        continue;
      }
      more();
    }
  };
}

void ImageReceiver::drain() {
  auto p = pages();
  while (p()) {
  }
}

}  // namespace roam::mig
