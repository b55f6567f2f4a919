// Workload: a TCP client of an echo server (tests/workloads/tcp_echo.cpp).
//   tcp_client HOST PORT        (HOST: numeric IPv4)
// Connects, prints "READY <pid>", then every ~2 ms sends
// "msg N <payload>\n" (payload: 1..4096 pseudo-random printable bytes), reads
// until the whole echo is back and compares it byte by byte. After SIGUSR1
// (the exchange under way is finished first) it prints "PASS N" with the
// number of messages echoed, or "FAIL: why".
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "workload.hpp"

namespace {

[[noreturn]] void failf(const char* fmt, unsigned long a, unsigned long b = 0, unsigned long c = 0) {
  char why[256];
  std::snprintf(why, sizeof why, fmt, a, b, c);
  roam::workload::fail(why);
}

uint64_t g_rng = 0;
uint64_t next_rand() {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return g_rng;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace roam::workload;
  if (argc != 3) fail("usage: tcp_client HOST PORT");
  signal(SIGPIPE, SIG_IGN);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  long port = std::strtol(argv[2], nullptr, 10);
  if (port <= 0 || port > 65535) fail("bad port");
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) fail("bad IPv4 address");
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail("socket");
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    char why[128];
    std::snprintf(why, sizeof why, "connect: %s", std::strerror(errno));
    fail(why);
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  timespec seed{};
  clock_gettime(CLOCK_REALTIME, &seed);
  g_rng = (static_cast<uint64_t>(seed.tv_nsec) << 20) ^ static_cast<uint64_t>(getpid()) ^ 0x9e3779b97f4a7c15ULL;
  if (g_rng == 0) g_rng = 1;

  ready();
  unsigned long count = 0;
  std::string msg;
  std::vector<char> echo;
  while (!go()) {
    size_t payload = 1 + next_rand() % 4096;
    char head[48];
    int hn = std::snprintf(head, sizeof head, "msg %lu ", count);
    msg.assign(head, static_cast<size_t>(hn));
    for (size_t i = 0; i < payload; ++i) msg.push_back(static_cast<char>('!' + next_rand() % 94));
    msg.push_back('\n');

    size_t sent = 0;
    while (sent < msg.size()) {
      ssize_t n = ::send(fd, msg.data() + sent, msg.size() - sent, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) failf("send of message %lu failed: errno %lu", count, static_cast<unsigned long>(errno));
      if (n == 0) failf("send of message %lu returned 0", count);
      sent += static_cast<size_t>(n);
    }
    echo.assign(msg.size(), 0);
    size_t got = 0;
    while (got < msg.size()) {
      ssize_t n = ::recv(fd, echo.data() + got, msg.size() - got, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) failf("recv of echo %lu failed: errno %lu", count, static_cast<unsigned long>(errno));
      if (n == 0) failf("server closed the connection during echo %lu (%lu of %lu bytes)", count, got, msg.size());
      got += static_cast<size_t>(n);
    }
    if (std::memcmp(echo.data(), msg.data(), msg.size()) != 0) {
      size_t at = 0;
      while (echo[at] == msg[at]) ++at;
      failf("echo %lu differs at byte %lu of %lu", count, at, msg.size());
    }
    ++count;
    timespec ts{0, 2000000};
    ::nanosleep(&ts, nullptr);
  }
  // Nothing more may arrive: every byte sent was echoed exactly once.
  char extra;
  ssize_t n = ::recv(fd, &extra, 1, MSG_DONTWAIT);
  if (n > 0) fail("unexpected extra bytes from the server");
  ::close(fd);
  if (count == 0) fail("no message echoed");
  std::printf("PASS %lu\n", count);
  std::fflush(stdout);
  return 0;
}
