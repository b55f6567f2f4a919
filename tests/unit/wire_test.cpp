// The wire codec and every message: round trips with non-trivial values,
// truncation at every byte, wrong tags, count and length limits, append-only
// trailing fields, and frame assembly from arbitrary deliveries.
#include "roam/messages.hpp"
#include "roam/mig_messages.hpp"
#include "roam/wire.hpp"

#include <signal.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace roam::msg {
namespace {

using Bytes = std::vector<std::byte>;

Bytes bytes_of(std::initializer_list<int> values) {
  Bytes out;
  for (int v : values) out.push_back(static_cast<std::byte>(v));
  return out;
}

Bytes concat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// ---- samples: every field set to something other than its default ----

LoadInfo sample_load(uint32_t seed) {
  LoadInfo i;
  i.load = 150 + seed;
  i.free_mem = 0x0123'4567'89ab'cdefull + seed;
  i.total_mem = 0xfedc'ba98'7654'3210ull - seed;
  i.ncpus = static_cast<uint16_t>(0xbeef + seed);
  i.speed = 12345 + seed;
  i.procs = 0x8000'0001u + seed;
  i.guests = 77 + seed;
  i.flags = kNodeNoGuests | (1u << 31);  // plus a bit from the future
  return i;
}

Hello sample_hello() {
  Hello m;
  m.version = 7;
  m.min_version = 3;
  m.features = wire::kFeatGossip | wire::kFeatControl | (1ull << 63);  // plus a bit from the future
  m.node = 0xa1b2c3d4;
  for (size_t i = 0; i < m.nonce.size(); ++i) m.nonce[i] = static_cast<unsigned char>(0xff - i * 7);
  return m;
}

Auth sample_auth() {
  Auth m;
  for (size_t i = 0; i < m.mac.size(); ++i) m.mac[i] = static_cast<unsigned char>(i * 13 + 1);
  for (size_t i = 0; i < m.stream_header.size(); ++i) m.stream_header[i] = static_cast<unsigned char>(0x80 | i);
  return m;
}

Gossip sample_gossip() {
  Gossip m;
  for (uint32_t n = 0; n < 3; ++n) m.entries.push_back({n * 1000 + 7, n * 250 + 1, sample_load(n)});
  return m;
}

CtlHello sample_ctl_hello() {
  CtlHello m;
  m.version = 0x1234;
  return m;
}

StatusReply sample_status_reply() {
  StatusReply m;
  m.self = 4;
  m.hostname = "compute-04.cluster";
  m.step_ms = 1500;
  m.window = 9;
  m.down_after_steps = 33;
  m.uptime_ms = 0x0000'0102'0304'0506ull;
  m.gossip_sent = 1'000'000'007;
  m.gossip_received = 0xffff'ffff'ffffull;
  m.rejected = 17;
  m.policy = "balance on, usher on (< 5% free), io-home >= 2000 calls/s; 3 moves made (2 load, 1 memory)";
  NodeStatus a;
  a.node = 4;
  a.address = "10.0.0.4:4660";
  a.tags = {"gpu", "big-mem"};
  a.self = true;
  a.known = true;
  a.up = true;
  a.age_ms = 0;
  a.info = sample_load(4);
  NodeStatus b;
  b.node = 65535;
  b.address = "[fe80::1]:4700";
  b.tags = {};
  b.self = false;
  b.known = true;
  b.up = false;
  b.age_ms = 99'999;
  b.info = sample_load(9);
  m.nodes = {a, b};
  return m;
}

PsReply sample_ps_reply() {
  PsReply m;
  m.self = 2;
  ProcInfo p;
  p.pid = -12345;  // signed: a negative value must survive the u32 encoding
  p.job = 0x7000'0000'0000'0001ull;
  p.home = 2;
  p.where = 5;
  p.state = "away";
  p.command = "./sim --steps 1000 'quoted arg'";
  p.reason = "node 5 had the lowest load";
  p.rss = 3ull << 33;
  p.detail = "moved by migrate 2";
  p.placement = "-L -t gpu -m 512";
  ProcInfo q;
  q.pid = 42;
  q.job = 9;
  q.home = 2;
  q.where = 2;
  q.state = "home";
  q.command = std::string("bin\0ary", 7);
  q.reason = "";
  q.rss = 4096;
  m.procs = {p, q};
  return m;
}

RegisterJob sample_register_job() {
  RegisterJob m;
  m.command = "make -j8 all";
  m.placement.mobility = placement::Mobility::manual_only;
  m.placement.tag = "gpu";
  m.placement.mem_mb = 0x1'0000'0001ull;
  m.placement.start_node = 0xa1b2c3d4;
  m.placement.start_best = true;
  return m;
}

RegisterJobReply sample_register_job_reply() {
  RegisterJobReply m;
  m.job = 0xdead'beef'cafe'f00dull;
  m.start_target = "best";
  return m;
}

GuestsReply sample_guests_reply() {
  GuestsReply m;
  m.self = 3;
  m.guests.push_back({-4242, 1, 123456, 77, "cpu_loop --x 'y'", 1ull << 40});
  m.guests.push_back({5, 0xffffffffu, 1, 2, "", 0});
  return m;
}

NodeCommand sample_node_command() { return NodeCommand{"expel"}; }

NodeCommandReply sample_node_command_reply() { return NodeCommandReply{"node 2: 3 guests sent home", 3}; }

ErrorReply sample_error_reply() {
  ErrorReply m;
  m.message = "no node 9 in the cluster map: see mosmon";
  return m;
}

// ---- field-by-field comparison, so a failure names the field ----

void expect_same(const LoadInfo& a, const LoadInfo& b) {
  EXPECT_EQ(a.load, b.load);
  EXPECT_EQ(a.free_mem, b.free_mem);
  EXPECT_EQ(a.total_mem, b.total_mem);
  EXPECT_EQ(a.ncpus, b.ncpus);
  EXPECT_EQ(a.speed, b.speed);
  EXPECT_EQ(a.procs, b.procs);
  EXPECT_EQ(a.guests, b.guests);
  EXPECT_EQ(a.flags, b.flags);
}

void expect_same(const Hello& a, const Hello& b) {
  EXPECT_EQ(a.magic, b.magic);
  EXPECT_EQ(a.version, b.version);
  EXPECT_EQ(a.min_version, b.min_version);
  EXPECT_EQ(a.features, b.features);
  EXPECT_EQ(a.node, b.node);
  EXPECT_EQ(a.nonce, b.nonce);
}

void expect_same(const Auth& a, const Auth& b) {
  EXPECT_EQ(a.mac, b.mac);
  EXPECT_EQ(a.stream_header, b.stream_header);
}

void expect_same(const Gossip& a, const Gossip& b) {
  ASSERT_EQ(a.entries.size(), b.entries.size());
  for (size_t i = 0; i < a.entries.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(a.entries[i].node, b.entries[i].node);
    EXPECT_EQ(a.entries[i].age_ms, b.entries[i].age_ms);
    expect_same(a.entries[i].info, b.entries[i].info);
  }
}

void expect_same(const CtlHello& a, const CtlHello& b) {
  EXPECT_EQ(a.magic, b.magic);
  EXPECT_EQ(a.version, b.version);
}

void expect_same(const StatusRequest&, const StatusRequest&) {}
void expect_same(const PsRequest&, const PsRequest&) {}

void expect_same(const StatusReply& a, const StatusReply& b) {
  EXPECT_EQ(a.self, b.self);
  EXPECT_EQ(a.hostname, b.hostname);
  EXPECT_EQ(a.step_ms, b.step_ms);
  EXPECT_EQ(a.window, b.window);
  EXPECT_EQ(a.down_after_steps, b.down_after_steps);
  EXPECT_EQ(a.uptime_ms, b.uptime_ms);
  EXPECT_EQ(a.gossip_sent, b.gossip_sent);
  EXPECT_EQ(a.gossip_received, b.gossip_received);
  EXPECT_EQ(a.rejected, b.rejected);
  EXPECT_EQ(a.policy, b.policy);
  ASSERT_EQ(a.nodes.size(), b.nodes.size());
  for (size_t i = 0; i < a.nodes.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(a.nodes[i].node, b.nodes[i].node);
    EXPECT_EQ(a.nodes[i].address, b.nodes[i].address);
    EXPECT_EQ(a.nodes[i].tags, b.nodes[i].tags);
    EXPECT_EQ(a.nodes[i].self, b.nodes[i].self);
    EXPECT_EQ(a.nodes[i].known, b.nodes[i].known);
    EXPECT_EQ(a.nodes[i].up, b.nodes[i].up);
    EXPECT_EQ(a.nodes[i].age_ms, b.nodes[i].age_ms);
    expect_same(a.nodes[i].info, b.nodes[i].info);
  }
}

void expect_same(const PsReply& a, const PsReply& b) {
  EXPECT_EQ(a.self, b.self);
  ASSERT_EQ(a.procs.size(), b.procs.size());
  for (size_t i = 0; i < a.procs.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(a.procs[i].pid, b.procs[i].pid);
    EXPECT_EQ(a.procs[i].job, b.procs[i].job);
    EXPECT_EQ(a.procs[i].home, b.procs[i].home);
    EXPECT_EQ(a.procs[i].where, b.procs[i].where);
    EXPECT_EQ(a.procs[i].state, b.procs[i].state);
    EXPECT_EQ(a.procs[i].command, b.procs[i].command);
    EXPECT_EQ(a.procs[i].reason, b.procs[i].reason);
    EXPECT_EQ(a.procs[i].rss, b.procs[i].rss);
    EXPECT_EQ(a.procs[i].detail, b.procs[i].detail);
    EXPECT_EQ(a.procs[i].placement, b.procs[i].placement);
  }
}

void expect_same(const RegisterJob& a, const RegisterJob& b) {
  EXPECT_EQ(a.command, b.command);
  EXPECT_EQ(a.placement.mobility, b.placement.mobility);
  EXPECT_EQ(a.placement.tag, b.placement.tag);
  EXPECT_EQ(a.placement.mem_mb, b.placement.mem_mb);
  EXPECT_EQ(a.placement.start_node, b.placement.start_node);
  EXPECT_EQ(a.placement.start_best, b.placement.start_best);
}
void expect_same(const RegisterJobReply& a, const RegisterJobReply& b) {
  EXPECT_EQ(a.job, b.job);
  EXPECT_EQ(a.start_target, b.start_target);
}
void expect_same(const GuestsRequest&, const GuestsRequest&) {}
void expect_same(const GuestsReply& a, const GuestsReply& b) {
  EXPECT_EQ(a.self, b.self);
  ASSERT_EQ(a.guests.size(), b.guests.size());
  for (size_t i = 0; i < a.guests.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(a.guests[i].agent, b.guests[i].agent);
    EXPECT_EQ(a.guests[i].home, b.guests[i].home);
    EXPECT_EQ(a.guests[i].home_pid, b.guests[i].home_pid);
    EXPECT_EQ(a.guests[i].body_pid, b.guests[i].body_pid);
    EXPECT_EQ(a.guests[i].command, b.guests[i].command);
    EXPECT_EQ(a.guests[i].rss, b.guests[i].rss);
  }
}
void expect_same(const NodeCommand& a, const NodeCommand& b) { EXPECT_EQ(a.op, b.op); }
void expect_same(const NodeCommandReply& a, const NodeCommandReply& b) {
  EXPECT_EQ(a.message, b.message);
  EXPECT_EQ(a.count, b.count);
}
void expect_same(const ErrorReply& a, const ErrorReply& b) { EXPECT_EQ(a.message, b.message); }

// ---- one table of every message type, for the cross-type tests ----

struct Case {
  const char* name;
  Type type;
  Bytes encoded;
  std::function<void(std::span<const std::byte>)> decode_and_check;  // decodes as its own type
  // Where older senders' encodings ended, before fields appended later
  // (none: nothing appended): those prefixes decode, with the defaults.
  std::vector<size_t> older_sizes;
  std::function<void(std::span<const std::byte>)> decode_only;
};

// appended: the bytes of each appended section, newest last.
template <typename M>
Case make_case(const char* name, const M& sample, std::initializer_list<size_t> appended = {}) {
  Bytes encoded = encode(sample);
  std::vector<size_t> older;
  size_t end = encoded.size();
  for (auto it = std::rbegin(appended); it != std::rend(appended); ++it) {
    end -= *it;
    older.push_back(end);
  }
  return {name, M::kType, encoded,
          [sample](std::span<const std::byte> body) {
            M got = decode<M>(body);
            expect_same(sample, got);
          },
          older, [](std::span<const std::byte> body) { decode<M>(body); }};
}

// The bytes of the trailing sections (messages.cpp put_trailer) and other
// appended fields of the samples.
size_t load_trailer_bytes(size_t items) { return 4 + items * (4 + 8); }
size_t ps_trailer_bytes(const PsReply& m) {
  size_t n = 4;
  for (auto& p : m.procs) n += 4 + 4 + p.detail.size() + 4 + p.placement.size();
  return n;
}

std::vector<Case> all_cases() {
  return {
      make_case("hello", sample_hello()),
      make_case("auth", sample_auth()),
      make_case("gossip", sample_gossip(), {load_trailer_bytes(sample_gossip().entries.size())}),
      make_case("ctl_hello", sample_ctl_hello()),
      make_case("status_request", StatusRequest{}),
      make_case("status_reply", sample_status_reply(),
                {load_trailer_bytes(sample_status_reply().nodes.size()), 4 + sample_status_reply().policy.size()}),
      make_case("ps_request", PsRequest{}),
      make_case("ps_reply", sample_ps_reply(), {ps_trailer_bytes(sample_ps_reply())}),
      make_case("register_job", sample_register_job(), {1 + 4 + sample_register_job().placement.tag.size() + 8 + 4 + 1}),
      make_case("register_job_reply", sample_register_job_reply(), {4 + sample_register_job_reply().start_target.size()}),
      make_case("error_reply", sample_error_reply()),
      make_case("guests_request", GuestsRequest{}),
      make_case("guests_reply", sample_guests_reply()),
      make_case("node_command", sample_node_command()),
      make_case("node_command_reply", sample_node_command_reply()),
  };
}

// Decoders of every type, each discarding its result: for wrong-type tests.
std::vector<std::pair<Type, std::function<void(std::span<const std::byte>)>>> all_decoders() {
  return {
      {Type::hello, [](auto b) { decode<Hello>(b); }},
      {Type::auth, [](auto b) { decode<Auth>(b); }},
      {Type::gossip, [](auto b) { decode<Gossip>(b); }},
      {Type::ctl_hello, [](auto b) { decode<CtlHello>(b); }},
      {Type::status_request, [](auto b) { decode<StatusRequest>(b); }},
      {Type::status_reply, [](auto b) { decode<StatusReply>(b); }},
      {Type::ps_request, [](auto b) { decode<PsRequest>(b); }},
      {Type::ps_reply, [](auto b) { decode<PsReply>(b); }},
      {Type::register_job, [](auto b) { decode<RegisterJob>(b); }},
      {Type::register_job_reply, [](auto b) { decode<RegisterJobReply>(b); }},
      {Type::error_reply, [](auto b) { decode<ErrorReply>(b); }},
      {Type::guests_request, [](auto b) { decode<GuestsRequest>(b); }},
      {Type::guests_reply, [](auto b) { decode<GuestsReply>(b); }},
      {Type::node_command, [](auto b) { decode<NodeCommand>(b); }},
      {Type::node_command_reply, [](auto b) { decode<NodeCommandReply>(b); }},
  };
}

}  // namespace

