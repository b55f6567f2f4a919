// The cluster map and the cluster key: a good map parses completely; every
// kind of bad line is refused with "FILE:LINE: reason" naming the right line;
// the key file is checked for length, hex digits and permissions.
#include "roam/config.hpp"

#include <arpa/inet.h>
#include <sys/stat.h>

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "roam/error.hpp"

namespace roam {
namespace {

constexpr char kSource[] = "cluster.conf";

// Parses text that must be refused; checks the message starts with
// "cluster.conf:LINE:" and mentions `needle`.
void expect_refused_at(const std::string& text, int line, const std::string& needle) {
  SCOPED_TRACE(text);
  try {
    parse_cluster_config(text, kSource);
    ADD_FAILURE() << "accepted a bad map";
  } catch (const UserError& e) {
    std::string what = e.what();
    std::string prefix = std::string(kSource) + ":" + std::to_string(line) + ":";
    EXPECT_EQ(what.rfind(prefix, 0), 0u) << "message '" << what << "' should start with '" << prefix << "'";
    EXPECT_NE(what.find(needle), std::string::npos) << "message '" << what << "' should mention '" << needle << "'";
    EXPECT_EQ(what.find('\n'), std::string::npos) << "one line only: " << what;
  }
}

// Two good lines first, so every error below is on line 3 or later.
const std::string kGoodStart =
    "# test cluster\n"
    "node 1 10.0.0.1\n";

TEST(ClusterConfig, GoodMapParsesEveryPart) {
  const std::string text =
      "# roam cluster map\n"
      "\n"
      "gossip.step_ms = 500        # faster than default\n"
      "gossip.window=4\n"
      "  gossip.window_rule = random\n"
      "gossip.target = alive\n"
      "gossip.down_after_steps = 12\n"
      "load.sample_ms = 100\n"
      "node.speed = 20000\n"
      "net.connect_timeout_ms = 750\n"
      "net.max_frame = 65536\n"
      "node 3 192.168.1.3:4701 gpu big-mem rack_2 v1.5\n"
      "node 1 10.0.0.1\n"
      "\tnode   2   [::1]:4700   ipv6   # trailing comment\n"
      "node 65535 fe80::2\n";
  auto cfg = parse_cluster_config(text, kSource);
  EXPECT_EQ(cfg.path, kSource);

  EXPECT_EQ(cfg.settings.gossip_step_ms, 500u);
  EXPECT_EQ(cfg.settings.gossip_window, 4u);
  EXPECT_EQ(cfg.settings.window_rule, WindowRule::random);
  EXPECT_EQ(cfg.settings.target_rule, TargetRule::alive);
  EXPECT_EQ(cfg.settings.down_after_steps, 12u);
  EXPECT_EQ(cfg.settings.load_sample_ms, 100u);
  EXPECT_EQ(cfg.settings.speed, 20000u);
  EXPECT_EQ(cfg.settings.connect_timeout_ms, 750u);
  EXPECT_EQ(cfg.settings.max_frame, 65536u);

  ASSERT_EQ(cfg.nodes.size(), 4u);
  // Sorted by number whatever the order in the file.
  EXPECT_EQ(cfg.nodes[0].number, 1u);
  EXPECT_EQ(cfg.nodes[1].number, 2u);
  EXPECT_EQ(cfg.nodes[2].number, 3u);
  EXPECT_EQ(cfg.nodes[3].number, 65535u);

  EXPECT_EQ(cfg.nodes[0].address, "10.0.0.1");
  EXPECT_EQ(cfg.nodes[0].port, kDefaultPort);
  EXPECT_TRUE(cfg.nodes[0].tags.empty());
  EXPECT_EQ(cfg.nodes[0].config_line, 13);

  EXPECT_EQ(cfg.nodes[1].address, "::1");
  EXPECT_EQ(cfg.nodes[1].port, 4700);
  EXPECT_EQ(cfg.nodes[1].tags, std::vector<std::string>{"ipv6"});
  EXPECT_EQ(cfg.nodes[1].config_line, 14);

  EXPECT_EQ(cfg.nodes[2].address, "192.168.1.3");
  EXPECT_EQ(cfg.nodes[2].port, 4701);
  EXPECT_EQ(cfg.nodes[2].tags, (std::vector<std::string>{"gpu", "big-mem", "rack_2", "v1.5"}));
  EXPECT_TRUE(cfg.nodes[2].has_tag("gpu"));
  EXPECT_FALSE(cfg.nodes[2].has_tag("ipv6"));
  EXPECT_EQ(cfg.nodes[2].config_line, 12);

  EXPECT_EQ(cfg.nodes[3].address, "fe80::2");  // bare IPv6 takes the default port
  EXPECT_EQ(cfg.nodes[3].port, kDefaultPort);

  ASSERT_NE(cfg.find(3), nullptr);
  EXPECT_EQ(cfg.find(3)->port, 4701);
  EXPECT_EQ(cfg.find(4), nullptr);
  EXPECT_EQ(cfg.index_of(65535), 3);
  EXPECT_EQ(cfg.index_of(0), -1);
}

TEST(ClusterConfig, DefaultsHoldWhenNoSettingIsGiven) {
  auto cfg = parse_cluster_config("node 7 127.0.0.1\n", kSource);
  Settings defaults;
  EXPECT_EQ(cfg.settings.gossip_step_ms, defaults.gossip_step_ms);
  EXPECT_EQ(cfg.settings.gossip_window, defaults.gossip_window);
  EXPECT_EQ(cfg.settings.window_rule, WindowRule::freshest);
  EXPECT_EQ(cfg.settings.target_rule, TargetRule::any);
  EXPECT_EQ(cfg.settings.max_frame, defaults.max_frame);
  ASSERT_EQ(cfg.nodes.size(), 1u);
  EXPECT_EQ(cfg.nodes[0].config_line, 1);
}

TEST(ClusterConfig, LastLineWithoutNewlineCounts) {
  auto cfg = parse_cluster_config("node 1 10.0.0.1\nnode 2 10.0.0.2", kSource);
  ASSERT_EQ(cfg.nodes.size(), 2u);
  EXPECT_EQ(cfg.nodes[1].config_line, 2);
}

TEST(ClusterConfig, UnknownSettingIsRefusedAtItsLine) {
  expect_refused_at(kGoodStart + "gossip.stepms = 100\n", 3, "unknown setting 'gossip.stepms'");
  expect_refused_at(kGoodStart + "\n\n= 5\n", 5, "unknown setting");
}

TEST(ClusterConfig, BadSettingValuesAreRefusedAtTheirLine) {
  expect_refused_at(kGoodStart + "gossip.step_ms = fast\n", 3, "bad value 'fast' for gossip.step_ms");
  expect_refused_at(kGoodStart + "gossip.step_ms = 9\n", 3, "10..600000");          // below range
  expect_refused_at(kGoodStart + "gossip.window = 4097\n", 3, "1..4096");           // above range
  expect_refused_at(kGoodStart + "gossip.window = -1\n", 3, "gossip.window");       // negative
  expect_refused_at(kGoodStart + "gossip.window = 12abc\n", 3, "gossip.window");    // trailing junk
  expect_refused_at(kGoodStart + "gossip.window =\n", 3, "bad value ''");           // empty
  expect_refused_at(kGoodStart + "gossip.window_rule = oldest\n", 3, "freshest or random");
  expect_refused_at(kGoodStart + "gossip.target = some\n", 3, "any or alive");
  expect_refused_at(kGoodStart + "net.max_frame = 99999999999999999999\n", 3, "net.max_frame");  // overflows u64
  expect_refused_at("# first\n# second\n# third\nload.sample_ms = 5\nnode 1 10.0.0.1\n", 4, "load.sample_ms");
}

TEST(ClusterConfig, BadNodeNumberIsRefusedAtItsLine) {
  expect_refused_at(kGoodStart + "node 0 10.0.0.2\n", 3, "bad node number '0'");
  expect_refused_at(kGoodStart + "node 65536 10.0.0.2\n", 3, "bad node number '65536'");
  expect_refused_at(kGoodStart + "node two 10.0.0.2\n", 3, "bad node number 'two'");
  expect_refused_at(kGoodStart + "node -3 10.0.0.2\n", 3, "bad node number '-3'");
}

TEST(ClusterConfig, DuplicateNodeIsRefusedNamingBothLines) {
  expect_refused_at(kGoodStart + "node 2 10.0.0.2\n\nnode 1 10.0.0.9\n", 5, "node 1 is listed twice (first at line 2)");
}

TEST(ClusterConfig, DuplicateAddressIsRefusedAtItsLine) {
  expect_refused_at(kGoodStart + "node 2 10.0.0.1\n", 3, "address 10.0.0.1:4660 is already node 1");
  // The default port is the same address as the explicit one.
  expect_refused_at(kGoodStart + "node 2 10.0.0.1:4660\n", 3, "already node 1");
  expect_refused_at("node 1 [::1]:4700\nnode 2 [::1]:4700\n", 2, "already node 1");
}

TEST(ClusterConfig, SameHostOnAnotherPortIsAllowed) {
  auto cfg = parse_cluster_config("node 1 127.0.0.1:5001\nnode 2 127.0.0.1:5002\n", kSource);
  ASSERT_EQ(cfg.nodes.size(), 2u);
  EXPECT_EQ(cfg.nodes[0].port, 5001);
  EXPECT_EQ(cfg.nodes[1].port, 5002);
}

TEST(ClusterConfig, BadAddressIsRefusedAtItsLine) {
  expect_refused_at(kGoodStart + "node 2 host.example.com\n", 3, "bad address 'host.example.com'");
  expect_refused_at(kGoodStart + "node 2 10.0.0.256\n", 3, "bad address '10.0.0.256'");
  expect_refused_at(kGoodStart + "node 2 10.0.0.2:0\n", 3, "bad address '10.0.0.2:0'");
  expect_refused_at(kGoodStart + "node 2 10.0.0.2:65536\n", 3, "bad address");
  expect_refused_at(kGoodStart + "node 2 10.0.0.2:\n", 3, "bad address");
  expect_refused_at(kGoodStart + "node 2 10.0.0.2:port\n", 3, "bad address");
  expect_refused_at(kGoodStart + "node 2 [::1\n", 3, "bad address '[::1'");
  expect_refused_at(kGoodStart + "node 2 [::1]4700\n", 3, "bad address");
  expect_refused_at(kGoodStart + "node 2 []:4700\n", 3, "bad address");
  expect_refused_at(kGoodStart + "node 2 [::g]:4700\n", 3, "bad address '::g'");
}

TEST(ClusterConfig, BadTagIsRefusedAtItsLine) {
  expect_refused_at(kGoodStart + "node 2 10.0.0.2 gpu big/mem\n", 3, "bad tag 'big/mem'");
  expect_refused_at(kGoodStart + "node 2 10.0.0.2 " + std::string(65, 't') + "\n", 3, "bad tag");
  expect_refused_at(kGoodStart + "node 2 10.0.0.2 caf\xc3\xa9\n", 3, "bad tag");
}

TEST(ClusterConfig, NodeWithoutAddressIsRefusedAtItsLine) {
  expect_refused_at(kGoodStart + "node 2\n", 3, "needs a number and an address");
  expect_refused_at(kGoodStart + "node\n", 3, "needs a number and an address");
  expect_refused_at(kGoodStart + "node 2   # address forgotten\n", 3, "needs a number and an address");
}

TEST(ClusterConfig, GarbageWordIsRefusedAtItsLine) {
  expect_refused_at(kGoodStart + "\n  frobnicate 1 2\n", 4, "got 'frobnicate'");
  expect_refused_at(kGoodStart + "Node 2 10.0.0.2\n", 3, "got 'Node'");  // keywords are case-sensitive
}

TEST(ClusterConfig, FirstBadLineIsTheOneReported) {
  expect_refused_at(kGoodStart + "node 2 10.0.0.2\nbogus\nnode 0 x\n", 4, "got 'bogus'");
}

TEST(ClusterConfig, EmptyMapIsRefusedNamingTheFile) {
  for (const std::string text : {"", "\n\n", "# only a comment\n", "gossip.window = 3\n"}) {
    SCOPED_TRACE(text);
    try {
      parse_cluster_config(text, kSource);
      ADD_FAILURE() << "accepted a map without nodes";
    } catch (const UserError& e) {
      std::string what = e.what();
      // No line is at fault, so the message names the file only.
      EXPECT_EQ(what.rfind(std::string(kSource) + ": ", 0), 0u) << what;
      EXPECT_NE(what.find("no 'node' lines"), std::string::npos) << what;
    }
  }
}

TEST(ParseSockaddr, Ipv4AndIpv6AndNames) {
  socklen_t len = 0;
  auto v4 = parse_sockaddr("10.1.2.3", 4700, &len);
  ASSERT_TRUE(v4);
  EXPECT_EQ(len, sizeof(sockaddr_in));
  auto* in4 = reinterpret_cast<const sockaddr_in*>(&*v4);
  EXPECT_EQ(in4->sin_family, AF_INET);
  EXPECT_EQ(ntohs(in4->sin_port), 4700);
  EXPECT_EQ(ntohl(in4->sin_addr.s_addr), 0x0a010203u);

  auto v6 = parse_sockaddr("::1", 4660, &len);
  ASSERT_TRUE(v6);
  EXPECT_EQ(len, sizeof(sockaddr_in6));
  auto* in6 = reinterpret_cast<const sockaddr_in6*>(&*v6);
  EXPECT_EQ(in6->sin6_family, AF_INET6);
  EXPECT_EQ(ntohs(in6->sin6_port), 4660);
  EXPECT_TRUE(IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr));

