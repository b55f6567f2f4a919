// A blocking framed connection for the migration agents (one per moved
// process): length-prefixed frames, sealed with the secure channel when it
// crosses the network, plain on a socketpair inside one process (the
// one-machine split). Agents drive it from their own poll loops: pump()
// after poll says readable, then pop() every complete frame.
#pragma once

#include <sys/uio.h>

#include <chrono>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "roam/config.hpp"
#include "roam/fd.hpp"
#include "roam/messages.hpp"
#include "roam/secure_channel.hpp"
#include "roam/wire.hpp"

namespace roam {

// The connection broke, timed out, or carried something that does not decode.
class ChannelError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Channel {
 public:
  Channel() = default;
  // `stream` null: frames travel in the clear (a socketpair inside one process).
  Channel(FileDesc fd, std::unique_ptr<SecureStream> stream, size_t max_frame);
  Channel(Channel&&) noexcept = default;
  Channel& operator=(Channel&&) noexcept = default;

  int fd() const { return fd_.get(); }
  // From now on frames are sealed and opened with `stream` (after a handshake).
  void seal_with(std::unique_ptr<SecureStream> stream) { stream_ = std::move(stream); }
  bool open() const { return fd_.valid() && !eof_; }

  // Blocks until the whole frame is written. ChannelError if the peer is gone.
  void send(std::span<const std::byte> body);
  template <typename M>
  void send_msg(const M& m) {
    send(msg::encode(m));
  }
  // A frame of bulk data whose body is the concatenation of `pieces`: when
  // both ends agreed (bulk_auth()), it travels in the clear with an
  // integrity tag (SecureStream::tag), written straight from the pieces;
  // otherwise it is sealed like any frame.
  void send_bulk(std::initializer_list<std::span<const std::byte>> pieces);
  bool bulk_auth() const { return bulk_auth_; }
  void set_bulk_auth(bool on) { bulk_auth_ = on; }
  // The tag algorithm of bulk frames; nullopt when they are sealed.
  std::optional<SecureStream::BulkMac> bulk_mac() const {
    if (!stream_ || !bulk_auth_) return std::nullopt;
    return stream_->bulk_mac();
  }
  // Reads what is available without blocking. False once the peer closed.
  bool pump();
  // The next complete frame body, opened. DecodeError if forged or garbled.
  bool pop(std::vector<std::byte>& body);
  // Blocks for one frame. ChannelError on EOF or after `timeout`.
  std::vector<std::byte> recv(std::chrono::milliseconds timeout);
  // The same without a copy: a view of the opened frame in the channel's
  // buffers, valid until the next receive on this channel. Big frames are
  // read straight into place (bulk page data: one copy out of the socket).
  std::span<const std::byte> recv_view(std::chrono::milliseconds timeout);
  template <typename M>
  M recv_msg(std::chrono::milliseconds timeout) {
    auto body = recv(timeout);
    if (msg::peek_type(body) == msg::Type::error_reply)
      throw ChannelError(msg::decode<msg::ErrorReply>(body).message);
    return msg::decode<M>(body);
  }
  // When a frame last arrived (keepalives included).
  std::chrono::steady_clock::time_point last_heard() const { return last_heard_; }

 private:
  FileDesc fd_;
  void write_iov(iovec* iov, int n);
  std::unique_ptr<SecureStream> stream_;
  bool bulk_auth_ = false;
  bool pop_view(std::span<const std::byte>& body);
  void wake_for(size_t missing);
  int lowat_ = 1;
  wire::FrameAssembler in_;
  std::vector<std::byte> opened_;  // the last sealed frame recv_view opened
  bool eof_ = false;
  std::chrono::steady_clock::time_point last_heard_ = std::chrono::steady_clock::now();
};

// Dials ADDRESS:PORT and runs the handshake as a client; the peer must be
// node `expected_node` and offer every bit of `features`. Both sides also
// offer msg::kFeatBulkAuth unless `seal_bulk`: page data then travels with
// an integrity tag instead of sealed when both offered it.
Channel dial_channel(const std::string& address, uint16_t port, const ClusterKey& key, uint32_t self,
                     uint32_t expected_node, uint64_t features, std::chrono::milliseconds timeout, size_t max_frame,
                     bool seal_bulk = false);
// The server half on an accepted socket. Returns the peer's node number.
Channel accept_channel(FileDesc fd, const ClusterKey& key, uint32_t self, uint64_t features,
                       std::chrono::milliseconds timeout, size_t max_frame, uint32_t* peer_node,
                       bool seal_bulk = false);

}  // namespace roam
