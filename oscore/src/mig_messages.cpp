#include "roam/mig_messages.hpp"

#include "roam/image_codec.hpp"

#include <fmt/format.h>

#include <cstring>

namespace roam::msg {
namespace {

void put_blob(wire::Writer& w, std::span<const std::byte> b) {
  w.u32(static_cast<uint32_t>(b.size()));
  w.bytes(b);
}
std::vector<std::byte> get_blob(wire::Reader& r, size_t max) {
  uint32_t n = r.u32();
  if (n > max || n > r.remaining())
    throw wire::DecodeError(fmt::format("blob of {} bytes (limit {}, {} left)", n, max, r.remaining()));
  auto b = r.bytes(n);
  return {b.begin(), b.end()};
}

void put_regions(wire::Writer& w, const std::vector<FwdRegion>& regions) {
  w.u32(static_cast<uint32_t>(regions.size()));
  for (const FwdRegion& g : regions) {
    w.u64(g.addr);
    w.u64(g.len);
    w.u8(g.dir);
    put_blob(w, g.data);
  }
}
std::vector<FwdRegion> get_regions(wire::Reader& r) {
  std::vector<FwdRegion> regions(r.count(kMaxFwdRegions, 8 + 8 + 1 + 4));
  uint64_t total = 0;
  for (FwdRegion& g : regions) {
    g.addr = r.u64();
    g.len = r.u64();
    g.dir = r.u8();
    if (g.dir < 1 || g.dir > 3) throw wire::DecodeError(fmt::format("region direction {}", g.dir));
    if (g.len > kMaxFwdBytes || g.addr + g.len < g.addr)
      throw wire::DecodeError(fmt::format("region {:#x}+{} out of range", g.addr, g.len));
    g.data = get_blob(r, kMaxFwdBytes);
    if (!g.data.empty() && g.data.size() != g.len)
      throw wire::DecodeError(fmt::format("region {:#x}: {} bytes for a length of {}", g.addr, g.data.size(), g.len));
    total += g.len;
    if (total > kMaxFwdBytes) throw wire::DecodeError("regions larger than 64 MiB in all");
  }
  return regions;
}

}  // namespace

void encode_fields(wire::Writer& w, const MigrateRequest& m) {
  w.i32(m.pid);
  w.str(m.target);
  w.boolean(m.async);
  w.u32(m.node);
  w.str(m.address);
  w.u16(m.port);
}
void decode_fields(wire::Reader& r, MigrateRequest& m) {
  m.pid = r.i32();
  m.target = r.str(256);
  m.async = r.boolean();
  m.node = r.u32();
  m.address = r.str(256);
  m.port = r.u16();
}

void encode_fields(wire::Writer& w, const MigrateReply& m) {
  w.boolean(m.ok);
  w.str(m.message);
  w.str(m.agent_socket);
  w.u32(m.node);
}
void decode_fields(wire::Reader& r, MigrateReply& m) {
  m.ok = r.boolean();
  m.message = r.str(4096);
  m.agent_socket = r.str(4096);
  m.node = r.u32();
}

void encode_fields(wire::Writer& w, const MigOffer& m) {
  w.u32(m.home_node);
  w.i32(m.home_pid);
  w.i32(m.ppid);
  w.u32(m.uid);
  w.u32(m.euid);
  w.u32(m.gid);
  w.u32(m.egid);
  w.i64(m.monotonic_ns);
  w.i64(m.boottime_ns);
  put_blob(w, m.cpu);
  w.u64(m.image_bytes);
  w.u32(m.link_timeout_ms);
  w.u8(m.flags);
}
void decode_fields(wire::Reader& r, MigOffer& m) {
  m.home_node = r.u32();
  m.home_pid = r.i32();
  m.ppid = r.i32();
  m.uid = r.u32();
  m.euid = r.u32();
  m.gid = r.u32();
  m.egid = r.u32();
  m.monotonic_ns = r.i64();
  m.boottime_ns = r.i64();
  m.cpu = get_blob(r, 4096);
  m.image_bytes = r.u64();
  m.link_timeout_ms = r.u32();
  if (r.remaining() > 0) m.flags = r.u8();
  if (m.home_pid <= 0) throw wire::DecodeError(fmt::format("home pid {}", m.home_pid));
}

void encode_fields(wire::Writer& w, const MigChunk& m) { put_blob(w, m.data); }
void decode_fields(wire::Reader& r, MigChunk& m) { m.data = get_blob(r, kMigChunkBytes); }

std::span<const std::byte> mig_chunk_data(std::span<const std::byte> body) {
  wire::Reader r(body);
  auto t = static_cast<Type>(r.u16());
  if (t != Type::mig_chunk) throw wire::DecodeError(std::string("expected mig_chunk message, got ") + type_name(t));
  uint32_t n = r.u32();
  if (n > kMigChunkBytes || n > r.remaining())
    throw wire::DecodeError(fmt::format("blob of {} bytes (limit {}, {} left)", n, kMigChunkBytes, r.remaining()));
  return r.bytes(n);
}

namespace {

// Region starts, as a count and the starts; absent (an older node): none.
void put_starts(wire::Writer& w, const std::vector<uint64_t>& starts) {
  w.u32(static_cast<uint32_t>(starts.size()));
  for (uint64_t s : starts) w.u64(s);
}
std::vector<uint64_t> get_starts(wire::Reader& r) {
  std::vector<uint64_t> out;
  if (r.remaining() == 0) return out;  // from an older node
  uint32_t n = r.u32();
  if (n > r.remaining() / 8) throw wire::DecodeError(fmt::format("{} region starts in {} bytes", n, r.remaining()));
  out.reserve(n);
  for (uint32_t i = 0; i < n; ++i) out.push_back(r.u64());
  return out;
}

}  // namespace

void encode_fields(wire::Writer& w, const MigPrepared& m) {
  w.u64(m.prepare_us);
  w.u64(m.populated_bytes);
  put_starts(w, m.mismatched);
  w.u8(m.flags);
}
void decode_fields(wire::Reader& r, MigPrepared& m) {
  m.prepare_us = r.u64();
  m.populated_bytes = r.u64();
  m.mismatched = get_starts(r);
  if (r.remaining() > 0) m.flags = r.u8();
}

void encode_fields(wire::Writer& w, const MigReady& m) {
  w.i32(m.body_pid);
  w.u64(m.restore_us);
}
void decode_fields(wire::Reader& r, MigReady& m) {
  m.body_pid = r.i32();
  m.restore_us = r.u64();
}

void encode_fields(wire::Writer& w, const MigRefused& m) { w.str(m.reason); }
void decode_fields(wire::Reader& r, MigRefused& m) { m.reason = r.str(4096); }

namespace {
void put_usage(wire::Writer& w, const CpuUsage& u) {
  for (uint64_t v : {u.user_ns, u.sys_ns, u.child_user_ns, u.child_sys_ns, u.minflt, u.majflt, u.nvcsw, u.nivcsw,
                     u.maxrss_kib})
    w.u64(v);
}
// Absent (an older peer): all zero.
void get_usage(wire::Reader& r, CpuUsage& u) {
  if (r.remaining() == 0) return;  // a part of them is a DecodeError
  for (uint64_t* v : {&u.user_ns, &u.sys_ns, &u.child_user_ns, &u.child_sys_ns, &u.minflt, &u.majflt, &u.nvcsw,
                      &u.nivcsw, &u.maxrss_kib})
    *v = r.u64();
}
}  // namespace

void encode_fields(wire::Writer& w, const MigGo& m) { put_usage(w, m.before); }
void decode_fields(wire::Reader& r, MigGo& m) { get_usage(r, m.before); }

void encode_fields(wire::Writer& w, const FwdCall& m) {
  w.u64(m.seq);
  w.i32(m.nr);
  for (uint64_t a : m.args) w.u64(a);
  put_regions(w, m.regions);
}
void decode_fields(wire::Reader& r, FwdCall& m) {
  m.seq = r.u64();
  m.nr = r.i32();
  for (uint64_t& a : m.args) a = r.u64();
  m.regions = get_regions(r);
}

void encode_fields(wire::Writer& w, const FwdResult& m) {
  w.u64(m.seq);
  w.i64(m.value);
  w.boolean(m.cancelled);
  put_regions(w, m.regions);
  w.str(m.unserved);
  w.boolean(m.file.has_value());
  if (m.file) {
    w.str(m.file->path);
    image::encode_identity(w, m.file->identity);
  }
}
void decode_fields(wire::Reader& r, FwdResult& m) {
  m.seq = r.u64();
  m.value = r.i64();
  m.cancelled = r.boolean();
  m.regions = get_regions(r);
  m.unserved = r.str(4096);
  if (r.remaining() > 0 && r.boolean()) {
    MappedFile f;
    f.path = r.str(4096);
    f.identity = image::decode_identity(r);
    m.file = std::move(f);
  }
}

void encode_fields(wire::Writer& w, const FwdCancel& m) { w.u64(m.seq); }
void decode_fields(wire::Reader& r, FwdCancel& m) { m.seq = r.u64(); }

void encode_fields(wire::Writer& w, const FwdSignal& m) { w.bytes(m.siginfo); }
void decode_fields(wire::Reader& r, FwdSignal& m) {
  auto b = r.bytes(m.siginfo.size());
  std::memcpy(m.siginfo.data(), b.data(), b.size());
}

void encode_fields(wire::Writer& w, const ComeHome& m) { w.str(m.reason); }
void decode_fields(wire::Reader& r, ComeHome& m) { m.reason = r.str(4096); }

void encode_fields(wire::Writer& w, const GoingHome& m) {
  w.str(m.reason);
  w.u64(m.image_bytes);
  w.u32(static_cast<uint32_t>(m.pending_signals.size()));
  for (const auto& s : m.pending_signals) w.bytes(s);
  put_usage(w, m.used);
}
void decode_fields(wire::Reader& r, GoingHome& m) {
  m.reason = r.str(4096);
  m.image_bytes = r.u64();
  m.pending_signals.resize(r.count(4096, 128));
  for (auto& s : m.pending_signals) {
    auto b = r.bytes(s.size());
    std::memcpy(s.data(), b.data(), b.size());
  }
  get_usage(r, m.used);
}

void encode_fields(wire::Writer& w, const HomePlan& m) {
  w.str(m.reason);
  w.u64(m.image_bytes);
}
void decode_fields(wire::Reader& r, HomePlan& m) {
  m.reason = r.str(4096);
  m.image_bytes = r.u64();
}

void encode_fields(wire::Writer& w, const HomePrepared& m) {
  w.boolean(m.ok);
  w.u64(m.prepare_us);
  w.u64(m.populated_bytes);
  w.str(m.error);
  put_starts(w, m.mismatched);
  w.boolean(m.call_off);
}
void decode_fields(wire::Reader& r, HomePrepared& m) {
  m.ok = r.boolean();
  m.prepare_us = r.u64();
  m.populated_bytes = r.u64();
  m.error = r.str(4096);
  m.mismatched = get_starts(r);
  if (r.remaining() > 0) m.call_off = r.boolean();
}

void encode_fields(wire::Writer& w, const HomeDone& m) {
  w.boolean(m.ok);
  w.str(m.error);
  w.u32(m.moved_on_to);
}
void decode_fields(wire::Reader& r, HomeDone& m) {
  m.ok = r.boolean();
  m.error = r.str(4096);
  if (r.remaining() > 0) m.moved_on_to = r.u32();
}

void encode_fields(wire::Writer& w, const BodyExit& m) { w.i32(m.status); }
void decode_fields(wire::Reader& r, BodyExit& m) { m.status = r.i32(); }

void encode_fields(wire::Writer& w, const Keepalive& m) { w.u64(m.body_sched_ns); }
void encode_fields(wire::Writer& w, const BodyStopped& m) {
  w.i32(m.signo);
  w.u64(m.signals_seen);
}
void decode_fields(wire::Reader& r, BodyStopped& m) {
  m.signo = r.i32();
  if (m.signo < 1 || m.signo > 64) throw wire::DecodeError(fmt::format("stop signal {}", m.signo));
  m.signals_seen = r.remaining() > 0 ? r.u64() : BodyStopped::kUnknown;
}

void encode_fields(wire::Writer& w, const BodyGone& m) {
  w.u32(static_cast<uint32_t>(m.signals.size()));
  for (const auto& s : m.signals) w.bytes(s);
}
void decode_fields(wire::Reader& r, BodyGone& m) {
  m.signals.resize(r.count(65536, 128));
  for (auto& s : m.signals) {
    auto b = r.bytes(s.size());
    std::memcpy(s.data(), b.data(), b.size());
  }
}
// An older peer's keepalive is empty.
void decode_fields(wire::Reader& r, Keepalive& m) { m.body_sched_ns = r.remaining() > 0 ? r.u64() : 0; }

}  // namespace roam::msg
