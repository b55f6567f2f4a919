// Messages of a migration connection (home agent <-> remote agent) and of the
// `migrate` request. One connection per moved process, authenticated and
// sealed like a peer link (secure_channel.hpp), with the kFeatMigration bit.
//
//   home                                   remote
//   MigOffer, MigChunk* (the plan: the ->  the stub is laid out as the plan
//     image of the running process,        says and its pages faulted in
//     no pages)                        <-  MigPrepared (or MigRefused)
//   (the process is frozen here)
//   MigChunk* (the RIMG stream)        ->
//                                      <-  MigReady (body restored, stopped)
//                                          or MigRefused (one line why)
//   MigGo                              ->  (the body runs; the home's copy
//                                           of the memory is released)
//                                      <-  FwdCall       a call to run at home
//   FwdResult                          ->  (for a private file mmap: which
//                                           file, for the remote to map its
//                                           own copy when it is the same)
//   FwdSignal                          ->  a signal sent to the home pid
//                                      <-  FwdCancel     the body was signalled
//                                                        while the call waits
//   ComeHome                           ->  (migrate PID home, or to elsewhere)
//                                      <-  HomePlan, MigChunk* (the plan: the
//                                          body as it runs, no pages), when
//                                          the offer said home prepares
//   (the deputy is laid out as the plan
//   says and its memory faulted in)
//   HomePrepared                       ->  (the body is frozen now)
//                                      <-  GoingHome, MigChunk* (the body's image)
//   HomeDone                           ->  restored at home: the body may go
//                                      <-  BodyGone      signals that crossed it
//                                      <-  BodyExit      the body ended
//                                      <-  BodyStopped   it stopped (^Z): the deputy stops too
//   Keepalive                          <-> when idle; silence longer than the
//                                          link timeout ends both sides
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "roam/image_file.hpp"
#include "roam/messages.hpp"
#include "roam/usage.hpp"

