// Every message roam sends, with its wire tag. Tags are append-only and never
// reused; fields are append-only (decoders ignore trailing bytes they do not
// know). Peer messages travel inside the authenticated channel
// (secure_channel.hpp); control messages travel on the local unix socket.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "roam/placement.hpp"
#include "roam/wire.hpp"

namespace roam::msg {

enum class Type : uint16_t {
  // peer <-> peer
  hello = 1,
  auth = 2,
  gossip = 3,
  // tool <-> local mosd
  ctl_hello = 100,
  status_request = 101,
  status_reply = 102,
  ps_request = 103,
  ps_reply = 104,
  register_job = 105,
  register_job_reply = 106,
  error_reply = 107,
  migrate_request = 108,
  migrate_reply = 109,
  guests_request = 110,
  guests_reply = 111,
  node_command = 112,
  node_command_reply = 113,
  // home agent <-> remote agent (one migration connection per moved process;
  // see mig_messages.hpp)
  mig_offer = 200,
  mig_chunk = 201,
  mig_ready = 202,
  mig_refused = 203,
  mig_go = 204,
  fwd_call = 205,
  fwd_result = 206,
  fwd_cancel = 207,
  fwd_signal = 208,
  come_home = 209,
  going_home = 210,
  home_done = 211,
  body_exit = 212,
  keepalive = 213,
  body_gone = 214,
  body_stopped = 215,
  mig_prepared = 216,
  home_plan = 217,
  home_prepared = 218,
};

const char* type_name(Type t);

inline constexpr size_t kNonceBytes = 32;
inline constexpr size_t kMacBytes = 32;
inline constexpr size_t kStreamHeaderBytes = 24;
inline constexpr uint32_t kMaxGossipEntries = 4096;
inline constexpr uint32_t kMaxListItems = 65536;

// First frame on a peer connection, in the clear, both directions.
struct Hello {
  static constexpr Type kType = Type::hello;
  uint32_t magic = wire::kMagic;
  uint16_t version = wire::kVersion;
  uint16_t min_version = wire::kMinVersion;
  uint64_t features = 0;
  uint32_t node = 0;  // sender's node number
  std::array<unsigned char, kNonceBytes> nonce{};
};

// Second frame, both directions: proof of the cluster key over both hellos,
// and the header of the sender's encrypted stream.
struct Auth {
  static constexpr Type kType = Type::auth;
  std::array<unsigned char, kMacBytes> mac{};
  std::array<unsigned char, kStreamHeaderBytes> stream_header{};
};

// One node's information as gossiped. Load is fixed point: 100 = one runnable
// process per CPU of reference speed.
struct LoadInfo {
  uint32_t load = 0;
  uint64_t free_mem = 0;   // bytes
  uint64_t total_mem = 0;  // bytes
  uint16_t ncpus = 0;
  uint32_t speed = 0;
  uint32_t procs = 0;      // roam processes running at this node (its own at home, and guests)
  // Appended (sent in a trailing section of the message that holds them):
  uint32_t guests = 0;     // bodies of other nodes' processes running here
  uint32_t flags = 0;      // kNode* bits
};

inline constexpr uint32_t kNodeNoGuests = 1u << 0;  // `mosctl stay`: takes no new guests

struct GossipEntry {
  uint32_t node = 0;    // node number (not index)
  uint32_t age_ms = 0;  // age of the information when sent
  LoadInfo info;
};

struct Gossip {
  static constexpr Type kType = Type::gossip;
  std::vector<GossipEntry> entries;  // entries[0] is the sender's own
};

struct CtlHello {
  static constexpr Type kType = Type::ctl_hello;
  uint32_t magic = wire::kMagic;
  uint16_t version = wire::kVersion;
};

struct StatusRequest {
  static constexpr Type kType = Type::status_request;
};

struct NodeStatus {
  uint32_t node = 0;
  std::string address;
  std::vector<std::string> tags;
  bool self = false;
  bool known = false;  // any information ever received
  bool up = false;
  uint64_t age_ms = 0;
  LoadInfo info;
};

struct StatusReply {
  static constexpr Type kType = Type::status_reply;
  uint32_t self = 0;
  std::string hostname;
  uint32_t step_ms = 0;
  uint32_t window = 0;
  uint32_t down_after_steps = 0;
  uint64_t uptime_ms = 0;
  uint64_t gossip_sent = 0;
  uint64_t gossip_received = 0;
  uint64_t rejected = 0;  // connections or messages refused
  std::vector<NodeStatus> nodes;
  std::string policy;     // the automatic policies: settings and moves made (one line)
};

struct PsRequest {
  static constexpr Type kType = Type::ps_request;
};

struct ProcInfo {
  int32_t pid = 0;
  uint64_t job = 0;
  uint32_t home = 0;
  uint32_t where = 0;
  std::string state;    // roam state: home, away, moving
  std::string command;
  std::string reason;   // why it is where it is: home, user, pinned, tag:T, best, policy:P
  uint64_t rss = 0;     // bytes
  // Appended (trailing section of PsReply):
  std::string detail;     // more about the reason ("cannot move: ...", "mosrun -h")
  std::string placement;  // the job's mosrun placement flags ("-L -t gpu")
};

struct PsReply {
  static constexpr Type kType = Type::ps_reply;
  uint32_t self = 0;
  std::vector<ProcInfo> procs;
};

// Sent by mosrun just before it execs; mosd takes the peer's pid from
// SO_PEERCRED and puts it into a new job cgroup.
struct RegisterJob {
  static constexpr Type kType = Type::register_job;
  std::string command;
  placement::Placement placement;  // appended; absent: the defaults
};

struct RegisterJobReply {
  static constexpr Type kType = Type::register_job_reply;
  uint64_t job = 0;
  // Appended: where the job goes once it runs ("" stays home; a node
  // number, or "best"), sent by mosrun as a `migrate` target after exec.
  std::string start_target;
};

// mosps --guests: the bodies of other nodes' processes running here.
struct GuestsRequest {
  static constexpr Type kType = Type::guests_request;
};

struct GuestInfo {
  int32_t agent = 0;      // the remote agent serving it (mosd's child)
  uint32_t home = 0;      // its home node
  int32_t home_pid = 0;   // its pid there
  int32_t body_pid = 0;   // its body's pid at this node
  std::string command;
  uint64_t rss = 0;       // the body's, bytes
};

struct GuestsReply {
  static constexpr Type kType = Type::guests_reply;
  uint32_t self = 0;
  std::vector<GuestInfo> guests;
};

// mosctl stay | nostay | expel (root only).
struct NodeCommand {
  static constexpr Type kType = Type::node_command;
  std::string op;
};

struct NodeCommandReply {
  static constexpr Type kType = Type::node_command_reply;
  std::string message;  // one line: what was done
  uint32_t count = 0;   // expel: guests told to go home
};

struct ErrorReply {
  static constexpr Type kType = Type::error_reply;
  std::string message;
};

// Encoding: u16 type, then the fields.
void encode_fields(wire::Writer& w, const Hello& m);
void encode_fields(wire::Writer& w, const Auth& m);
void encode_fields(wire::Writer& w, const Gossip& m);
void encode_fields(wire::Writer& w, const CtlHello& m);
void encode_fields(wire::Writer& w, const StatusRequest& m);
void encode_fields(wire::Writer& w, const StatusReply& m);
void encode_fields(wire::Writer& w, const PsRequest& m);
void encode_fields(wire::Writer& w, const PsReply& m);
void encode_fields(wire::Writer& w, const RegisterJob& m);
void encode_fields(wire::Writer& w, const RegisterJobReply& m);
void encode_fields(wire::Writer& w, const ErrorReply& m);
void encode_fields(wire::Writer& w, const GuestsRequest& m);
void encode_fields(wire::Writer& w, const GuestsReply& m);
void encode_fields(wire::Writer& w, const NodeCommand& m);
void encode_fields(wire::Writer& w, const NodeCommandReply& m);

void decode_fields(wire::Reader& r, Hello& m);
void decode_fields(wire::Reader& r, Auth& m);
void decode_fields(wire::Reader& r, Gossip& m);
void decode_fields(wire::Reader& r, CtlHello& m);
void decode_fields(wire::Reader& r, StatusRequest& m);
void decode_fields(wire::Reader& r, StatusReply& m);
void decode_fields(wire::Reader& r, PsRequest& m);
void decode_fields(wire::Reader& r, PsReply& m);
void decode_fields(wire::Reader& r, RegisterJob& m);
void decode_fields(wire::Reader& r, RegisterJobReply& m);
void decode_fields(wire::Reader& r, ErrorReply& m);
void decode_fields(wire::Reader& r, GuestsRequest& m);
void decode_fields(wire::Reader& r, GuestsReply& m);
void decode_fields(wire::Reader& r, NodeCommand& m);
void decode_fields(wire::Reader& r, NodeCommandReply& m);

template <typename M>
std::vector<std::byte> encode(const M& m) {
  wire::Writer w;
  w.u16(static_cast<uint16_t>(M::kType));
  encode_fields(w, m);
  return w.take();
}

// The type tag of a frame body; DecodeError if it has none.
Type peek_type(std::span<const std::byte> body);

template <typename M>
M decode(std::span<const std::byte> body) {
  wire::Reader r(body);
  auto t = static_cast<Type>(r.u16());
  if (t != M::kType)
    throw wire::DecodeError(std::string("expected ") + type_name(M::kType) + " message, got " + type_name(t));
  M m;
  decode_fields(r, m);
  return m;
}

}  // namespace roam::msg
