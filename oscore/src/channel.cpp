#include "roam/channel.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include <array>
#include <cerrno>
#include <algorithm>
#include <cstring>

#include "roam/error.hpp"
#include "roam/mig_messages.hpp"

namespace roam {

using Clock = std::chrono::steady_clock;

namespace {

// The u32 little-endian length that starts every frame.
std::array<unsigned char, 4> frame_head(uint32_t n) {
  return {static_cast<unsigned char>(n), static_cast<unsigned char>(n >> 8), static_cast<unsigned char>(n >> 16),
          static_cast<unsigned char>(n >> 24)};
}

}  // namespace

Channel::Channel(FileDesc fd, std::unique_ptr<SecureStream> stream, size_t max_frame)
    : fd_(std::move(fd)), stream_(std::move(stream)), in_(max_frame) {}

void Channel::send(std::span<const std::byte> body) {
  if (!fd_) throw ChannelError("send on a closed channel");
  std::vector<std::byte> sealed;
  if (stream_) {
    sealed = stream_->seal(body);
    body = sealed;
  }
  auto head = frame_head(static_cast<uint32_t>(body.size()));
  iovec iov[2] = {{head.data(), 4}, {const_cast<std::byte*>(body.data()), body.size()}};
  write_iov(iov, 2);
}

void Channel::send_bulk(std::initializer_list<std::span<const std::byte>> pieces) {
  if (!fd_) throw ChannelError("send on a closed channel");
  if (!stream_ || !bulk_auth_) {
    std::vector<std::byte> body;
    for (auto p : pieces) body.insert(body.end(), p.begin(), p.end());
    return send(body);
  }
  auto mac = stream_->tag(pieces);
  size_t total = mac.size();
  for (auto p : pieces) total += p.size();
  auto head = frame_head(static_cast<uint32_t>(total) | wire::kFrameFlag);
  iovec iov[8];
  int cnt = 0;
  iov[cnt++] = {head.data(), 4};
  for (auto p : pieces) {
    if (cnt == 7) throw ChannelError("send_bulk: too many pieces");
    iov[cnt++] = {const_cast<std::byte*>(p.data()), p.size()};
  }
  iov[cnt++] = {mac.data(), mac.size()};
  write_iov(iov, cnt);
}

void Channel::write_iov(iovec* iov, int count) {
  size_t total = 0, done = 0;
  for (int i = 0; i < count; ++i) total += iov[i].iov_len;
  while (done < total) {
    msghdr mh{};
    iovec cur[8];
    int cnt = 0;
    size_t skip = done;
    for (int i = 0; i < count; ++i) {
      iovec v = iov[i];
      if (skip >= v.iov_len) {
        skip -= v.iov_len;
        continue;
      }
      cur[cnt++] = {static_cast<char*>(v.iov_base) + skip, v.iov_len - skip};
      skip = 0;
    }
    mh.msg_iov = cur;
    mh.msg_iovlen = static_cast<size_t>(cnt);
    ssize_t w = ::sendmsg(fd_.get(), &mh, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) {
      pollfd p{fd_.get(), POLLOUT, 0};
      ::poll(&p, 1, 1000);
      continue;
    }
    if (w < 0) throw ChannelError(fmt::format("connection lost: {}", std::strerror(errno)));
    done += static_cast<size_t>(w);
  }
}

bool Channel::pump() {
  if (!fd_ || eof_) return false;
  constexpr size_t kRead = 256 * 1024;
  for (;;) {
    auto room = in_.space(kRead);
    ssize_t n = ::recv(fd_.get(), room.data(), room.size(), MSG_DONTWAIT);
    if (n > 0) {
      in_.commit(static_cast<size_t>(n));
      // A whole frame is here: let the caller take it before reading on,
      // or a sender streaming an image would have all of it buffered here.
      if (static_cast<size_t>(n) < room.size() || in_.complete()) return true;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    eof_ = true;
    return false;
  }
}

bool Channel::pop_view(std::span<const std::byte>& body) {
  std::span<std::byte> raw;
  bool bulk = false;
  if (!in_.pop_view(raw, &bulk)) return false;
  last_heard_ = Clock::now();
  if (bulk) {
    if (!stream_ || !bulk_auth_) throw wire::DecodeError("a bulk frame on a channel that did not agree to them");
    if (raw.size() < SecureStream::kTagBytes) throw wire::DecodeError("bulk frame shorter than its tag");
    size_t n = raw.size() - SecureStream::kTagBytes;
    stream_->check(raw.first(n), raw.subspan(n));
    body = raw.first(n);
    return true;
  }
  if (stream_) {
    opened_ = stream_->open(raw);
    body = opened_;
  } else {
    body = raw;
  }
  return true;
}

bool Channel::pop(std::vector<std::byte>& body) {
  std::span<const std::byte> view;
  if (!pop_view(view)) return false;
  body.assign(view.begin(), view.end());
  return true;
}

std::span<const std::byte> Channel::recv_view(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  std::span<const std::byte> body;
  // The low-water mark this wait raises is its own: a caller's own poll
  // must wake for the next small frame (a keepalive, a forwarded call), or
  // it hears nothing until the link times out.
  struct LowerAgain {
    Channel* ch;
    ~LowerAgain() { ch->wake_for(0); }
  } lower{this};
  for (;;) {
    if (pop_view(body)) return body;
    if (eof_) throw ChannelError("connection closed by the peer");
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) throw ChannelError(fmt::format("no answer within {} ms", timeout.count()));
    wake_for(in_.missing());
    pollfd p{fd_.get(), POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno != EINTR) throw ChannelError(fmt::format("poll: {}", std::strerror(errno)));
    if (r > 0 && !pump() && in_.buffered() == 0) throw ChannelError("connection closed by the peer");
  }
}

// While a big frame streams in, poll wakes only once a good part of what
// is missing has come (SO_RCVLOWAT): a few large reads instead of a wakeup
// per TCP segment batch.
void Channel::wake_for(size_t missing) {
  constexpr size_t kMaxLowat = 256 * 1024;
  int want = static_cast<int>(std::clamp<size_t>(missing, 1, kMaxLowat));
  if (want == lowat_) return;
  if (::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVLOWAT, &want, sizeof want) == 0) lowat_ = want;
}

