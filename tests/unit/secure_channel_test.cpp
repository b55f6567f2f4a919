// The peer handshake and the sealed stream: two holders of the cluster key
// reach a working stream both ways; a wrong key, a non-overlapping version
// range, a reflected hello or auth, and a tampered transcript are refused;
// forged, replayed and reordered frames fail to open.
#include "roam/secure_channel.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "roam/channel.hpp"
#include "roam/messages.hpp"
#include "roam/mig_messages.hpp"
#include "roam/wire.hpp"

namespace roam {
namespace {

using Bytes = std::vector<std::byte>;

ClusterKey key_filled(unsigned char seed) {
  ClusterKey k;
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<unsigned char>(seed + i * 31);
  return k;
}

Bytes text(const std::string& s) {
  auto b = std::as_bytes(std::span(s.data(), s.size()));
  return Bytes(b.begin(), b.end());
}

constexpr uint64_t kClientFeatures = wire::kFeatGossip;
constexpr uint64_t kServerFeatures = wire::kFeatGossip | wire::kFeatControl;

// Both sides of a connection, handshaken in the order the daemon uses:
// hellos cross, then auths cross.
struct Pair {
  Handshake client;
  Handshake server;
  Pair(const ClusterKey& client_key, const ClusterKey& server_key)
      : client(Role::client, client_key, 11, kClientFeatures), server(Role::server, server_key, 22, kServerFeatures) {}