// ---- primitives ----

TEST(WireWriter, LittleEndianLayout) {
  wire::Writer w;
  w.u16(0x0102);
  w.u32(0x03040506);
  w.u64(0x0708090a0b0c0d0eull);
  w.i32(-2);
  w.boolean(true);
  w.str("ab");
  EXPECT_EQ(w.take(), bytes_of({0x02, 0x01, 0x06, 0x05, 0x04, 0x03, 0x0e, 0x0d, 0x0c, 0x0b, 0x0a, 0x09, 0x08, 0x07,
                                0xfe, 0xff, 0xff, 0xff, 0x01, 0x02, 0x00, 0x00, 0x00, 'a', 'b'}));
}

TEST(WireReader, ReadsWhatWriterWrote) {
  wire::Writer w;
  w.u8(0xfe);
  w.u16(0xabcd);
  w.u32(0xdeadbeef);
  w.u64(0x0123456789abcdefull);
  w.i32(-7);
  w.i64(-0x123456789ll);
  w.boolean(false);
  w.boolean(true);
  w.str("hello");
  w.str("");
  auto buf = w.take();
  wire::Reader r(buf);
  EXPECT_EQ(r.u8(), 0xfe);
  EXPECT_EQ(r.u16(), 0xabcd);
  EXPECT_EQ(r.u32(), 0xdeadbeefu);
  EXPECT_EQ(r.u64(), 0x0123456789abcdefull);
  EXPECT_EQ(r.i32(), -7);
  EXPECT_EQ(r.i64(), -0x123456789ll);
  EXPECT_FALSE(r.boolean());
  EXPECT_TRUE(r.boolean());
  EXPECT_EQ(r.str(), "hello");
  EXPECT_EQ(r.str(), "");
  EXPECT_EQ(r.remaining(), 0u);
  EXPECT_EQ(r.position(), buf.size());
  EXPECT_THROW(r.u8(), wire::DecodeError);
}

