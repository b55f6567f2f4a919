// Workload for the migration benchmarks: answers commands on stdin, one
// line each, timing what it is asked to do wherever it runs:
//   write N     N one-byte writes to /dev/null (forwarded: the home agent's fast path)
//   fcntl N     N fcntl(F_GETFD) (forwarded: injected into the deputy)
//   getuid N    N getuid() (virtual: answered by the remote agent)
//   spin MS     a CPU-bound loop for MS milliseconds: iterations per second
//   quit
// Prints "READY <pid>" first, then one result line per command.
#include <fcntl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>

namespace {

double now_us() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}

}  // namespace

int main() {
  int null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (null_fd < 0) return 2;
  std::printf("READY %d\n", static_cast<int>(getpid()));
  std::fflush(stdout);
  char line[128];
  while (std::fgets(line, sizeof line, stdin)) {
    char cmd[32] = {};
    long n = 0;
    if (std::sscanf(line, "%31s %ld", cmd, &n) < 1) continue;
    if (std::strcmp(cmd, "quit") == 0) return 0;
    double t = now_us();
    if (std::strcmp(cmd, "write") == 0) {
      for (long i = 0; i < n; ++i)
        if (write(null_fd, "x", 1) != 1) return 3;
      std::printf("us %.3f\n", (now_us() - t) / static_cast<double>(n));
    } else if (std::strcmp(cmd, "fcntl") == 0) {
      for (long i = 0; i < n; ++i)
        if (fcntl(null_fd, F_GETFD) < 0) return 4;
      std::printf("us %.3f\n", (now_us() - t) / static_cast<double>(n));
    } else if (std::strcmp(cmd, "getuid") == 0) {
      for (long i = 0; i < n; ++i) syscall(SYS_getuid);
      std::printf("us %.3f\n", (now_us() - t) / static_cast<double>(n));
    } else if (std::strcmp(cmd, "spin") == 0) {
      uint64_t x = 1, iters = 0;
      double end = t + static_cast<double>(n) * 1000.0;
      double now = t;
      while (now < end) {
        for (int i = 0; i < 10000; ++i) x = mix(x + static_cast<uint64_t>(i));
        iters += 10000;
        now = now_us();
      }
      std::printf("rate %.0f %llu\n", static_cast<double>(iters) / ((now - t) / 1e6),
                  static_cast<unsigned long long>(x & 1));
    } else {
      std::printf("unknown %s\n", cmd);
    }
    std::fflush(stdout);
  }
  return 0;
}
