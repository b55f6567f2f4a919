// The authenticated, encrypted channel between two mosd peers, as pure logic
// (no I/O) so the daemon's io_uring loop and blocking test tools share it.
//
//   client                                 server
//   Hello(node, version range, features, nonce) ->
//                                       <- Hello(...)
//   Auth(MAC_key(role, both hellos), stream header) ->
//                                       <- Auth(...)
//   then frames sealed with libsodium secretstream (XChaCha20-Poly1305), one
//   stream per direction, keys derived from the cluster key and both nonces.
//
// A peer without the cluster key cannot produce the MAC, and cannot read or
// forge stream messages; a replayed or reordered frame fails to open.
#pragma once

#include <sodium.h>

#include <array>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <stdexcept>
#include <vector>

#include "roam/config.hpp"
#include "roam/error.hpp"
#include "roam/messages.hpp"

namespace roam {

// The peer was refused: the text is the one-line reason that gets logged.
class HandshakeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class SecureStream {
 public:
  SecureStream() = default;
  std::vector<std::byte> seal(std::span<const std::byte> plaintext);
  // Throws wire::DecodeError if the frame was forged, corrupted, replayed or reordered.
  std::vector<std::byte> open(std::span<const std::byte> ciphertext);

  // Bulk data that needs integrity but not secrecy (page contents, unless
  // the cluster sets `migrate.seal_pages = true`): a tag over the pieces,
  // under a key of its own per direction and a frame counter as nonce, so
  // a forged, replayed or reordered bulk frame fails. Two algorithms:
  //   - AES-256-GMAC (OpenSSL's GCM with the data as associated data), when
  //     both ends offered msg::kFeatBulkGmac;
  //   - otherwise a Poly1305 tag with a one-time key from ChaCha20 (the key
  //     derivation of ChaCha20-Poly1305), computed by OpenSSL.
  // Which is faster depends on the CPU: OpenSSL's Poly1305 with AVX-512
  // IFMA ran at 12.7 GB/s here, its GMAC at 8.4; without IFMA GMAC tends to
  // win. A node offers GMAC only where it measured it faster
  // (gmac_faster_here). Either is several times cheaper than sealing.
  static constexpr size_t kTagBytes = 16;
  enum class BulkMac : uint8_t { poly1305, gmac };
  void set_bulk_mac(BulkMac m) { bulk_mac_ = m; }
  BulkMac bulk_mac() const { return bulk_mac_; }
  // Measured once per process, in well under a millisecond.
  static bool gmac_faster_here();
  std::array<std::byte, kTagBytes> tag(std::initializer_list<std::span<const std::byte>> pieces);
  // Throws wire::DecodeError when the tag does not match.
  void check(std::span<const std::byte> data, std::span<const std::byte> tag);

 private:
  friend class Handshake;
  crypto_secretstream_xchacha20poly1305_state push_{};
  crypto_secretstream_xchacha20poly1305_state pull_{};
  std::array<unsigned char, 32> bulk_push_key_{}, bulk_pull_key_{};
  uint64_t bulk_push_n_ = 0, bulk_pull_n_ = 0;
  BulkMac bulk_mac_ = BulkMac::poly1305;
};

namespace detail {
// The Poly1305 bulk tag of frame `n` under `key` (exposed for its test).
std::array<std::byte, SecureStream::kTagBytes> poly1305_bulk_tag(
    const std::array<unsigned char, 32>& key, uint64_t n, std::initializer_list<std::span<const std::byte>> pieces);
}  // namespace detail

enum class Role : uint8_t { client = 1, server = 2 };

class Handshake {
 public:
  Handshake(Role role, const ClusterKey& key, uint32_t self_node, uint64_t features);
  ~Handshake();
  Handshake(const Handshake&) = delete;
  Handshake& operator=(const Handshake&) = delete;

  std::vector<std::byte> hello_body() const;
  // Decodes and checks the peer's hello (magic, version range). Throws
  // HandshakeError or wire::DecodeError.
  void on_peer_hello(std::span<const std::byte> body);
  std::vector<std::byte> auth_body();
  // Verifies the peer's proof of the key; throws HandshakeError if wrong.
  void on_peer_auth(std::span<const std::byte> body);

  uint32_t peer_node() const { return peer_.node; }
  uint64_t peer_features() const { return peer_.features; }
  uint16_t version() const { return version_; }
  SecureStream& stream() { return stream_; }

 private:
  void derive_key(uint8_t direction, unsigned char out[crypto_secretstream_xchacha20poly1305_KEYBYTES],
                  const char* label = nullptr) const;
  std::vector<unsigned char> transcript(Role sender) const;

  Role role_;
  ClusterKey key_;
  msg::Hello mine_;
  msg::Hello peer_;
  std::vector<std::byte> mine_body_, peer_body_;
  bool have_peer_ = false;
  uint16_t version_ = 0;
  SecureStream stream_;
};

}  // namespace roam