TEST(WireReader, RejectsBooleanOtherThanZeroOrOne) {
  auto buf = bytes_of({2});
  wire::Reader r(buf);
  EXPECT_THROW(r.boolean(), wire::DecodeError);
}

TEST(WireReader, RejectsStringLongerThanItsLimit) {
  wire::Writer w;
  w.str(std::string(17, 'x'));
  auto buf = w.take();
  wire::Reader ok(buf);
  EXPECT_EQ(ok.str(17), std::string(17, 'x'));
  wire::Reader too_long(buf);
  EXPECT_THROW(too_long.str(16), wire::DecodeError);
}

TEST(WireReader, RejectsStringLengthBeyondTheData) {
  auto buf = bytes_of({10, 0, 0, 0, 'a', 'b'});
  wire::Reader r(buf);
  EXPECT_THROW(r.str(), wire::DecodeError);
}

TEST(WireReader, CountRefusesAboveMaxAndBeyondRemainingBytes) {
  wire::Writer w;
  w.u32(3);
  w.bytes(bytes_of({1, 2, 3, 4, 5, 6}));
  auto buf = w.take();
  {
    wire::Reader r(buf);
    EXPECT_EQ(r.count(3, 2), 3u);  // 3 items of 2 bytes fit in 6
  }
  {
    wire::Reader r(buf);
    EXPECT_THROW(r.count(2, 2), wire::DecodeError);  // above max
  }
  {
    wire::Reader r(buf);
    EXPECT_THROW(r.count(100, 3), wire::DecodeError);  // 3 * 3 > 6 bytes left
  }
}

