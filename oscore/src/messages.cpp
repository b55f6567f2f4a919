#include "roam/messages.hpp"

#include <fmt/format.h>

#include <cstring>

namespace roam::msg {
namespace {

template <size_t N>
void put_array(wire::Writer& w, const std::array<unsigned char, N>& a) {
  w.bytes(std::as_bytes(std::span(a)));
}
template <size_t N>
void get_array(wire::Reader& r, std::array<unsigned char, N>& a) {
  auto b = r.bytes(N);
  std::memcpy(a.data(), b.data(), N);
}

void put(wire::Writer& w, const LoadInfo& i) {
  w.u32(i.load);
  w.u64(i.free_mem);
  w.u64(i.total_mem);
  w.u16(i.ncpus);
  w.u32(i.speed);
  w.u32(i.procs);
}
void get(wire::Reader& r, LoadInfo& i) {
  i.load = r.u32();
  i.free_mem = r.u64();
  i.total_mem = r.u64();
  i.ncpus = r.u16();
  i.speed = r.u32();
  i.procs = r.u32();
}
constexpr size_t kLoadInfoBytes = 4 + 8 + 8 + 2 + 4 + 4;

// Fields added to the items of a list after the list was defined travel in a
// trailing section: a count equal to the list's, then one length-prefixed
// blob per item in the list's order. An older decoder stops before the
// section (decoders ignore trailing bytes); a newer one reads, in each blob,
// the fields it knows and ignores the rest.
template <typename T, typename F>
void put_trailer(wire::Writer& w, const std::vector<T>& items, F&& fields) {
  w.u32(static_cast<uint32_t>(items.size()));
  for (const T& item : items) {
    wire::Writer b;
    fields(b, item);
    auto bytes = b.take();
    w.u32(static_cast<uint32_t>(bytes.size()));
    w.bytes(bytes);
  }
}
template <typename T, typename F>
void get_trailer(wire::Reader& r, std::vector<T>& items, F&& fields) {
  if (r.remaining() == 0) return;  // from a sender that predates the section
  uint32_t n = r.count(kMaxGossipEntries > kMaxListItems ? kMaxGossipEntries : kMaxListItems, 4);
  if (n != items.size())
    throw wire::DecodeError(fmt::format("trailing section has {} items for a list of {}", n, items.size()));
  for (T& item : items) {
    uint32_t len = r.count(1u << 16, 1);
    wire::Reader b(r.bytes(len));
    fields(b, item);
  }
}

void put_ext(wire::Writer& w, const LoadInfo& i) {
  w.u32(i.guests);
  w.u32(i.flags);
}
void get_ext(wire::Reader& r, LoadInfo& i) {
  if (r.remaining() == 0) return;
  i.guests = r.u32();
  i.flags = r.u32();
}

}  // namespace

const char* type_name(Type t) {
  switch (t) {
    case Type::hello: return "hello";
    case Type::auth: return "auth";
    case Type::gossip: return "gossip";
    case Type::ctl_hello: return "ctl_hello";
    case Type::status_request: return "status_request";
    case Type::status_reply: return "status_reply";
    case Type::ps_request: return "ps_request";
    case Type::ps_reply: return "ps_reply";
    case Type::register_job: return "register_job";
    case Type::register_job_reply: return "register_job_reply";
    case Type::error_reply: return "error_reply";
    case Type::migrate_request: return "migrate_request";
    case Type::migrate_reply: return "migrate_reply";
    case Type::guests_request: return "guests_request";
    case Type::guests_reply: return "guests_reply";
    case Type::node_command: return "node_command";
    case Type::node_command_reply: return "node_command_reply";
    case Type::mig_offer: return "mig_offer";
    case Type::mig_chunk: return "mig_chunk";
    case Type::mig_ready: return "mig_ready";
    case Type::mig_refused: return "mig_refused";
    case Type::mig_go: return "mig_go";
    case Type::fwd_call: return "fwd_call";
    case Type::fwd_result: return "fwd_result";
    case Type::fwd_cancel: return "fwd_cancel";
    case Type::fwd_signal: return "fwd_signal";
    case Type::come_home: return "come_home";
    case Type::going_home: return "going_home";
    case Type::home_done: return "home_done";
    case Type::body_exit: return "body_exit";
    case Type::keepalive: return "keepalive";
    case Type::body_gone: return "body_gone";
    case Type::body_stopped: return "body_stopped";
    case Type::mig_prepared: return "mig_prepared";
    case Type::home_plan: return "home_plan";
    case Type::home_prepared: return "home_prepared";
  }
  return "unknown";
}

Type peek_type(std::span<const std::byte> body) {
  wire::Reader r(body);
  return static_cast<Type>(r.u16());
}

void encode_fields(wire::Writer& w, const Hello& m) {
  w.u32(m.magic);
  w.u16(m.version);
  w.u16(m.min_version);
  w.u64(m.features);
  w.u32(m.node);
  put_array(w, m.nonce);
}
void decode_fields(wire::Reader& r, Hello& m) {
  m.magic = r.u32();
  if (m.magic != wire::kMagic) throw wire::DecodeError(fmt::format("bad magic {:#010x}: not a roam peer", m.magic));
  m.version = r.u16();
  m.min_version = r.u16();
  m.features = r.u64();
  m.node = r.u32();
  get_array(r, m.nonce);
}

void encode_fields(wire::Writer& w, const Auth& m) {
  put_array(w, m.mac);
  put_array(w, m.stream_header);
}
void decode_fields(wire::Reader& r, Auth& m) {
  get_array(r, m.mac);
  get_array(r, m.stream_header);
}

void encode_fields(wire::Writer& w, const Gossip& m) {
  w.u32(static_cast<uint32_t>(m.entries.size()));
  for (auto& e : m.entries) {
    w.u32(e.node);
    w.u32(e.age_ms);
    put(w, e.info);
  }
  put_trailer(w, m.entries, [](wire::Writer& b, const GossipEntry& e) { put_ext(b, e.info); });
}
void decode_fields(wire::Reader& r, Gossip& m) {
  uint32_t n = r.count(kMaxGossipEntries, 8 + kLoadInfoBytes);
  if (n == 0) throw wire::DecodeError("gossip message without the sender's entry");
  m.entries.resize(n);
  for (auto& e : m.entries) {
    e.node = r.u32();
    e.age_ms = r.u32();
    get(r, e.info);
  }
  get_trailer(r, m.entries, [](wire::Reader& b, GossipEntry& e) { get_ext(b, e.info); });
}

void encode_fields(wire::Writer& w, const CtlHello& m) {
  w.u32(m.magic);
  w.u16(m.version);
}
void decode_fields(wire::Reader& r, CtlHello& m) {
  m.magic = r.u32();
  if (m.magic != wire::kMagic) throw wire::DecodeError(fmt::format("bad magic {:#010x}: not a roam tool", m.magic));
  m.version = r.u16();
}

void encode_fields(wire::Writer&, const StatusRequest&) {}
void decode_fields(wire::Reader&, StatusRequest&) {}
void encode_fields(wire::Writer&, const PsRequest&) {}
void decode_fields(wire::Reader&, PsRequest&) {}

void encode_fields(wire::Writer& w, const StatusReply& m) {
  w.u32(m.self);
  w.str(m.hostname);
  w.u32(m.step_ms);
  w.u32(m.window);
  w.u32(m.down_after_steps);
  w.u64(m.uptime_ms);
  w.u64(m.gossip_sent);
  w.u64(m.gossip_received);
  w.u64(m.rejected);
  w.u32(static_cast<uint32_t>(m.nodes.size()));
  for (auto& n : m.nodes) {
    w.u32(n.node);
    w.str(n.address);
    w.u32(static_cast<uint32_t>(n.tags.size()));
    for (auto& t : n.tags) w.str(t);
    w.boolean(n.self);
    w.boolean(n.known);
    w.boolean(n.up);
    w.u64(n.age_ms);
    put(w, n.info);
  }
  put_trailer(w, m.nodes, [](wire::Writer& b, const NodeStatus& n) { put_ext(b, n.info); });
  w.str(m.policy);
}
void decode_fields(wire::Reader& r, StatusReply& m) {
  m.self = r.u32();
  m.hostname = r.str(256);
  m.step_ms = r.u32();
  m.window = r.u32();
  m.down_after_steps = r.u32();
  m.uptime_ms = r.u64();
  m.gossip_sent = r.u64();
  m.gossip_received = r.u64();
  m.rejected = r.u64();
  m.nodes.resize(r.count(kMaxListItems, 4 + 4 + 4 + 3 + 8 + kLoadInfoBytes));
  for (auto& n : m.nodes) {
    n.node = r.u32();
    n.address = r.str(256);
    n.tags.resize(r.count(256, 4));
    for (auto& t : n.tags) t = r.str(256);
    n.self = r.boolean();
    n.known = r.boolean();
    n.up = r.boolean();
    n.age_ms = r.u64();
    get(r, n.info);
  }
  get_trailer(r, m.nodes, [](wire::Reader& b, NodeStatus& n) { get_ext(b, n.info); });
  if (r.remaining() > 0) m.policy = r.str(1024);  // from a sender that predates it: none
}

void encode_fields(wire::Writer& w, const PsReply& m) {
  w.u32(m.self);
  w.u32(static_cast<uint32_t>(m.procs.size()));
  for (auto& p : m.procs) {
    w.i32(p.pid);
    w.u64(p.job);
    w.u32(p.home);
    w.u32(p.where);
    w.str(p.state);
    w.str(p.command);
    w.str(p.reason);
    w.u64(p.rss);
  }
  put_trailer(w, m.procs, [](wire::Writer& b, const ProcInfo& p) {
    b.str(p.detail);
    b.str(p.placement);
  });
}
void decode_fields(wire::Reader& r, PsReply& m) {
  m.self = r.u32();
  m.procs.resize(r.count(kMaxListItems, 4 + 8 + 4 + 4 + 4 + 4 + 4 + 8));
  for (auto& p : m.procs) {
    p.pid = r.i32();
    p.job = r.u64();
    p.home = r.u32();
    p.where = r.u32();
    p.state = r.str(64);
    p.command = r.str(4096);
    p.reason = r.str(4096);
    p.rss = r.u64();
  }
  get_trailer(r, m.procs, [](wire::Reader& b, ProcInfo& p) {
    if (b.remaining() == 0) return;
    p.detail = b.str(4096);
    p.placement = b.str(4096);
  });
}

void encode_fields(wire::Writer& w, const RegisterJob& m) {
  w.str(m.command);
  placement::encode(w, m.placement);
}
void decode_fields(wire::Reader& r, RegisterJob& m) {
  m.command = r.str(4096);
  if (r.remaining() > 0) m.placement = placement::decode(r);
}
void encode_fields(wire::Writer& w, const RegisterJobReply& m) {
  w.u64(m.job);
  w.str(m.start_target);
}
void decode_fields(wire::Reader& r, RegisterJobReply& m) {
  m.job = r.u64();
  if (r.remaining() > 0) m.start_target = r.str(256);
}

void encode_fields(wire::Writer&, const GuestsRequest&) {}
void decode_fields(wire::Reader&, GuestsRequest&) {}
void encode_fields(wire::Writer& w, const GuestsReply& m) {
  w.u32(m.self);
  w.u32(static_cast<uint32_t>(m.guests.size()));
  for (auto& g : m.guests) {
    w.i32(g.agent);
    w.u32(g.home);
    w.i32(g.home_pid);
    w.i32(g.body_pid);
    w.str(g.command);
    w.u64(g.rss);
  }
}
void decode_fields(wire::Reader& r, GuestsReply& m) {
  m.self = r.u32();
  m.guests.resize(r.count(kMaxListItems, 4 + 4 + 4 + 4 + 4 + 8));
  for (auto& g : m.guests) {
    g.agent = r.i32();
    g.home = r.u32();
    g.home_pid = r.i32();
    g.body_pid = r.i32();
    g.command = r.str(4096);
    g.rss = r.u64();
  }
}
void encode_fields(wire::Writer& w, const NodeCommand& m) { w.str(m.op); }
void decode_fields(wire::Reader& r, NodeCommand& m) { m.op = r.str(64); }
void encode_fields(wire::Writer& w, const NodeCommandReply& m) {
  w.str(m.message);
  w.u32(m.count);
}
void decode_fields(wire::Reader& r, NodeCommandReply& m) {
  m.message = r.str(4096);
  m.count = r.u32();
}
void encode_fields(wire::Writer& w, const ErrorReply& m) { w.str(m.message); }
void decode_fields(wire::Reader& r, ErrorReply& m) { m.message = r.str(4096); }

}  // namespace roam::msg
