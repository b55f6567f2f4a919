// A process image over a migration connection, as a stream of MigChunk
// frames carrying the RIMG encoding (image_codec.hpp): the header, then page
// records sent straight from the captured buffers, then the trailer. The
// receiver restores while pages arrive (restore::PageSource), so the
// transfer and the page writes overlap and no side holds a second copy of
// the whole image.
#pragma once

#include <chrono>

#include "roam/channel.hpp"
#include "roam/image.hpp"
#include "roam/image_codec.hpp"
#include "roam/restore.hpp"

namespace roam::mig {

// Returns the bytes of RIMG stream sent. Page contents come from
// image.pages, or, when `stopped` is a process (the image was captured
// without contents and the process is still stopped), are read from it as
// they are sent: 1 MiB at a time, each read straight into place by
// process_vm_readv and sent from there.
uint64_t send_image(Channel& ch, const image::ProcessImage& image, pid_t stopped = 0,
                    std::span<const uint64_t> mismatched = {});

// The same stream from another source: `header`'s state sections, then
// the runs `pages` gives, each sent as it comes (a home relaying a body from
// one node to another: nothing is held but the run in hand).
uint64_t relay_image(Channel& ch, const image::ProcessImage& header, const restore::PageSource& pages);

class ImageReceiver {
 public:
  ImageReceiver(Channel& ch, std::chrono::milliseconds timeout);
  // Reads until the state sections are complete (pages not included).
  const image::ProcessImage& header();
  // The page runs, read as they are asked for; nothing after the trailer.
  restore::PageSource pages();
  // Reads and drops whatever of the stream has not come yet.
  void drain();
  bool finished() const { return dec_.finished(); }

 private:
  void more();
  Channel& ch_;
  std::chrono::milliseconds timeout_;
  image::ImageDecoder dec_;
  bool have_header_ = false;
};

}  // namespace roam::mig