TEST(WireFrame, PrependsLittleEndianLength) {
  auto body = bytes_of({9, 8, 7});
  EXPECT_EQ(wire::frame(body), bytes_of({3, 0, 0, 0, 9, 8, 7}));
}

// ---- messages ----

TEST(Messages, EveryTypeRoundTrips) {
  for (auto& c : all_cases()) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(peek_type(c.encoded), c.type);
    EXPECT_STREQ(type_name(c.type), c.name);
    c.decode_and_check(c.encoded);
  }
}

TEST(Messages, EncodingStartsWithTheTagAndIsStable) {
  // A fixed message must encode to fixed bytes: the format is a contract
  // between nodes of different builds.
  RegisterJobReply m;
  m.job = 0x0102030405060708ull;
  EXPECT_EQ(encode(m), bytes_of({106, 0, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0, 0, 0}));
  CtlHello h;
  EXPECT_EQ(encode(h), bytes_of({100, 0, 'R', 'O', 'A', 'M', 1, 0}));
}

TEST(Messages, EveryStrictPrefixOfEveryMessageIsRefused) {
  // ... except exactly what an older sender, without the appended fields, sent.
  for (auto& c : all_cases()) {
    SCOPED_TRACE(c.name);
    for (size_t len = 0; len < c.encoded.size(); ++len) {
      SCOPED_TRACE(len);
      std::span<const std::byte> prefix(c.encoded.data(), len);
      if (std::find(c.older_sizes.begin(), c.older_sizes.end(), len) != c.older_sizes.end())
        EXPECT_NO_THROW(c.decode_only(prefix));
      else
        EXPECT_THROW(c.decode_and_check(prefix), wire::DecodeError);
    }
  }
}

TEST(Messages, AnOlderSendersMessageDecodesWithTheDefaults) {
  Gossip g = sample_gossip();
  auto body = encode(g);
  body.resize(body.size() - load_trailer_bytes(g.entries.size()));
  Gossip got = decode<Gossip>(body);
  ASSERT_EQ(got.entries.size(), g.entries.size());
  EXPECT_EQ(got.entries[1].info.procs, g.entries[1].info.procs);
  EXPECT_EQ(got.entries[1].info.guests, 0u);
  EXPECT_EQ(got.entries[1].info.flags, 0u);

  RegisterJob old;
  old.command = "sleep 1";
  wire::Writer w;
  w.u16(static_cast<uint16_t>(Type::register_job));
  w.str(old.command);
  RegisterJob rj = decode<RegisterJob>(w.take());
  EXPECT_EQ(rj.command, "sleep 1");
  EXPECT_EQ(rj.placement.mobility, placement::Mobility::may_move);
  EXPECT_TRUE(rj.placement.tag.empty());
}