  EXPECT_TRUE(parse_sockaddr("127.0.0.1", 1, nullptr));  // the length is optional
  EXPECT_FALSE(parse_sockaddr("localhost", 4660, &len));
  EXPECT_FALSE(parse_sockaddr("[::1]", 4660, &len));  // brackets belong to the map syntax only
  EXPECT_FALSE(parse_sockaddr("", 4660, &len));
}

// ---- the key file ----

class ClusterKeyFile : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "roam-config-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr) << "mkdtemp: " << std::strerror(errno);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::filesystem::path write(const std::string& name, const std::string& content, mode_t mode) {
    auto p = dir_ / name;
    std::ofstream(p) << content;
    EXPECT_EQ(::chmod(p.c_str(), mode), 0) << p;
    return p;
  }
  void expect_refused(const std::filesystem::path& p, const std::string& needle) {
    try {
      load_cluster_key(p);
      ADD_FAILURE() << "accepted key file " << p;
    } catch (const UserError& e) {
      std::string what = e.what();
      EXPECT_NE(what.find(p.string()), std::string::npos) << "should name the file: " << what;
      EXPECT_NE(what.find(needle), std::string::npos) << "should mention '" << needle << "': " << what;
    }
  }
  std::filesystem::path dir_;
};

constexpr char kHex[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

TEST_F(ClusterKeyFile, GoodKeyLoads) {
  auto key = load_cluster_key(write("key", std::string(kHex) + "\n", 0600));
  for (size_t i = 0; i < key.size(); ++i) EXPECT_EQ(key[i], i) << "byte " << i;
}

TEST_F(ClusterKeyFile, GoodKeyWithoutNewlineOrWithUppercaseLoads) {
  auto a = load_cluster_key(write("a", kHex, 0400));
  std::string upper = kHex;
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  auto b = load_cluster_key(write("b", "  " + upper + "  \n", 0600));
  EXPECT_EQ(a, b);
  EXPECT_EQ(a[31], 0x1f);
}

TEST_F(ClusterKeyFile, GeneratedKeyLoadsBack) {
  std::string hex = generate_key_hex();
  ASSERT_EQ(hex.size(), 2 * kKeyBytes);
  for (char c : hex) EXPECT_TRUE(std::isxdigit(static_cast<unsigned char>(c))) << hex;
  EXPECT_NE(hex, generate_key_hex()) << "two generated keys are equal";
  auto key = load_cluster_key(write("key", hex + "\n", 0600));
  EXPECT_EQ(std::stoul(hex.substr(0, 2), nullptr, 16), key[0]);
  EXPECT_EQ(std::stoul(hex.substr(62, 2), nullptr, 16), key[31]);
}

TEST_F(ClusterKeyFile, WrongLengthIsRefused) {
  std::string hex = kHex;
  expect_refused(write("short", hex.substr(0, 62) + "\n", 0600), "64 hexadecimal digits");
  expect_refused(write("odd", hex.substr(0, 63) + "\n", 0600), "64 hexadecimal digits");
  expect_refused(write("long", hex + "00\n", 0600), "64 hexadecimal digits");
  expect_refused(write("empty", "", 0600), "64 hexadecimal digits");
}

TEST_F(ClusterKeyFile, NonHexIsRefused) {
  std::string hex = kHex;
  hex[40] = 'g';
  expect_refused(write("g", hex + "\n", 0600), "64 hexadecimal digits");
  hex = kHex;
  hex[0] = ' ';
  hex[1] = ':';
  expect_refused(write("colon", hex + "\n", 0600), "64 hexadecimal digits");
}

TEST_F(ClusterKeyFile, KeyReadableByOthersIsRefused) {
  expect_refused(write("0644", std::string(kHex) + "\n", 0644), "chmod 600");
  expect_refused(write("0640", std::string(kHex) + "\n", 0640), "mode 640");
  expect_refused(write("0602", std::string(kHex) + "\n", 0602), "readable by others");
}

TEST_F(ClusterKeyFile, MissingKeyIsRefused) { expect_refused(dir_ / "absent", "cannot read cluster key"); }

}  // namespace
}  // namespace roam