std::vector<std::byte> Channel::recv(std::chrono::milliseconds timeout) {
  auto view = recv_view(timeout);
  return std::vector<std::byte>(view.begin(), view.end());
}

namespace {

void set_socket_options(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// Hello and auth in the clear (both sides send first, then read).
Channel handshake(FileDesc fd, Role role, const ClusterKey& key, uint32_t self, uint64_t features,
                  std::chrono::milliseconds timeout, size_t max_frame, uint32_t expected_node, uint32_t* peer,
                  bool seal_bulk) {
  uint64_t offered = features | (seal_bulk ? 0 : msg::kFeatBulkAuth);
  if (!seal_bulk && SecureStream::gmac_faster_here()) offered |= msg::kFeatBulkGmac;
  Handshake hs(role, key, self, offered);
  Channel ch(std::move(fd), nullptr, max_frame);
  ch.send(hs.hello_body());
  try {
    hs.on_peer_hello(ch.recv(timeout));
  } catch (const wire::DecodeError& e) {
    throw HandshakeError(e.what());
  }
  if (expected_node != 0 && hs.peer_node() != expected_node)
    throw HandshakeError(fmt::format("dialed node {} but node {} answered", expected_node, hs.peer_node()));
  if ((hs.peer_features() & features) != features)
    throw HandshakeError(fmt::format("node {} does not offer migration (features {:#x})", hs.peer_node(),
                                     hs.peer_features()));
  ch.send(hs.auth_body());
  try {
    hs.on_peer_auth(ch.recv(timeout));
  } catch (const wire::DecodeError& e) {
    throw HandshakeError(e.what());
  }
  if (peer) *peer = hs.peer_node();
  // Frames the peer sealed right after its auth may already sit in the
  // assembler: they are opened with the stream from here on.
  auto stream = std::make_unique<SecureStream>(hs.stream());
  if (offered & hs.peer_features() & msg::kFeatBulkGmac) stream->set_bulk_mac(SecureStream::BulkMac::gmac);
  ch.seal_with(std::move(stream));
  ch.set_bulk_auth((offered & hs.peer_features() & msg::kFeatBulkAuth) != 0);
  return ch;
}

}  // namespace

Channel dial_channel(const std::string& address, uint16_t port, const ClusterKey& key, uint32_t self,
                     uint32_t expected_node, uint64_t features, std::chrono::milliseconds timeout,
                     size_t max_frame, bool seal_bulk) {
  socklen_t len = 0;
  auto sa = parse_sockaddr(address, port, &len);
  if (!sa) throw UserError(fmt::format("bad address {}", address));
  FileDesc fd(check_sys(::socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), "socket"));
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&*sa), len) != 0 && errno != EINPROGRESS)
    throw ChannelError(fmt::format("connect to {}:{}: {}", address, port, std::strerror(errno)));
  pollfd p{fd.get(), POLLOUT, 0};
  int r;
  do r = ::poll(&p, 1, static_cast<int>(timeout.count()));
  while (r < 0 && errno == EINTR);
  if (r == 0) throw ChannelError(fmt::format("connect to {}:{}: timed out", address, port));
  int err = 0;
  socklen_t el = sizeof err;
  ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &el);
  if (err != 0) throw ChannelError(fmt::format("connect to {}:{}: {}", address, port, std::strerror(err)));
  set_socket_options(fd.get());
  return handshake(std::move(fd), Role::client, key, self, features, timeout, max_frame, expected_node, nullptr,
                   seal_bulk);
}

Channel accept_channel(FileDesc fd, const ClusterKey& key, uint32_t self, uint64_t features,
                       std::chrono::milliseconds timeout, size_t max_frame, uint32_t* peer_node,
                       bool seal_bulk) {
  set_socket_options(fd.get());
  return handshake(std::move(fd), Role::server, key, self, features, timeout, max_frame, 0, peer_node, seal_bulk);
}

}  // namespace roam