TEST(Messages, BodyStoppedFromAnOlderBodyCarriesNoSignalCount) {
  BodyStopped now = decode<BodyStopped>(encode(BodyStopped{SIGTSTP, 7}));
  EXPECT_EQ(now.signo, SIGTSTP);
  EXPECT_EQ(now.signals_seen, 7u);
  wire::Writer w;
  w.u16(static_cast<uint16_t>(Type::body_stopped));
  w.i32(SIGTSTP);
  BodyStopped old = decode<BodyStopped>(w.take());
  EXPECT_EQ(old.signo, SIGTSTP);
  EXPECT_EQ(old.signals_seen, BodyStopped::kUnknown);
}

TEST(Messages, ATrailingSectionOfTheWrongLengthIsRefused) {
  Gossip g = sample_gossip();
  auto body = encode(g);
  size_t at = body.size() - load_trailer_bytes(g.entries.size());
  body[at] = std::byte{2};  // 3 entries, a section claiming 2
  EXPECT_THROW(decode<Gossip>(body), wire::DecodeError);
}

TEST(Messages, DecodingAsAnotherTypeIsRefused) {
  auto decoders = all_decoders();
  ASSERT_EQ(decoders.size(), all_cases().size());
  for (auto& c : all_cases()) {
    for (auto& [type, dec] : decoders) {
      if (type == c.type) continue;
      SCOPED_TRACE(std::string(c.name) + " as " + type_name(type));
      EXPECT_THROW(dec(c.encoded), wire::DecodeError);
    }
  }
}

TEST(Messages, UnknownTagIsRefusedAndNamedUnknown) {
  auto body = bytes_of({0x39, 0x30, 0, 0, 0, 0});  // tag 12345
  EXPECT_EQ(static_cast<uint16_t>(peek_type(body)), 12345);
  EXPECT_STREQ(type_name(peek_type(body)), "unknown");
  try {
    decode<StatusRequest>(body);
    FAIL() << "decoded an unknown tag";
  } catch (const wire::DecodeError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown"), std::string::npos) << e.what();
  }
}

TEST(Messages, PeekTypeNeedsTwoBytes) {
  EXPECT_THROW(peek_type(bytes_of({})), wire::DecodeError);
  EXPECT_THROW(peek_type(bytes_of({1})), wire::DecodeError);
}

TEST(Messages, TrailingBytesAfterKnownFieldsAreIgnored) {
  // Append-only fields: a newer peer's extra fields must not break us.
  auto extra = bytes_of({0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x01, 0x02});
  for (auto& c : all_cases()) {
    SCOPED_TRACE(c.name);
    c.decode_and_check(concat(c.encoded, extra));
  }
}

TEST(Messages, HelloWithBadMagicIsRefused) {
  auto body = encode(sample_hello());
  body[2] ^= std::byte{0x20};  // "roam" instead of "ROAM" in the first magic byte
  try {
    decode<Hello>(body);
    FAIL() << "accepted a hello with bad magic";
  } catch (const wire::DecodeError& e) {
    EXPECT_NE(std::string(e.what()).find("magic"), std::string::npos) << e.what();
  }
  Hello wrong = sample_hello();
  wrong.magic = 0x50545448;  // "HTTP"
  EXPECT_THROW(decode<Hello>(encode(wrong)), wire::DecodeError);
}

TEST(Messages, CtlHelloWithBadMagicIsRefused) {
  CtlHello wrong;
  wrong.magic = 0;
  EXPECT_THROW(decode<CtlHello>(encode(wrong)), wire::DecodeError);
}

Bytes gossip_body_claiming(uint32_t count, size_t entries_present) {
  Gossip g;
  for (size_t i = 0; i < entries_present; ++i)
    g.entries.push_back({static_cast<uint32_t>(i + 1), 10, sample_load(static_cast<uint32_t>(i))});
  auto body = encode(g);
  wire::Writer w;
  w.u32(count);
  std::copy(w.buffer().begin(), w.buffer().end(), body.begin() + 2);  // overwrite the count
  return body;
}

TEST(Messages, GossipAtTheEntryLimitIsAccepted) {
  auto g = decode<Gossip>(gossip_body_claiming(kMaxGossipEntries, kMaxGossipEntries));
  ASSERT_EQ(g.entries.size(), kMaxGossipEntries);
  EXPECT_EQ(g.entries.back().node, kMaxGossipEntries);
}

TEST(Messages, GossipAboveTheEntryLimitIsRefusedEvenWithTheBytesPresent) {
  EXPECT_THROW(decode<Gossip>(gossip_body_claiming(5000, 5000)), wire::DecodeError);
  EXPECT_THROW(decode<Gossip>(gossip_body_claiming(kMaxGossipEntries + 1, kMaxGossipEntries + 1)), wire::DecodeError);
}

TEST(Messages, GossipCountBeyondTheRemainingBytesIsRefused) {
  EXPECT_THROW(decode<Gossip>(gossip_body_claiming(2, 1)), wire::DecodeError);
  EXPECT_THROW(decode<Gossip>(gossip_body_claiming(4000, 3)), wire::DecodeError);
  EXPECT_THROW(decode<Gossip>(gossip_body_claiming(0xffffffffu, 1)), wire::DecodeError);
}

TEST(Messages, GossipWithoutTheSendersEntryIsRefused) {
  EXPECT_THROW(decode<Gossip>(gossip_body_claiming(0, 0)), wire::DecodeError);
}

TEST(Messages, ListCountsBeyondTheRemainingBytesAreRefused) {
  // StatusReply: claim 1000 nodes, provide 2.
  auto status = encode(sample_status_reply());
  size_t count_at = 2 + 4 + 4 + sample_status_reply().hostname.size() + 4 * 3 + 8 * 4;
  ASSERT_EQ(status[count_at], std::byte{2});
  status[count_at + 1] = std::byte{0x03};  // 2 -> 0x302
  EXPECT_THROW(decode<StatusReply>(status), wire::DecodeError);

  // PsReply: claim 0xffffffff procs.
  auto ps = encode(sample_ps_reply());
  for (size_t i = 6; i < 10; ++i) ps[i] = std::byte{0xff};
  EXPECT_THROW(decode<PsReply>(ps), wire::DecodeError);
}