namespace roam::msg {

inline constexpr uint64_t kFeatMigration = 1ull << 2;
inline constexpr uint64_t kFeatBulkAuth = 1ull << 3;  // page data with an integrity tag, not sealed
inline constexpr uint64_t kFeatBulkGmac = 1ull << 4;  // that tag is AES-256-GMAC (else Poly1305)
inline constexpr size_t kMigMaxFrame = 8u << 20;    // a migration frame, sealed
inline constexpr size_t kMigChunkBytes = 4u << 20;  // image bytes per MigChunk
inline constexpr uint32_t kMaxFwdRegions = 1024;
// The longest one side of a move waits, link timeout or not, while the
// other lays a process out or restores it (faulting in a big process's
// memory takes seconds).
inline constexpr int64_t kPrepareWaitMs = 120000;
// How long a side waits for the other to prepare or restore: the link
// timeout, but never less than kPrepareWaitMs.
inline std::chrono::milliseconds prepare_wait(std::chrono::milliseconds link_timeout) {
  return std::max(link_timeout, std::chrono::milliseconds(kPrepareWaitMs));
}
inline constexpr uint64_t kMaxFwdBytes = 64ull << 20;  // all regions of one call together

// tool -> mosd, and tool -> the process's home agent.
struct MigrateRequest {
  static constexpr Type kType = Type::migrate_request;
  int32_t pid = 0;
  std::string target;  // as typed: "home", a node number or a node name
  bool async = false;
  // Filled by mosd for the agent: the resolved node (0 = home), its address.
  uint32_t node = 0;
  std::string address;
  uint16_t port = 0;
};

struct MigrateReply {
  static constexpr Type kType = Type::migrate_reply;
  bool ok = false;
  std::string message;  // the error line, or what happened ("moved to node 2 in 41 ms")
  std::string agent_socket;  // from mosd: where the process's agent listens
  uint32_t node = 0;         // from mosd: the target, resolved (0: home)
};

struct MigOffer {
  static constexpr Type kType = Type::mig_offer;
  uint32_t home_node = 0;
  int32_t home_pid = 0;
  int32_t ppid = 0;
  uint32_t uid = 0, euid = 0, gid = 0, egid = 0;
  int64_t monotonic_ns = 0;  // home clocks when the offer was sent
  int64_t boottime_ns = 0;
  std::vector<std::byte> cpu;  // CpuFeatures, encoded
  uint64_t image_bytes = 0;
  uint32_t link_timeout_ms = 0;
  // Appended; absent (an older home): 0.
  uint8_t flags = 0;
};
inline constexpr uint8_t kOfferHomePrepares = 1;  // coming home, send a HomePlan first
// Home describes a descriptor for a private file mmap (FwdCall of SYS_mmap,
// answered with FwdResult::file), which the remote then serves itself when
// it has the same file.
inline constexpr uint8_t kOfferDescribesFiles = 2;

struct MigChunk {
  static constexpr Type kType = Type::mig_chunk;
  std::vector<std::byte> data;
};
// A MigChunk's data where it lies in `body` (decode<MigChunk> copies it).
std::span<const std::byte> mig_chunk_data(std::span<const std::byte> body);

struct MigPrepared {
  static constexpr Type kType = Type::mig_prepared;
  uint64_t prepare_us = 0;
  uint64_t populated_bytes = 0;
  // Appended; absent (an older node): none. The plan's private file regions
  // (by start) whose file this node has another version of: their contents
  // must travel whole (pages_to_send's `mismatched`).
  std::vector<uint64_t> mismatched;
  // Appended; absent (an older node): 0.
  uint8_t flags = 0;
};
// This node installs the program's seccomp filters in the body (an older
// one would drop the image's filter section and run the body without them).
inline constexpr uint8_t kPreparedInstallsFilters = 1;

struct MigReady {
  static constexpr Type kType = Type::mig_ready;
  int32_t body_pid = 0;  // in the remote node's PID namespace
  uint64_t restore_us = 0;
};

struct MigRefused {
  static constexpr Type kType = Type::mig_refused;
  std::string reason;
};

struct MigGo {
  static constexpr Type kType = Type::mig_go;
  CpuUsage before;  // what the process used at home until the freeze
};

enum class RegionDir : uint8_t { in = 1, out = 2, inout = 3 };

struct FwdRegion {
  uint64_t addr = 0;
  uint64_t len = 0;
  uint8_t dir = 0;              // RegionDir
  std::vector<std::byte> data;  // calls: what the body holds there now; results: what the call left there
};

struct FwdCall {
  static constexpr Type kType = Type::fwd_call;
  uint64_t seq = 0;
  int32_t nr = 0;
  std::array<uint64_t, 6> args{};
  std::vector<FwdRegion> regions;
};

struct MappedFile {
  std::string path;
  image::FileIdentity identity;
  bool operator==(const MappedFile&) const = default;
};

struct FwdResult {
  static constexpr Type kType = Type::fwd_result;
  uint64_t seq = 0;
  int64_t value = 0;  // the raw return value (-errno on failure)
  // Interrupted at home (FwdCancel, or the process comes home) before it
  // did anything: `value` is the code the home's kernel ended it with
  // (-EINTR or a restart code such as -ERESTARTSYS), for the body's kernel
  // to apply; 0 from older homes means -ERESTARTSYS. `regions` then hold
  // what the kernel wrote all the same (poll's revents, select's time left).
  bool cancelled = false;
  std::vector<FwdRegion> regions;  // out/inout regions, with their contents
  std::string unserved;  // non-empty: home cannot run it this way; the process comes home for it
  // Appended; absent (an older home): none. For a SYS_mmap call: the file
  // the descriptor opens at home, by path and identity.
  std::optional<MappedFile> file;
};

struct FwdCancel {
  static constexpr Type kType = Type::fwd_cancel;
  uint64_t seq = 0;
};

struct FwdSignal {
  static constexpr Type kType = Type::fwd_signal;
  std::array<std::byte, 128> siginfo{};
};

struct ComeHome {
  static constexpr Type kType = Type::come_home;
  std::string reason;
};

struct GoingHome {
  static constexpr Type kType = Type::going_home;
  std::string reason;
  uint64_t image_bytes = 0;
  std::vector<std::array<std::byte, 128>> pending_signals;  // siginfo, queued at the body
  CpuUsage used;  // all it used, at home before and away (what its usage calls answered)
};

// The body is about to come home: the plan of it, as it runs, follows (as
// MigChunks, without pages), so home can lay the deputy out and fault its
// memory in before the body is frozen.
struct HomePlan {
  static constexpr Type kType = Type::home_plan;
  std::string reason;
  uint64_t image_bytes = 0;  // what the body's pages come to now
};

struct HomePrepared {
  static constexpr Type kType = Type::home_prepared;
  bool ok = false;  // false: home will restore without it (`error` says why)
  uint64_t prepare_us = 0;
  uint64_t populated_bytes = 0;
  std::string error;
  std::vector<uint64_t> mismatched;  // appended; as MigPrepared's (also when !ok)
  // Appended; absent (an older home): false. The move is off (the node it
  // was to move on to refused it): the body does not freeze and runs on.
  bool call_off = false;
};

struct HomeDone {
  static constexpr Type kType = Type::home_done;
  bool ok = false;
  std::string error;
  // Appended; absent (an older home): 0. The body went on to this node
  // (relayed through home), not home.
  uint32_t moved_on_to = 0;
};

struct BodyExit {
  static constexpr Type kType = Type::body_exit;
  int32_t status = 0;  // waitpid's status
};

struct Keepalive {
  static constexpr Type kType = Type::keepalive;
  // From the body's node, about once a second: the time the body has run
  // or waited to run (schedstat, ns), from which home's policies see how
  // CPU-bound it is away. 0: not said (home's keepalives).
  uint64_t body_sched_ns = 0;
};

// The body entered a group stop (^Z, SIGSTOP...): the deputy stops with the
// same signal, so the shell at home sees its job stop.
struct BodyStopped {
  static constexpr Type kType = Type::body_stopped;
  static constexpr uint64_t kUnknown = ~uint64_t{0};
  int32_t signo = 0;
  // FwdSignals the body had received when it saw itself stopped: a SIGCONT
  // home sent after those continues it (kUnknown from older bodies).
  uint64_t signals_seen = kUnknown;
};

// After HomeDone: the frozen body is killed; these signals came from home
// while it was on its way and must be queued there again.
struct BodyGone {
  static constexpr Type kType = Type::body_gone;
  std::vector<std::array<std::byte, 128>> signals;
};

void encode_fields(wire::Writer& w, const MigrateRequest& m);
void encode_fields(wire::Writer& w, const MigrateReply& m);
void encode_fields(wire::Writer& w, const MigOffer& m);
void encode_fields(wire::Writer& w, const MigChunk& m);
void encode_fields(wire::Writer& w, const MigPrepared& m);
void encode_fields(wire::Writer& w, const MigReady& m);
void encode_fields(wire::Writer& w, const MigRefused& m);
void encode_fields(wire::Writer& w, const MigGo& m);
void encode_fields(wire::Writer& w, const FwdCall& m);
void encode_fields(wire::Writer& w, const FwdResult& m);
void encode_fields(wire::Writer& w, const FwdCancel& m);
void encode_fields(wire::Writer& w, const FwdSignal& m);
void encode_fields(wire::Writer& w, const ComeHome& m);
void encode_fields(wire::Writer& w, const GoingHome& m);
void encode_fields(wire::Writer& w, const HomePlan& m);
void encode_fields(wire::Writer& w, const HomePrepared& m);
void encode_fields(wire::Writer& w, const HomeDone& m);
void encode_fields(wire::Writer& w, const BodyExit& m);
void encode_fields(wire::Writer& w, const Keepalive& m);
void encode_fields(wire::Writer& w, const BodyGone& m);
void encode_fields(wire::Writer& w, const BodyStopped& m);

void decode_fields(wire::Reader& r, MigrateRequest& m);
void decode_fields(wire::Reader& r, MigrateReply& m);
void decode_fields(wire::Reader& r, MigOffer& m);
void decode_fields(wire::Reader& r, MigChunk& m);
void decode_fields(wire::Reader& r, MigPrepared& m);
void decode_fields(wire::Reader& r, MigReady& m);
void decode_fields(wire::Reader& r, MigRefused& m);
void decode_fields(wire::Reader& r, MigGo& m);
void decode_fields(wire::Reader& r, FwdCall& m);
void decode_fields(wire::Reader& r, FwdResult& m);
void decode_fields(wire::Reader& r, FwdCancel& m);
void decode_fields(wire::Reader& r, FwdSignal& m);
void decode_fields(wire::Reader& r, ComeHome& m);
void decode_fields(wire::Reader& r, GoingHome& m);
void decode_fields(wire::Reader& r, HomePlan& m);
void decode_fields(wire::Reader& r, HomePrepared& m);
void decode_fields(wire::Reader& r, HomeDone& m);
void decode_fields(wire::Reader& r, BodyExit& m);
void decode_fields(wire::Reader& r, Keepalive& m);
void decode_fields(wire::Reader& r, BodyGone& m);
void decode_fields(wire::Reader& r, BodyStopped& m);

}  // namespace roam::msg
