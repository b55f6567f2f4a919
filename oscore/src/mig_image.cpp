#include "roam/mig_image.hpp"

#include <fmt/format.h>

#include "roam/capture.hpp"
#include "roam/image_pages.hpp"
#include "roam/mig_messages.hpp"

namespace roam::mig {


namespace {

// One RIMG stream as MigChunk frames: the state sections, then page records
// (a frame each, sent from where the pages lie), then the trailer, which
// vouches for the pages the encoder counted.
class StreamSender {
 public:
  StreamSender(Channel& ch, const image::ProcessImage& image) : ch_(ch) {
    std::vector<std::byte> head = enc_.header(image);  // state only: pages go as records
    for (size_t off = 0; off < head.size(); off += msg::kMigChunkBytes) {
      auto piece = std::span<const std::byte>(head).subspan(off, std::min(msg::kMigChunkBytes, head.size() - off));
      ch_.send_msg(msg::MigChunk{{piece.begin(), piece.end()}});
    }
    sent_ = head.size();
  }

  static constexpr size_t kPiece = (msg::kMigChunkBytes - image::kPagesPrefixBytes) & ~size_t{4095};

  // Pages at `addr`, in frames of at most kPiece bytes: MigChunk's own head
  // (type, blob length), the page record's prefix, then the pages.
  void pages(uint64_t addr, std::span<const std::byte> data) {
    for (size_t off = 0; off < data.size(); off += kPiece) {
      auto piece = data.subspan(off, std::min(kPiece, data.size() - off));
      auto prefix = enc_.pages_prefix(addr + off, piece.size());
      wire::Writer h;
      h.u16(static_cast<uint16_t>(msg::Type::mig_chunk));
      h.u32(static_cast<uint32_t>(prefix.size() + piece.size()));
      ch_.send_bulk({std::span<const std::byte>(h.buffer()), std::span<const std::byte>(prefix), piece});
      sent_ += prefix.size() + piece.size();
    }
  }

  uint64_t finish() {
    std::vector<std::byte> tail = enc_.trailer();
    sent_ += tail.size();
    ch_.send_msg(msg::MigChunk{std::move(tail)});
    return sent_;
  }

 private:
  Channel& ch_;
  image::ImageEncoder enc_;
  uint64_t sent_ = 0;
};

}  // namespace

uint64_t send_image(Channel& ch, const image::ProcessImage& image, pid_t stopped, std::span<const uint64_t> mismatched) {
  StreamSender out(ch, image);
  for (const image::PageData& p : image.pages) out.pages(p.addr, p.bytes);
  if (stopped > 0 && image.pages.empty()) {
    // Reading a little and sending it before reading more keeps the batch
    // in cache and the receiver busy: it checks and writes a frame only
    // once all of it came. With the receiver's SO_RCVLOWAT wake-ups,
    // 128 KiB batches froze a 1 GiB process slowest here (median 2.5x raw
    // TCP over 5 moves), 256 KiB-2 MiB within the noise of each other
    // (1.6-2.0x); 512 KiB it is.
    constexpr size_t kBatch = size_t{512} << 10;
    static_assert(kBatch <= StreamSender::kPiece);
    std::vector<image::PageRun> runs = image::pages_to_send(image, mismatched);
    image::read_pages(stopped, runs, [&](uint64_t addr, std::span<const std::byte> data) { out.pages(addr, data); },
                      kBatch);
  }
  return out.finish();
}

uint64_t relay_image(Channel& ch, const image::ProcessImage& header, const restore::PageSource& pages) {
  StreamSender out(ch, header);
  while (auto run = pages()) out.pages(run->first, run->second);
  return out.finish();
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
