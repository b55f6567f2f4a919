// The daemon's connections: framing and output queue (FramedLink), the peer
// handshake and gossip (PeerLink), and the tools' requests (ControlLink).
#include <sys/socket.h>

#include <fmt/format.h>

#include "daemon.hpp"
#include "roam/mig_messages.hpp"
#include "roam/error.hpp"
#include "roam/log.hpp"

namespace roam::mosd {

FramedLink::FramedLink(Daemon& d, FileDesc fd, std::string remote, size_t max_frame)
    : d_(d), fd_(std::move(fd)), remote_(std::move(remote)), in_(max_frame), rbuf_(64 * 1024) {}

void FramedLink::start() {
  on_start();
  read_more();
}

void FramedLink::read_more() {
  if (closed_) return;
  auto self = shared_from_this();
  d_.loop().recv(fd_.get(), rbuf_.data(), rbuf_.size(), [self](int res) {
    if (self->closed_) return;
    if (res == 0 && self->in_.buffered() > 0) {
      auto why = fmt::format("truncated frame: connection closed with {} bytes of a frame unread", self->in_.buffered());
      self->d_.note_refusal(self->remote_, why);
      self->close(why);
      return;
    }
    if (res <= 0) {
      self->close(res == 0 ? "connection closed by peer" : fmt::format("receive failed: {}", std::strerror(-res)));
      return;
    }
    try {
      self->in_.feed(std::span(self->rbuf_.data(), static_cast<size_t>(res)));
      std::vector<std::byte> body;
      while (!self->closed_ && self->in_.pop(body)) self->on_frame(body);
    } catch (const wire::DecodeError& e) {
      self->d_.note_refusal(self->remote_, fmt::format("malformed input: {}", e.what()));
      self->close(fmt::format("malformed input: {}", e.what()));
      return;
    }
    self->read_more();
  });
}

void FramedLink::send_frame(std::span<const std::byte> body) {
  if (closed_) return;
  out_.push_back(wire::frame(body));
  flush();
}

void FramedLink::flush() {
  if (sending_ || closed_ || out_.empty()) return;
  sending_ = true;
  auto self = shared_from_this();
  auto& front = out_.front();
  d_.loop().send(fd_.get(), front.data() + out_off_, front.size() - out_off_, [self](int res) {
    self->sending_ = false;
    if (self->closed_) return;
    if (res < 0) {
      self->close(fmt::format("send failed: {}", std::strerror(-res)));
      return;
    }
    self->out_off_ += static_cast<size_t>(res);
    if (self->out_off_ == self->out_.front().size()) {
      self->out_.pop_front();
      self->out_off_ = 0;
    }
    self->flush();
  });
}

void FramedLink::close(const std::string& why) {
  if (closed_) return;
  closed_ = true;
  // Wakes the pending receive (it completes with 0); the descriptor itself is
  // closed when the last handler lets go of this link.
  ::shutdown(fd_.get(), SHUT_RDWR);
  on_close(why);
  d_.on_link_closed(this);
}

// ---- PeerLink

PeerLink::PeerLink(Daemon& d, FileDesc fd, std::string remote, Role role, uint32_t expected_node)
    : FramedLink(d, std::move(fd), std::move(remote), d.config().settings.max_frame),
      role_(role),
      expected_node_(expected_node),
      hs_(role, d.key(), d.self(), wire::kFeatGossip) {}

void PeerLink::on_start() {
  send_frame(hs_.hello_body());
  // A peer that never finishes its handshake is dropped.
  std::weak_ptr<FramedLink> weak = shared_from_this();
  d_.loop().after(d_.config().settings.connect_timeout_ms * 2, [weak] {
    if (auto s = weak.lock()) {
      auto* p = static_cast<PeerLink*>(s.get());
      if (!p->closed() && !p->ready()) p->refuse("handshake timed out");
    }
  });
}

void PeerLink::send_message(const std::vector<std::byte>& body) {
  if (closed()) return;
  if (state_ != State::ready) {
    waiting_.push_back(body);
    while (waiting_.size() > kMaxQueued) waiting_.pop_front();
    return;
  }
  send_frame(hs_.stream().seal(body));
}

void PeerLink::refuse(const std::string& why) {
  d_.note_refusal(remote_, why);
  close(why);
}

void PeerLink::on_frame(std::vector<std::byte>& body) {
  try {
    switch (state_) {
      case State::hello: {
        hs_.on_peer_hello(body);
        uint32_t node = hs_.peer_node();
        const NodeSpec* spec = d_.config().find(node);
        if (!spec) return refuse(fmt::format("node {} is not in the cluster map", node));
        if (node == d_.self()) return refuse(fmt::format("peer claims to be this node ({})", node));
        if (role_ == Role::client && node != expected_node_)
          return refuse(fmt::format("dialed node {} but node {} answered", expected_node_, node));
        if (role_ == Role::server) {
          // remote_ is "ADDR:PORT" (or "[V6]:PORT"): the address must be the map's.
          std::string addr = remote_.substr(0, remote_.rfind(':'));
          if (!addr.empty() && addr.front() == '[') addr = addr.substr(1, addr.size() - 2);
          if (addr != spec->address)
            return refuse(fmt::format("claims node {} but node {} is at {}", node, node, spec->address));
        }
        if (!(hs_.peer_features() & wire::kFeatGossip)) return refuse("peer lacks the gossip feature");
        peer_node_ = node;
        send_frame(hs_.auth_body());
        state_ = State::auth;
        return;
      }
      case State::auth: {
        hs_.on_peer_auth(body);
        state_ = State::ready;
        log_debug("link with {} ({}) is up, protocol v{}", d_.name_of(peer_node_), remote_, hs_.version());
        while (!waiting_.empty()) {
          send_frame(hs_.stream().seal(waiting_.front()));
          waiting_.pop_front();
        }
        return;
      }
      case State::ready: {
        auto plain = hs_.stream().open(body);
        auto type = msg::peek_type(plain);
        if (type == msg::Type::gossip) {
          d_.on_gossip(*this, msg::decode<msg::Gossip>(plain));
        } else {
          // Unknown tags come from newer peers; they are ignored, not fatal.
          log_debug("{}: ignoring message type {}", remote_, static_cast<unsigned>(type));
        }
        return;
      }
    }
  } catch (const HandshakeError& e) {
    refuse(e.what());
  }
}

void PeerLink::on_close(const std::string& why) {
  if (state_ == State::ready) log_debug("link with {} ({}) closed: {}", d_.name_of(peer_node_), remote_, why);
}

// ---- ControlLink

ControlLink::ControlLink(Daemon& d, FileDesc fd, pid_t peer_pid, uid_t peer_uid)
    : FramedLink(d, std::move(fd), fmt::format("tool pid {}", peer_pid), 64 * 1024), peer_pid_(peer_pid), peer_uid_(peer_uid) {}

void ControlLink::reply_error(const std::string& message) { send_frame(msg::encode(msg::ErrorReply{message})); }

void ControlLink::on_frame(std::vector<std::byte>& body) {
  auto type = msg::peek_type(body);
  if (!greeted_) {
    msg::decode<msg::CtlHello>(body);
    greeted_ = true;
    return;
  }
  switch (type) {
    case msg::Type::status_request:
      send_frame(msg::encode(d_.status()));
      return;
    case msg::Type::ps_request:
      send_frame(msg::encode(d_.ps()));
      return;
    case msg::Type::guests_request:
      send_frame(msg::encode(d_.guests()));
      return;
    case msg::Type::node_command: {
      auto req = msg::decode<msg::NodeCommand>(body);
      try {
        send_frame(msg::encode(d_.node_command(req, peer_uid_)));
      } catch (const std::exception& e) {
        reply_error(e.what());
      }
      return;
    }
    case msg::Type::register_job: {
      auto req = msg::decode<msg::RegisterJob>(body);
      try {
        send_frame(msg::encode(d_.register_job(peer_pid_, peer_uid_, req)));
      } catch (const std::exception& e) {
        reply_error(e.what());
      }
      return;
    }
    case msg::Type::migrate_request: {
      auto req = msg::decode<msg::MigrateRequest>(body);
      try {
        send_frame(msg::encode(d_.migrate(req, peer_uid_)));
      } catch (const std::exception& e) {
        reply_error(e.what());
      }
      return;
    }
    default:
      reply_error(fmt::format("unknown request type {}", static_cast<unsigned>(type)));
      return;
  }
}

}  // namespace roam::mosd