  void exchange_hellos() {
    server.on_peer_hello(client.hello_body());
    client.on_peer_hello(server.hello_body());
  }
  void exchange_auths() {
    auto from_client = client.auth_body();
    auto from_server = server.auth_body();
    server.on_peer_auth(from_client);
    client.on_peer_auth(from_server);
  }
};

struct Connected : Pair {
  Connected() : Pair(key_filled(7), key_filled(7)) {
    exchange_hellos();
    exchange_auths();
  }
};

TEST(Handshake, SameKeyReachesAWorkingStreamBothWays) {
  Connected c;
  EXPECT_EQ(c.server.peer_node(), 11u);
  EXPECT_EQ(c.client.peer_node(), 22u);
  EXPECT_EQ(c.server.peer_features(), kClientFeatures);
  EXPECT_EQ(c.client.peer_features(), kServerFeatures);
  EXPECT_EQ(c.client.version(), wire::kVersion);
  EXPECT_EQ(c.server.version(), wire::kVersion);

  // Interleaved traffic, several frames each way, including an empty one
  // and one larger than a typical gossip message.
  std::vector<std::string> to_server = {"gossip 1", "", std::string(70000, 'g'), "gossip 4"};
  std::vector<std::string> to_client = {"status", "ps", std::string(1, '\0')};
  for (size_t i = 0; i < std::max(to_server.size(), to_client.size()); ++i) {
    if (i < to_server.size()) {
      auto sealed = c.client.stream().seal(text(to_server[i]));
      EXPECT_EQ(sealed.size(), to_server[i].size() + crypto_secretstream_xchacha20poly1305_ABYTES);
      if (!to_server[i].empty()) {
        auto clear = text(to_server[i]);
        EXPECT_EQ(std::search(sealed.begin(), sealed.end(), clear.begin(), clear.end()), sealed.end())
            << "plaintext went out in the clear";
      }
      EXPECT_EQ(c.server.stream().open(sealed), text(to_server[i])) << "client->server frame " << i;
    }
    if (i < to_client.size()) {
      auto sealed = c.server.stream().seal(text(to_client[i]));
      EXPECT_EQ(c.client.stream().open(sealed), text(to_client[i])) << "server->client frame " << i;
    }
  }
}

TEST(Handshake, EachConnectionGetsFreshNoncesAndKeys) {
  Connected a, b;
  EXPECT_NE(a.client.hello_body(), b.client.hello_body());
  auto sealed = a.client.stream().seal(text("for a only"));
  EXPECT_THROW(b.server.stream().open(sealed), wire::DecodeError);
  EXPECT_EQ(a.server.stream().open(sealed), text("for a only"));
}

TEST(Handshake, DifferentKeysAreRefusedAtAuth) {
  Pair p(key_filled(1), key_filled(2));
  p.exchange_hellos();  // hellos carry no proof: they pass
  auto from_client = p.client.auth_body();
  auto from_server = p.server.auth_body();
  try {
    p.server.on_peer_auth(from_client);
    FAIL() << "server accepted a client without the cluster key";
  } catch (const HandshakeError& e) {
    EXPECT_NE(std::string(e.what()).find("cluster key"), std::string::npos) << e.what();
  }
  EXPECT_THROW(p.client.on_peer_auth(from_server), HandshakeError);
}

TEST(Handshake, KeysDifferingInOneBitAreRefused) {
  ClusterKey k = key_filled(5), k2 = k;
  k2[17] ^= 0x01;
  Pair p(k, k2);
  p.exchange_hellos();
  EXPECT_THROW(p.server.on_peer_auth(p.client.auth_body()), HandshakeError);
}

TEST(Handshake, TamperedHelloInTransitIsCaughtAtAuth) {
  // A man in the middle who rewrites the client's hello (here: strips a
  // feature bit) cannot fix the MAC, which covers both hellos.
  Pair p(key_filled(3), key_filled(3));
  auto hello = msg::decode<msg::Hello>(p.client.hello_body());
  hello.features = 0;
  p.server.on_peer_hello(msg::encode(hello));
  p.client.on_peer_hello(p.server.hello_body());
  EXPECT_THROW(p.server.on_peer_auth(p.client.auth_body()), HandshakeError);
  EXPECT_THROW(p.client.on_peer_auth(p.server.auth_body()), HandshakeError);
}

TEST(Handshake, TamperedAuthMacIsRefused) {
  Pair p(key_filled(3), key_filled(3));
  p.exchange_hellos();
  auto auth = p.client.auth_body();
  auth[2 + 5] ^= std::byte{0x40};  // inside the MAC, after the u16 tag
  EXPECT_THROW(p.server.on_peer_auth(auth), HandshakeError);
}

TEST(Handshake, TruncatedOrWrongTypeAuthIsADecodeError) {
  Pair p(key_filled(3), key_filled(3));
  p.exchange_hellos();
  auto auth = p.client.auth_body();
  auth.pop_back();
  EXPECT_THROW(p.server.on_peer_auth(auth), wire::DecodeError);
  EXPECT_THROW(p.server.on_peer_auth(p.client.hello_body()), wire::DecodeError);
}

TEST(Handshake, ReflectedAuthIsRefused) {
  // The MAC names the sender's role, so a server's own proof sent back to it
  // does not pass as the client's.
  Pair p(key_filled(4), key_filled(4));
  p.exchange_hellos();
  auto mine = p.server.auth_body();
  EXPECT_THROW(p.server.on_peer_auth(mine), HandshakeError);
}

Bytes hello_with_versions(uint16_t min_version, uint16_t version) {
  msg::Hello h;
  h.node = 99;
  h.min_version = min_version;
  h.version = version;
  h.nonce.fill(0x42);
  return msg::encode(h);
}

TEST(Handshake, NonOverlappingVersionsAreRefused) {
  {
    Handshake server(Role::server, key_filled(1), 1, 0);
    try {
      server.on_peer_hello(hello_with_versions(wire::kVersion + 1, wire::kVersion + 5));  // all newer
      FAIL() << "accepted a peer that only speaks newer versions";
    } catch (const HandshakeError& e) {
      EXPECT_NE(std::string(e.what()).find("versions do not overlap"), std::string::npos) << e.what();
    }
  }
  if (wire::kMinVersion > 0) {
    Handshake server(Role::server, key_filled(1), 1, 0);
    EXPECT_THROW(server.on_peer_hello(hello_with_versions(0, wire::kMinVersion - 1)), HandshakeError);  // all older
  }
  {
    Handshake server(Role::server, key_filled(1), 1, 0);
    // An inverted range claims nothing, even though it covers ours.
    EXPECT_THROW(server.on_peer_hello(hello_with_versions(wire::kVersion + 1, wire::kMinVersion)), HandshakeError);
  }
}

TEST(Handshake, OverlappingVersionRangeSettlesOnTheHighestCommon) {
  Handshake server(Role::server, key_filled(1), 1, 0);
  server.on_peer_hello(hello_with_versions(wire::kMinVersion, wire::kVersion + 3));
  EXPECT_EQ(server.version(), wire::kVersion);
  EXPECT_EQ(server.peer_node(), 99u);
}

TEST(Handshake, ReflectedHelloIsRefused) {
  Handshake server(Role::server, key_filled(9), 5, wire::kFeatGossip);
  try {
    server.on_peer_hello(server.hello_body());
    FAIL() << "accepted our own hello as the peer's";
  } catch (const HandshakeError& e) {
    EXPECT_NE(std::string(e.what()).find("reflection"), std::string::npos) << e.what();
  }
  // Our nonce under another node number and features is still our nonce.
  auto echoed = msg::decode<msg::Hello>(server.hello_body());
  echoed.node = 6;
  echoed.features = 0;
  EXPECT_THROW(server.on_peer_hello(msg::encode(echoed)), HandshakeError);
  // A client is protected the same way.
  Handshake client(Role::client, key_filled(9), 5, 0);
  EXPECT_THROW(client.on_peer_hello(client.hello_body()), HandshakeError);
}

TEST(Handshake, HelloWithBadMagicIsADecodeError) {
  Handshake server(Role::server, key_filled(1), 1, 0);
  msg::Hello h;
  h.magic = 0x12345678;
  EXPECT_THROW(server.on_peer_hello(msg::encode(h)), wire::DecodeError);
}

TEST(SecureStream, TamperedCiphertextByteFailsToOpen) {
  Connected c;
  auto sealed = c.client.stream().seal(text("migrate pid 4242 to node 3"));
  for (size_t at : {size_t{0}, sealed.size() / 2, sealed.size() - 1}) {
    auto bad = sealed;
    bad[at] ^= std::byte{0x01};
    EXPECT_THROW(c.server.stream().open(bad), wire::DecodeError) << "flipped byte " << at;
  }
  // Failed opens leave the stream where it was: the genuine frame still opens.
  EXPECT_EQ(c.server.stream().open(sealed), text("migrate pid 4242 to node 3"));
}

TEST(SecureStream, TruncatedOrShortFrameFailsToOpen) {
  Connected c;
  auto sealed = c.client.stream().seal(text("payload"));
  auto cut = sealed;
  cut.pop_back();
  EXPECT_THROW(c.server.stream().open(cut), wire::DecodeError);
  EXPECT_THROW(c.server.stream().open(Bytes(crypto_secretstream_xchacha20poly1305_ABYTES - 1)), wire::DecodeError);
  EXPECT_THROW(c.server.stream().open(Bytes{}), wire::DecodeError);
  EXPECT_THROW(c.server.stream().open(Bytes(crypto_secretstream_xchacha20poly1305_ABYTES)), wire::DecodeError);
}

TEST(SecureStream, ReplayedFrameFailsToOpen) {
  Connected c;
  auto first = c.client.stream().seal(text("job 1 started"));
  EXPECT_EQ(c.server.stream().open(first), text("job 1 started"));
  EXPECT_THROW(c.server.stream().open(first), wire::DecodeError);
  // The genuine next frame still opens after the refused replay.
  auto second = c.client.stream().seal(text("job 1 finished"));
  EXPECT_EQ(c.server.stream().open(second), text("job 1 finished"));
  EXPECT_THROW(c.server.stream().open(first), wire::DecodeError);
}

TEST(SecureStream, ReorderedFramesFailToOpen) {
  Connected c;
  auto first = c.server.stream().seal(text("one"));
  auto second = c.server.stream().seal(text("two"));
  EXPECT_THROW(c.client.stream().open(second), wire::DecodeError);
  EXPECT_EQ(c.client.stream().open(first), text("one"));
  EXPECT_EQ(c.client.stream().open(second), text("two"));
}

TEST(SecureStream, OwnFrameReflectedBackFailsToOpen) {
  // Each direction has its own key: a frame we sealed, sent back to us, is
  // not something the peer said.
  Connected c;
  auto sealed = c.client.stream().seal(text("to server"));
  EXPECT_THROW(c.client.stream().open(sealed), wire::DecodeError);
  EXPECT_EQ(c.server.stream().open(sealed), text("to server"));
}

TEST(SecureStream, SealedFramesTravelThroughTheFrameAssembler) {
  Connected c;
  Bytes wire_bytes;
  std::vector<std::string> sent = {"a", "bb", std::string(300, 'c')};
  for (auto& s : sent) {
    auto f = wire::frame(c.client.stream().seal(text(s)));
    wire_bytes.insert(wire_bytes.end(), f.begin(), f.end());
  }
  wire::FrameAssembler fa(4096);
  fa.feed(wire_bytes);
  Bytes body;
  for (auto& s : sent) {
    ASSERT_TRUE(fa.pop(body));
    EXPECT_EQ(c.server.stream().open(body), text(s));
  }
  EXPECT_FALSE(fa.pop(body));
}

}  // namespace
// Bulk frames (page data): integrity without secrecy, in order, one key per
// direction, under either tag algorithm.
namespace {
void bulk_tags_accept_only_genuine_frames_in_order(SecureStream::BulkMac mac) {
  Connected c;
  c.client.stream().set_bulk_mac(mac);
  c.server.stream().set_bulk_mac(mac);
  Bytes a = text("pages of the first chunk"), b = text("pages of the second chunk");
  auto ta = c.client.stream().tag({std::span<const std::byte>(a)});
  // The tag covers the concatenation, however it was split into pieces.
  Bytes b1(b.begin(), b.begin() + 5), b2(b.begin() + 5, b.end());
  auto tb = c.client.stream().tag({std::span<const std::byte>(b1), std::span<const std::byte>(b2)});
  // Reordered: the second before the first fails.
  EXPECT_THROW(c.server.stream().check(b, tb), wire::DecodeError);
  // Tampered: one byte changed.
  Bytes bad = a;
  bad[3] ^= std::byte{1};
  EXPECT_THROW(c.server.stream().check(bad, ta), wire::DecodeError);
  // Truncated tag.
  EXPECT_THROW(c.server.stream().check(a, std::span(ta).first(15)), wire::DecodeError);
  // The genuine ones, in order, pass (refusals did not move the sequence on).
  EXPECT_NO_THROW(c.server.stream().check(a, ta));
  EXPECT_NO_THROW(c.server.stream().check(b, tb));
  // Replayed: fails.
  EXPECT_THROW(c.server.stream().check(b, tb), wire::DecodeError);
  // Reflected: a tag the server made for the client does not pass at the server.
  auto own = c.server.stream().tag({std::span<const std::byte>(a)});
  EXPECT_THROW(c.server.stream().check(a, own), wire::DecodeError);
  EXPECT_NO_THROW(c.client.stream().check(a, own));
}
}  // namespace

TEST(SecureStream, Poly1305BulkTagsAcceptOnlyTheGenuineFramesInOrder) {
  bulk_tags_accept_only_genuine_frames_in_order(SecureStream::BulkMac::poly1305);
}

TEST(SecureStream, GmacBulkTagsAcceptOnlyTheGenuineFramesInOrder) {
  bulk_tags_accept_only_genuine_frames_in_order(SecureStream::BulkMac::gmac);
}

// A bulk frame bigger than a page batch, and empty ones, under GMAC: the
// tag depends on every byte and on the length.
TEST(SecureStream, GmacTagCoversEveryByteAndTheLength) {
  Connected c;
  c.client.stream().set_bulk_mac(SecureStream::BulkMac::gmac);
  c.server.stream().set_bulk_mac(SecureStream::BulkMac::gmac);
  Bytes big(3 << 20);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::byte>(i * 131 + 7);
  auto t1 = c.client.stream().tag({std::span<const std::byte>(big)});
  Bytes last = big;
  last.back() ^= std::byte{0x80};
  EXPECT_THROW(c.server.stream().check(last, t1), wire::DecodeError);
  Bytes longer = big;
  longer.push_back(std::byte{0});
  EXPECT_THROW(c.server.stream().check(longer, t1), wire::DecodeError);
  EXPECT_NO_THROW(c.server.stream().check(big, t1));
  auto t2 = c.client.stream().tag({});
  EXPECT_NO_THROW(c.server.stream().check({}, t2));
}

// The Poly1305 tag is computed by OpenSSL since this release and was by
// libsodium before: the bytes must not change, or old and new nodes could
// not move processes between them. Reference: libsodium, written out.
TEST(SecureStream, Poly1305BulkTagIsTheOneLibsodiumComputes) {
  std::array<unsigned char, 32> key;
  for (size_t i = 0; i < key.size(); ++i) key[i] = static_cast<unsigned char>(i * 29 + 3);
  for (size_t size : {0, 1, 15, 16, 17, 4096, (64 << 10) + 3, 1 << 20}) {
    for (uint64_t n : {uint64_t{0}, uint64_t{1}, uint64_t{0x0102030405060708}}) {
      Bytes data(size);
      for (size_t i = 0; i < size; ++i) data[i] = static_cast<std::byte>(i * 131 + n);
      unsigned char nonce[crypto_stream_chacha20_ietf_NONCEBYTES] = {};
      for (int i = 0; i < 8; ++i) nonce[i] = static_cast<unsigned char>(n >> (8 * i));
      unsigned char otk[crypto_onetimeauth_poly1305_KEYBYTES];
      crypto_stream_chacha20_ietf(otk, sizeof otk, nonce, key.data());
      crypto_onetimeauth_poly1305_state st;
      crypto_onetimeauth_poly1305_init(&st, otk);
      crypto_onetimeauth_poly1305_update(&st, reinterpret_cast<const unsigned char*>(data.data()), data.size());
      unsigned char len[8];
      for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(uint64_t{size} >> (8 * i));
      crypto_onetimeauth_poly1305_update(&st, len, sizeof len);
      std::array<std::byte, 16> want;
      crypto_onetimeauth_poly1305_final(&st, reinterpret_cast<unsigned char*>(want.data()));
      // Split in two pieces where it can be: the tag covers the concatenation.
      size_t cut = size / 3;
      auto got = detail::poly1305_bulk_tag(key, n, {std::span<const std::byte>(data).first(cut),
                                                    std::span<const std::byte>(data).subspan(cut)});
      EXPECT_EQ(got, want) << size << " bytes, frame " << n;
    }
  }
}

// Ends that disagree on the algorithm (a bug or a downgrade) refuse every
// frame instead of accepting unchecked data.
TEST(SecureStream, BulkTagsOfTheOtherAlgorithmFail) {
  Connected c;
  c.client.stream().set_bulk_mac(SecureStream::BulkMac::poly1305);
  c.server.stream().set_bulk_mac(SecureStream::BulkMac::gmac);
  Bytes a = text("pages");
  auto ta = c.client.stream().tag({std::span<const std::byte>(a)});
  EXPECT_THROW(c.server.stream().check(a, ta), wire::DecodeError);
}

// Two migration channels over loopback TCP, as two agents make them: both
// offer GMAC bulk tags and agree on them; `seal_bulk` on either side makes
// bulk frames sealed. A 1 MiB bulk frame arrives intact either way.
namespace {
// A socket listening on 127.0.0.1 at a port of the kernel's choosing, which
// `a` then holds; invalid if any step failed.
FileDesc loopback_listener(sockaddr_in& a) {
  FileDesc l(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  a = sockaddr_in{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof a;
  if (!l.valid() || ::bind(l.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(l.get(), 1) != 0 ||
      ::getsockname(l.get(), reinterpret_cast<sockaddr*>(&a), &al) != 0)
    return FileDesc();
  return l;
}

void bulk_frames_over_loopback(bool seal_server, std::optional<SecureStream::BulkMac> want) {
  ClusterKey key = key_filled(3);
  sockaddr_in a{};
  FileDesc l = loopback_listener(a);
  ASSERT_TRUE(l.valid());
  Bytes sent(1 << 20);
  for (size_t i = 0; i < sent.size(); ++i) sent[i] = static_cast<std::byte>(i * 7 + 1);
  Bytes got;
  std::optional<SecureStream::BulkMac> server_mac;
  std::string server_error;
  std::thread server([&] {
    try {
      FileDesc conn(::accept4(l.get(), nullptr, nullptr, SOCK_CLOEXEC));
      Channel ch = accept_channel(std::move(conn), key, 2, msg::kFeatMigration, std::chrono::seconds(10),
                                  msg::kMigMaxFrame, nullptr, seal_server);
      server_mac = ch.bulk_mac();
      auto v = ch.recv_view(std::chrono::seconds(10));
      got.assign(v.begin(), v.end());
    } catch (const std::exception& e) {
      server_error = e.what();
    }
  });
  Channel ch = dial_channel("127.0.0.1", ntohs(a.sin_port), key, 1, 2, msg::kFeatMigration, std::chrono::seconds(10),
                            msg::kMigMaxFrame);
  EXPECT_EQ(ch.bulk_mac(), want);
  Bytes head = text("head"), rest(sent.begin() + 4, sent.end());
  std::copy(sent.begin(), sent.begin() + 4, head.begin());
  ch.send_bulk({std::span<const std::byte>(head), std::span<const std::byte>(rest)});
  server.join();
  EXPECT_EQ(server_error, "");
  EXPECT_EQ(server_mac, want);
  EXPECT_TRUE(got == sent);
}
}  // namespace

// Both ends run this code on the same CPU, so both offer GMAC or neither.
TEST(Channel, BothEndsAgreeOnTheFasterBulkTag) {
  bulk_frames_over_loopback(false, SecureStream::gmac_faster_here() ? SecureStream::BulkMac::gmac
                                                                    : SecureStream::BulkMac::poly1305);
}

TEST(Channel, BulkFramesAreSealedWhenOneEndAsksForIt) { bulk_frames_over_loopback(true, std::nullopt); }

// A receive that waited for a big frame raises the socket's low-water mark
// (SO_RCVLOWAT) to wake once. Afterwards the agents poll the same socket
// for small frames (keepalives, forwarded calls): the mark must be back at
// one byte, or poll stays quiet and the link is declared lost. That is how
// a failed coming home killed the process it meant to keep running.
TEST(Channel, PollWakesForASmallFrameAfterABigOne) {
  sockaddr_in a{};
  FileDesc l = loopback_listener(a);
  ASSERT_TRUE(l.valid());
  FileDesc out(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(::connect(out.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  FileDesc in(::accept4(l.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(in.valid());
  Channel sender(std::move(out), nullptr, msg::kMigMaxFrame);
  Channel receiver(std::move(in), nullptr, msg::kMigMaxFrame);

  // A 1 MiB frame whose second half comes only once the receiver waits
  // for it with most of the frame missing.
  Bytes big(1 << 20);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::byte>(i * 13 + 5);
  Bytes framed = wire::frame(big);
  size_t half = framed.size() / 2;
  int raw = sender.fd();
  std::thread writer([&] {
    ::send(raw, framed.data(), half, MSG_NOSIGNAL);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    size_t off = half;
    while (off < framed.size()) {
      ssize_t n = ::send(raw, framed.data() + off, framed.size() - off, MSG_NOSIGNAL);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
  });
  auto v = receiver.recv_view(std::chrono::seconds(10));
  writer.join();
  EXPECT_TRUE(std::equal(v.begin(), v.end(), big.begin(), big.end()));

  int lowat = 0;
  socklen_t ll = sizeof lowat;
  ASSERT_EQ(::getsockopt(receiver.fd(), SOL_SOCKET, SO_RCVLOWAT, &lowat, &ll), 0);
  EXPECT_EQ(lowat, 1);

  sender.send(text("keepalive"));
  pollfd p{receiver.fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1) << "poll did not wake for a small frame after a big one";
  ASSERT_TRUE(receiver.pump());
  Bytes small;
  ASSERT_TRUE(receiver.pop(small));
  EXPECT_TRUE(small == text("keepalive"));
}

}  // namespace roam