TEST(Messages, StringsOverTheirLimitsAreRefused) {
  ErrorReply long_error;
  long_error.message = std::string(4097, 'e');
  EXPECT_THROW(decode<ErrorReply>(encode(long_error)), wire::DecodeError);
  long_error.message.pop_back();
  EXPECT_EQ(decode<ErrorReply>(encode(long_error)).message.size(), 4096u);

  StatusReply long_host = sample_status_reply();
  long_host.hostname = std::string(257, 'h');
  EXPECT_THROW(decode<StatusReply>(encode(long_host)), wire::DecodeError);

  PsReply long_state = sample_ps_reply();
  long_state.procs[0].state = std::string(65, 's');
  EXPECT_THROW(decode<PsReply>(encode(long_state)), wire::DecodeError);
}

TEST(Messages, NodeStatusWithMoreThan256TagsIsRefused) {
  StatusReply m = sample_status_reply();
  m.nodes[1].tags.assign(257, "t");
  EXPECT_THROW(decode<StatusReply>(encode(m)), wire::DecodeError);
  m.nodes[1].tags.assign(256, "t");
  EXPECT_EQ(decode<StatusReply>(encode(m)).nodes[1].tags.size(), 256u);
}

TEST(Messages, StatusReplyWithABadBooleanIsRefused) {
  StatusReply m = sample_status_reply();
  m.nodes.resize(1);
  m.nodes[0].tags.clear();
  auto body = encode(m);
  // The node's three booleans follow its number, address and empty tag list
  // (then its age, its load and the trailing section).
  size_t self_at = body.size() - (3 + 8 + 30) - load_trailer_bytes(1) - 4 - m.policy.size();
  ASSERT_EQ(body[self_at], std::byte{1});
  body[self_at] = std::byte{2};
  EXPECT_THROW(decode<StatusReply>(body), wire::DecodeError);
}

// ---- frame assembly ----

std::vector<Bytes> pop_all(wire::FrameAssembler& fa) {
  std::vector<Bytes> out;
  Bytes body;
  while (fa.pop(body)) out.push_back(body);
  return out;
}

TEST(FrameAssembler, ReassemblesFramesDeliveredOneByteAtATime) {
  auto a = encode(sample_gossip());
  auto b = encode(sample_status_reply());
  auto stream = concat(wire::frame(a), wire::frame(b));
  wire::FrameAssembler fa;
  std::vector<Bytes> got;
  for (size_t i = 0; i < stream.size(); ++i) {
    fa.feed(std::span<const std::byte>(&stream[i], 1));
    auto popped = pop_all(fa);
    // A frame pops exactly when its last byte arrives, never earlier.
    bool frame_ends_here = i + 1 == wire::frame(a).size() || i + 1 == stream.size();
    EXPECT_EQ(popped.size(), frame_ends_here ? 1u : 0u) << "after byte " << i;
    got.insert(got.end(), popped.begin(), popped.end());
  }
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], a);
  EXPECT_EQ(got[1], b);
  EXPECT_EQ(fa.buffered(), 0u);
}

TEST(FrameAssembler, SplitsSeveralFramesFromOneFeed) {
  auto a = encode(sample_hello());
  auto b = encode(StatusRequest{});
  auto c = encode(sample_error_reply());
  auto partial = wire::frame(encode(sample_ps_reply()));
  auto stream = concat(concat(concat(wire::frame(a), wire::frame(b)), wire::frame(c)), Bytes(partial.begin(), partial.begin() + 5));
  wire::FrameAssembler fa;
  fa.feed(stream);
  auto got = pop_all(fa);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0], a);
  EXPECT_EQ(got[1], b);
  EXPECT_EQ(got[2], c);
  EXPECT_EQ(fa.buffered(), 5u);  // the start of the fourth frame waits for the rest
  fa.feed(std::span<const std::byte>(partial).subspan(5));
  got = pop_all(fa);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], encode(sample_ps_reply()));
  decode<PsReply>(got[0]);
}

TEST(FrameAssembler, ReadsIntoItsOwnSpaceAndLendsFrames) {
  // As a Channel receives: reads land in space(), frames are popped as
  // views; a big frame gets room for all of it once its header came.
  Bytes big(300000);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::byte>(i * 7);
  auto small = encode(sample_gossip());
  auto stream = concat(concat(wire::frame(small), wire::frame(big)), wire::frame(small));
  std::mt19937 rng(5);
  for (int round = 0; round < 10; ++round) {
    wire::FrameAssembler fa(1 << 20);
    std::vector<Bytes> got;
    for (size_t at = 0; at < stream.size();) {
      auto room = fa.space(4096);
      ASSERT_GE(room.size(), 4096u);
      if (fa.missing() > 0) {
        EXPECT_GE(room.size(), fa.missing()) << "no room for the rest of the frame";
      }
      size_t n = std::min({room.size(), stream.size() - at, size_t{1} + rng() % 70000});
      std::memcpy(room.data(), stream.data() + at, n);
      fa.commit(n);
      at += n;
      std::span<std::byte> view;
      bool flagged = true;
      while (fa.pop_view(view, &flagged)) {
        EXPECT_FALSE(flagged);
        got.emplace_back(view.begin(), view.end());
      }
    }
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[0], small);
    EXPECT_EQ(got[1], big);
    EXPECT_EQ(got[2], small);
    EXPECT_EQ(fa.buffered(), 0u);
    EXPECT_EQ(fa.missing(), 0u);
  }
}

