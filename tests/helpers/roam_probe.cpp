// roam_probe: a hostile or confused peer, for the tests. Connects to a mosd
// peer port and misbehaves in one chosen way, then reports what mosd did:
//   "closed"  mosd dropped the connection
//   "open"    mosd kept it open (for --mode valid: the handshake completed)
// Usage: roam_probe MODE TARGET_ADDR:PORT [--key FILE] [--node N] [--bind ADDR]
// MODE: valid, wrong-key, unknown-node, bad-magic, bad-version, garbage,
//       truncated, oversized, malformed-gossip, impersonate
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "roam/config.hpp"
#include "roam/control.hpp"
#include "roam/error.hpp"
#include "roam/messages.hpp"
#include "roam/secure_channel.hpp"

using namespace roam;

namespace {

struct Args {
  std::string mode, target, key_file, bind_addr;
  uint32_t node = 0;
  uint64_t features = wire::kFeatGossip;  // what the hello offers
};

int dial(const Args& a) {
  std::string host = a.target.substr(0, a.target.rfind(':'));
  uint16_t port = static_cast<uint16_t>(std::stoi(a.target.substr(a.target.rfind(':') + 1)));
  socklen_t len = 0;
  auto addr = parse_sockaddr(host, port, &len);
  if (!addr) throw UserError("bad target " + a.target);
  int fd = check_sys(::socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket");
  if (!a.bind_addr.empty()) {
    socklen_t bl = 0;
    auto b = parse_sockaddr(a.bind_addr, 0, &bl);
    check_sys(::bind(fd, reinterpret_cast<sockaddr*>(&*b), bl), "bind " + a.bind_addr);
  }
  check_sys(::connect(fd, reinterpret_cast<sockaddr*>(&*addr), len), "connect " + a.target);
  return fd;
}

void send_raw(int fd, const std::vector<std::byte>& bytes) {
  ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
}

// Waits up to ms for mosd to close the connection (reading and dropping data).
bool peer_closes(int fd, int ms) {
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, ms);
    if (r <= 0) return false;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return true;
  }
}

ClusterKey key_of(const Args& a) {
  if (a.key_file.empty()) throw UserError("--key is needed for mode " + a.mode);
  return load_cluster_key(a.key_file);
}

// Runs the handshake as node a.node with key k; returns false if mosd closed.
bool handshake(int fd, const Args& a, const ClusterKey& k, Handshake& hs) {
  write_frame(fd, hs.hello_body());
  std::vector<std::byte> body;
  if (!read_frame(fd, body, 1 << 20)) return false;
  hs.on_peer_hello(body);
  write_frame(fd, hs.auth_body());
  try {
    if (!read_frame(fd, body, 1 << 20)) return false;
  } catch (const SysError&) {
    return false;
  }
  hs.on_peer_auth(body);
  (void)a;
  (void)k;
  return true;
}

int run(const Args& a) {
  int fd = dial(a);
  const int kWait = 3000;
  if (a.mode == "garbage") {
    std::vector<std::byte> junk(64);
    for (size_t i = 0; i < junk.size(); ++i) junk[i] = static_cast<std::byte>(i * 37 + 11);
    send_raw(fd, junk);
  } else if (a.mode == "truncated") {
    // A frame that promises 100 bytes and stops after 10; then half-close.
    wire::Writer w;
    w.u32(100);
    for (int i = 0; i < 10; ++i) w.u8(1);
    send_raw(fd, w.take());
    ::shutdown(fd, SHUT_WR);
  } else if (a.mode == "oversized") {
    wire::Writer w;
    w.u32(1u << 30);
    send_raw(fd, w.take());
  } else if (a.mode == "bad-magic" || a.mode == "bad-version") {
    msg::Hello h;
    h.node = a.node;
    if (a.mode == "bad-magic") h.magic = 0x12345678;
    else h.version = h.min_version = 999;
    write_frame(fd, msg::encode(h));
  } else if (a.mode == "unknown-node" || a.mode == "wrong-key" || a.mode == "impersonate" || a.mode == "valid" ||
             a.mode == "malformed-gossip") {
    ClusterKey k{};
    if (a.mode == "wrong-key") {
      for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<unsigned char>(i);
    } else {
      k = key_of(a);
    }
    Handshake hs(Role::client, k, a.node, a.features);
    bool done = false;
    try {
      done = handshake(fd, a, k, hs);
    } catch (const std::exception& e) {
      std::printf("closed (%s)\n", e.what());
      return 0;
    }
    if (!done) {
      std::printf("closed\n");
      return 0;
    }
    if (a.mode == "malformed-gossip") {
      // A sealed, authentic message whose content is malformed: a gossip
      // message claiming more entries than it carries.
      wire::Writer w;
      w.u16(static_cast<uint16_t>(msg::Type::gossip));
      w.u32(3);
      w.u32(a.node);
      write_frame(fd, hs.stream().seal(w.take()));
    } else {
      msg::Gossip g;
      msg::GossipEntry e;
      e.node = a.node;
      e.info.ncpus = 1;
      g.entries.push_back(e);
      write_frame(fd, hs.stream().seal(msg::encode(g)));
    }
  } else {
    throw UserError("unknown mode " + a.mode);
  }
  std::printf("%s\n", peer_closes(fd, kWait) ? "closed" : "open");
  ::close(fd);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: roam_probe MODE ADDR:PORT [--key FILE] [--node N] [--bind ADDR] [--features BITS]\n");
    return 2;
  }
  Args a;
  a.mode = argv[1];
  a.target = argv[2];
  for (int i = 3; i + 1 < argc; i += 2) {
    std::string f = argv[i];
    if (f == "--key") a.key_file = argv[i + 1];
    else if (f == "--node") a.node = static_cast<uint32_t>(std::stoul(argv[i + 1]));
    else if (f == "--bind") a.bind_addr = argv[i + 1];
    else if (f == "--features") a.features = std::stoull(argv[i + 1], nullptr, 0);
    else {
      std::fprintf(stderr, "roam_probe: unknown flag %s\n", f.c_str());
      return 2;
    }
  }
  try {
    return run(a);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "roam_probe: %s\n", e.what());
    return 1;
  }
}
