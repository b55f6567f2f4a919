// libFuzzer target for everything a peer or tool can send before and after
// authentication: frame assembly, every message decoder, the server side of
// the handshake, and opening sealed frames. The only acceptable failures are
// wire::DecodeError and HandshakeError; any other exception escapes (and
// libFuzzer reports it), and sanitizers catch the rest.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "roam/messages.hpp"
#include "roam/mig_messages.hpp"
#include "roam/secure_channel.hpp"
#include "roam/wire.hpp"

namespace {

using roam::HandshakeError;
using roam::wire::DecodeError;
using Bytes = std::vector<std::byte>;
using Span = std::span<const std::byte>;

constexpr size_t kMaxFrame = 64 * 1024;

template <typename M>
void try_decode(Span body) {
  try {
    M m = roam::msg::decode<M>(body);
    // A decoded message must encode back to a prefix of what it came from
    // (the rest being fields from the future, which decoding ignores), or,
    // when it came from an older sender without the appended fields, to
    // what it came from followed by their defaults.
    auto again = roam::msg::encode(m);
    size_t common = std::min(again.size(), body.size());
    if (std::memcmp(again.data(), body.data(), common) != 0) __builtin_trap();
    if (again.size() > body.size() && roam::msg::encode(roam::msg::decode<M>(again)) != again) __builtin_trap();
  } catch (const DecodeError&) {
  }
}

// Messages whose lists carry a section of one length-prefixed blob per item
// (Gossip, StatusReply, PsReply): a newer sender's blob may hold fields
// this decoder skips, so its re-encoding is shorter inside the message,
// not only at its end, and the prefix property above does not hold. What
// must hold: decoding what was encoded gives the same encoding back.
template <typename M>
void try_decode_sectioned(Span body) {
  try {
    M m = roam::msg::decode<M>(body);
    auto again = roam::msg::encode(m);
    if (roam::msg::encode(roam::msg::decode<M>(again)) != again) __builtin_trap();
  } catch (const DecodeError&) {
  }
}

void try_every_decoder(Span body) {
  using namespace roam::msg;
  try {
    (void)peek_type(body);
  } catch (const DecodeError&) {
  }
  try_decode<Hello>(body);
  try_decode<Auth>(body);
  try_decode_sectioned<Gossip>(body);
  try_decode<CtlHello>(body);
  try_decode<StatusRequest>(body);
  try_decode_sectioned<StatusReply>(body);
  try_decode<PsRequest>(body);
  try_decode_sectioned<PsReply>(body);
  try_decode<RegisterJob>(body);
  try_decode<RegisterJobReply>(body);
  try_decode<ErrorReply>(body);
  try_decode<GuestsRequest>(body);
  try_decode<GuestsReply>(body);
  try_decode<NodeCommand>(body);
  try_decode<NodeCommandReply>(body);
  // The migration connection (and the migrate request).
  try_decode<MigrateRequest>(body);
  try_decode<MigrateReply>(body);
  try_decode<MigOffer>(body);
  try_decode<MigChunk>(body);
  try_decode<MigPrepared>(body);
  try_decode<MigReady>(body);
  try_decode<MigRefused>(body);
  try_decode<MigGo>(body);
  try_decode<FwdCall>(body);
  try_decode<FwdResult>(body);
  try_decode<FwdCancel>(body);
  try_decode<FwdSignal>(body);
  try_decode<ComeHome>(body);
  try_decode<GoingHome>(body);
  try_decode<HomePlan>(body);
  try_decode<HomePrepared>(body);
  try_decode<HomeDone>(body);
  try_decode<BodyExit>(body);
  try_decode<Keepalive>(body);
  try_decode<BodyGone>(body);
  try_decode<BodyStopped>(body);
}

const roam::ClusterKey& test_key() {
  static const roam::ClusterKey key = [] {
    roam::ClusterKey k{};
    for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<unsigned char>(i * 7 + 1);
    return k;
  }();
  return key;
}

// A server meeting an unknown peer: hello then auth from fuzz bytes.
void drive_server(Span hello, Span auth) {
  roam::Handshake server(roam::Role::server, test_key(), 1, roam::wire::kFeatGossip);
  try {
    server.on_peer_hello(hello);
  } catch (const DecodeError&) {
    return;
  } catch (const HandshakeError&) {
    return;
  }
  (void)server.auth_body();
  try {
    server.on_peer_auth(auth);
  } catch (const DecodeError&) {
  } catch (const HandshakeError&) {
  }
}

// The fuzz bytes after a valid hello header, so the version checks and the
// auth path are reached without the fuzzer first guessing the magic.
Bytes hello_prefixed(Span rest) {
  roam::wire::Writer w;
  w.u16(static_cast<uint16_t>(roam::msg::Type::hello));
  w.u32(roam::wire::kMagic);
  w.bytes(rest);
  return w.take();
}

// After a genuine handshake, arbitrary frames must fail to open cleanly.
void drive_stream(const std::vector<Bytes>& frames) {
  roam::Handshake client(roam::Role::client, test_key(), 2, 0);
  roam::Handshake server(roam::Role::server, test_key(), 1, 0);
  server.on_peer_hello(client.hello_body());
  client.on_peer_hello(server.hello_body());
  server.on_peer_auth(client.auth_body());
  client.on_peer_auth(server.auth_body());
  for (auto& f : frames) {
    try {
      (void)server.stream().open(f);
      __builtin_trap();  // the fuzzer cannot know the key: nothing may open
    } catch (const DecodeError&) {
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Span input(reinterpret_cast<const std::byte*>(data), size);
  try_every_decoder(input);

  // Deliver the input in up to four chunks whose sizes come from its first
  // byte, so one input explores several ways of splitting the same stream.
  std::vector<Bytes> frames;
  roam::wire::FrameAssembler assembler(kMaxFrame);
  try {
    unsigned seed = size ? data[0] : 0;
    size_t at = 0;
    for (int chunk = 0; chunk < 4 && at < size; ++chunk) {
      size_t n = chunk == 3 ? size - at : std::min(size - at, size_t{1} + ((seed >> (2 * chunk)) & 3) * (size / 4 + 1));
      assembler.feed(input.subspan(at, n));
      at += n;
      Bytes body;
      while (assembler.pop(body)) {
        if (body.empty() || body.size() > kMaxFrame) __builtin_trap();
        frames.push_back(body);
      }
    }
  } catch (const DecodeError&) {
  }

  for (auto& f : frames) try_every_decoder(f);

  // Hello and auth bodies: the first two frames if there are any, else the raw input.
  Span hello = frames.size() > 0 ? Span(frames[0]) : input;
  Span auth = frames.size() > 1 ? Span(frames[1]) : input;
  drive_server(hello, auth);
  auto prefixed = hello_prefixed(input);
  drive_server(prefixed, auth);

  if (!frames.empty()) drive_stream(frames);
  return 0;
}
