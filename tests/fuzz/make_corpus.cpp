// Writes the seed corpus for wire_fuzz: valid frames of the messages a peer
// or tool sends, so the fuzzer starts from inputs that pass the decoders.
// Built by hand, not by CMake; run once when the message format changes:
//   c++ -std=c++20 -Ioscore/include -o /tmp/make_corpus tests/fuzz/make_corpus.cpp
//       oscore/src/wire.cpp oscore/src/messages.cpp -lfmt     (one command line)
//   /tmp/make_corpus tests/fuzz/corpus
// Besides these, tests/fuzz/corpus holds regress_* files: inputs the fuzzer
// once failed on, kept as regressions. Nothing else belongs there (`make
// fuzz` writes what it finds to tests/fuzz/corpus-run, which is ignored).
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "roam/messages.hpp"
#include "roam/wire.hpp"

namespace {

using Bytes = std::vector<std::byte>;

template <typename M>
Bytes framed(const M& m) {
  return roam::wire::frame(roam::msg::encode(m));
}

void write(const std::filesystem::path& dir, const std::string& name, const Bytes& data) {
  std::ofstream out(dir / name, std::ios::binary);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  if (!out) {
    std::fprintf(stderr, "make_corpus: cannot write %s\n", (dir / name).c_str());
    std::exit(1);
  }
}

roam::msg::LoadInfo load(uint32_t n) {
  return {.load = 120 + n, .free_mem = 3ull << 30, .total_mem = 16ull << 30, .ncpus = 8, .speed = 10000, .procs = n};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_corpus DIR\n");
    return 2;
  }
  std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);
  using namespace roam::msg;

  Hello hello;
  hello.features = roam::wire::kFeatGossip;
  hello.node = 3;
  for (size_t i = 0; i < hello.nonce.size(); ++i) hello.nonce[i] = static_cast<unsigned char>(i * 37 + 11);
  write(dir, "hello", framed(hello));

  Auth auth;
  for (size_t i = 0; i < auth.mac.size(); ++i) auth.mac[i] = static_cast<unsigned char>(i);
  for (size_t i = 0; i < auth.stream_header.size(); ++i) auth.stream_header[i] = static_cast<unsigned char>(~i);
  Bytes hello_auth = framed(hello);
  auto a = framed(auth);
  hello_auth.insert(hello_auth.end(), a.begin(), a.end());
  write(dir, "hello_auth", hello_auth);

  Gossip gossip;
  for (uint32_t n = 1; n <= 4; ++n) gossip.entries.push_back({n, n * 900, load(n)});
  write(dir, "gossip", framed(gossip));

  StatusReply status;
  status.self = 1;
  status.hostname = "node1";
  status.step_ms = 1000;
  status.window = 8;
  status.down_after_steps = 20;
  status.uptime_ms = 123456;
  status.gossip_sent = 99;
  status.gossip_received = 98;
  status.rejected = 1;
  status.nodes.push_back({1, "10.0.0.1:4660", {"gpu"}, true, true, true, 0, load(1)});
  status.nodes.push_back({2, "[::1]:4700", {}, false, true, false, 30000, load(2)});
  write(dir, "status_reply", framed(status));

  PsReply ps;
  ps.self = 1;
  ps.procs.push_back({4242, 7, 1, 2, "away", "./sim 1000", "node 2 had the lowest load", 1 << 20});
  write(dir, "ps_reply", framed(ps));

  // A tool's session: several frames in one stream.
  Bytes session = framed(CtlHello{});
  for (auto& f : {framed(StatusRequest{}), framed(RegisterJob{"make -j8"}), framed(RegisterJobReply{77}),
                  framed(ErrorReply{"no such node"}), framed(PsRequest{})})
    session.insert(session.end(), f.begin(), f.end());
  write(dir, "ctl_session", session);
  return 0;
}