TEST(FrameAssembler, FlaggedFramesAreOversizedToAReaderThatDoesNotExpectThem) {
  Bytes f = wire::frame(encode(sample_gossip()));
  f[3] |= std::byte{0x80};  // the little-endian length's top bit: a bulk frame
  wire::FrameAssembler fa;
  fa.feed(f);
  Bytes body;
  EXPECT_THROW(fa.pop(body), wire::DecodeError);
  wire::FrameAssembler fb;
  fb.feed(f);
  bool flagged = false;
  ASSERT_TRUE(fb.pop(body, flagged));
  EXPECT_TRUE(flagged);
  EXPECT_EQ(body, encode(sample_gossip()));
}

TEST(FrameAssembler, ZeroLengthFrameIsRefused) {
  wire::FrameAssembler fa;
  fa.feed(bytes_of({0, 0, 0, 0, 1, 0}));
  Bytes body;
  EXPECT_THROW(fa.pop(body), wire::DecodeError);
}

TEST(FrameAssembler, OversizedFrameIsRefusedFromItsHeaderAlone) {
  wire::FrameAssembler fa(64);
  fa.feed(bytes_of({65, 0, 0, 0}));  // no body yet: the header is enough to refuse
  Bytes body;
  EXPECT_THROW(fa.pop(body), wire::DecodeError);

  wire::FrameAssembler dflt;
  dflt.feed(bytes_of({0xff, 0xff, 0xff, 0xff}));
  EXPECT_THROW(dflt.pop(body), wire::DecodeError);
}

TEST(FrameAssembler, FrameOfExactlyTheLimitIsAccepted) {
  wire::FrameAssembler fa(64);
  Bytes body64(64, std::byte{0x5a});
  fa.feed(wire::frame(body64));
  Bytes body;
  ASSERT_TRUE(fa.pop(body));
  EXPECT_EQ(body, body64);
  EXPECT_FALSE(fa.pop(body));
}

TEST(FrameAssembler, IncompleteHeaderWaits) {
  wire::FrameAssembler fa;
  fa.feed(bytes_of({3, 0, 0}));
  Bytes body;
  EXPECT_FALSE(fa.pop(body));
  EXPECT_EQ(fa.buffered(), 3u);
  fa.feed(bytes_of({0, 'x', 'y'}));
  EXPECT_FALSE(fa.pop(body));
  fa.feed(bytes_of({'z'}));
  ASSERT_TRUE(fa.pop(body));
  EXPECT_EQ(body, bytes_of({'x', 'y', 'z'}));
}

TEST(FrameAssembler, LongStreamsSurviveBufferCompaction) {
  // Far more than the 64 KiB after which the assembler drops consumed bytes,
  // fed in odd-sized chunks so frames straddle every boundary.
  wire::FrameAssembler fa;
  Bytes stream;
  std::vector<Bytes> sent;
  for (uint32_t i = 0; i < 3000; ++i) {
    RegisterJobReply m;
    m.job = i * 0x9e3779b97f4a7c15ull;
    ErrorReply e;
    e.message = std::string(i % 97, static_cast<char>('a' + i % 26));
    sent.push_back(encode(m));
    sent.push_back(encode(e));
  }
  for (auto& b : sent) stream = concat(std::move(stream), wire::frame(b));
  ASSERT_GT(stream.size(), 3u * 65536);
  std::vector<Bytes> got;
  for (size_t at = 0, chunk = 1; at < stream.size(); at += chunk, chunk = chunk * 7 % 1013 + 1) {
    size_t n = std::min(chunk, stream.size() - at);
    fa.feed(std::span<const std::byte>(stream).subspan(at, n));
    // Pop only sometimes, so the buffer holds several frames at once too.
    if (at % 3 != 0) {
      auto popped = pop_all(fa);
      got.insert(got.end(), popped.begin(), popped.end());
    }
  }
  auto rest = pop_all(fa);
  got.insert(got.end(), rest.begin(), rest.end());
  ASSERT_EQ(got.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) ASSERT_EQ(got[i], sent[i]) << "frame " << i;
  EXPECT_EQ(fa.buffered(), 0u);
}

// The usage and demand figures the migration messages carry survive the
// wire; from an older peer, without them, they read as zero.
TEST(MigMessages, UsageAndDemandRoundTrip) {
  MigGo go;
  go.before = {.user_ns = 1'500'000'000, .sys_ns = 20'000'000, .child_user_ns = 7, .child_sys_ns = 8, .minflt = 9,
               .majflt = 10, .nvcsw = 11, .nivcsw = 12, .maxrss_kib = 13};
  auto b = encode(go);
  auto back = decode<MigGo>(b);
  EXPECT_EQ(back.before.cpu_ns(), 1'520'000'000u);
  EXPECT_EQ(back.before.child_sys_ns, 8u);
  EXPECT_EQ(back.before.maxrss_kib, 13u);
  // An older peer's MigGo has no usage: zero, not an error.
  auto old_go = encode(go);
  old_go.resize(old_go.size() - 9 * 8);
  EXPECT_EQ(decode<MigGo>(old_go).before.cpu_ns(), 0u);
  auto empty = encode(Keepalive{});
  empty.resize(empty.size() - 8);
  EXPECT_EQ(decode<Keepalive>(empty).body_sched_ns, 0u);

  GoingHome gh{"asked home", 4096, {std::array<std::byte, 128>{}}, {}};
  gh.used.user_ns = 42;
  gh.used.nivcsw = 3;
  auto ghb = decode<GoingHome>(encode(gh));
  EXPECT_EQ(ghb.reason, "asked home");
  EXPECT_EQ(ghb.pending_signals.size(), 1u);
  EXPECT_EQ(ghb.used.user_ns, 42u);
  EXPECT_EQ(ghb.used.nivcsw, 3u);

  Keepalive k{123456789};
  EXPECT_EQ(decode<Keepalive>(encode(k)).body_sched_ns, 123456789u);
  EXPECT_EQ(decode<Keepalive>(encode(Keepalive{})).body_sched_ns, 0u);

  // Coming home with a prepare phase: the offer's flag (an older home's
  // offer has none: 0), the plan's head and home's answer.
  MigOffer offer;
  offer.home_pid = 77;
  offer.flags = kOfferHomePrepares;
  auto ob = encode(offer);
  EXPECT_EQ(decode<MigOffer>(ob).flags, kOfferHomePrepares);
  ob.pop_back();
  EXPECT_EQ(decode<MigOffer>(ob).flags, 0);
  HomePlan plan{"asked home", 1 << 20};
  auto pb = decode<HomePlan>(encode(plan));
  EXPECT_EQ(pb.reason, "asked home");
  EXPECT_EQ(pb.image_bytes, 1u << 20);
  HomePrepared hp{false, 1500, 4096, "mmap failed"};
  auto hb = decode<HomePrepared>(encode(hp));
  EXPECT_FALSE(hb.ok);
  EXPECT_EQ(hb.prepare_us, 1500u);
  EXPECT_EQ(hb.populated_bytes, 4096u);
  EXPECT_EQ(hb.error, "mmap failed");
  auto cut = encode(hp);
  cut.resize(cut.size() - 3);
  EXPECT_THROW(decode<HomePrepared>(cut), wire::DecodeError);
}

TEST(MigMessages, MappedFileRoundTrip) {
  // A private file mmap: home's answer names the file. An older home's
  // result ends before the field: no file. A cut identity fails to decode.
  FwdResult r;
  r.seq = 9;
  r.file = MappedFile{"/usr/lib/x86_64-linux-gnu/libz.so.1.2.13",
                      {4096 * 25, 1667000000123456789, image::DigestKind::elf_build_id, {0xde, 0xad, 0xbe, 0xef}}};
  auto b = encode(r);
  auto back = decode<FwdResult>(b);
  EXPECT_EQ(back.seq, 9u);
  ASSERT_TRUE(back.file.has_value());
  EXPECT_EQ(*back.file, *r.file);
  FwdResult none;
  none.seq = 3;
  none.unserved = "mmap of a device";
  auto nb = encode(none);
  EXPECT_FALSE(decode<FwdResult>(nb).file.has_value());
  nb.pop_back();  // the absent field's flag: what an older home sends
  auto old = decode<FwdResult>(nb);
  EXPECT_FALSE(old.file.has_value());
  EXPECT_EQ(old.unserved, "mmap of a device");
  b.resize(b.size() - 2);
  EXPECT_THROW(decode<FwdResult>(b), wire::DecodeError);
  // Regions whose file the target has another version of.
  MigPrepared mp{1200, 4096, {0x7f0000001000, 0x7f0000200000}, kPreparedInstallsFilters};
  auto mpb = encode(mp);
  EXPECT_EQ(decode<MigPrepared>(mpb).mismatched, mp.mismatched);
  EXPECT_EQ(decode<MigPrepared>(mpb).populated_bytes, 4096u);
  EXPECT_EQ(decode<MigPrepared>(mpb).flags, kPreparedInstallsFilters);
  mpb.resize(mpb.size() - 1);  // a node that does not install filters
  EXPECT_EQ(decode<MigPrepared>(mpb).flags, 0);
  EXPECT_EQ(decode<MigPrepared>(mpb).mismatched, mp.mismatched);
  mpb.resize(mpb.size() - 2 * 8 - 4);  // what an older node sends
  EXPECT_TRUE(decode<MigPrepared>(mpb).mismatched.empty());
  HomePrepared hp{false, 10, 20, "no", {0x400000}, true};
  auto hpb = encode(hp);
  EXPECT_EQ(decode<HomePrepared>(hpb).mismatched, hp.mismatched);
  EXPECT_TRUE(decode<HomePrepared>(hpb).call_off);
  hpb.resize(hpb.size() - 1);  // an older home: no call_off
  EXPECT_FALSE(decode<HomePrepared>(hpb).call_off);
  EXPECT_EQ(decode<HomePrepared>(hpb).mismatched, hp.mismatched);
  hpb.resize(hpb.size() - 4);  // a count claiming more starts than follow
  EXPECT_THROW(decode<HomePrepared>(hpb), wire::DecodeError);
  HomeDone hd{true, {}, 3};
  auto hdb = encode(hd);
  EXPECT_EQ(decode<HomeDone>(hdb).moved_on_to, 3u);
  hdb.resize(hdb.size() - 4);  // an older home
  EXPECT_EQ(decode<HomeDone>(hdb).moved_on_to, 0u);
  EXPECT_TRUE(decode<HomeDone>(hdb).ok);
  MigOffer offer;
  offer.home_pid = 77;
  offer.flags = kOfferHomePrepares | kOfferDescribesFiles;
  EXPECT_EQ(decode<MigOffer>(encode(offer)).flags, kOfferHomePrepares | kOfferDescribesFiles);
}

}  // namespace roam::msg
