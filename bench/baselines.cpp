// The baselines every roam benchmark is measured against, taken in the same
// run on the same machine: loopback TCP round trip and bandwidth, the
// seccomp user-notification round trip (same CPU and across CPUs, with and
// without SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP), and memcpy bandwidth.
// Later benchmarks (forwarded system calls, migration freeze time) print
// their ratio against these.
#include <CLI/CLI.hpp>

#include "baselines.hpp"

using namespace roam;
using namespace roam::bench;

int main(int argc, char** argv) {
  CLI::App app{"baselines: loopback TCP, seccomp notification and memcpy, measured now"};
  int iters = 20000;
  size_t mib = 256;
  app.add_option("--iters", iters, "round trips per latency measurement")->capture_default_str();
  app.add_option("--mib", mib, "MiB per bandwidth measurement")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  int other = std::thread::hardware_concurrency() > 1 ? 1 : 0;
  try {
    std::printf("%-52s %12s\n", "baseline", "value");
    std::printf("%-52s %9.2f us\n", "loopback TCP round trip, 64 B, same CPU", tcp_round_trip_us(iters, 0, 0));
    std::printf("%-52s %9.2f us\n", "loopback TCP round trip, 64 B, across CPUs", tcp_round_trip_us(iters, 0, other));
    std::printf("%-52s %9.0f MB/s\n", fmt::format("loopback TCP bandwidth, {} MiB", mib).c_str(), tcp_bandwidth_mbs(mib << 20));
    std::printf("%-52s %9.2f us\n", "seccomp notification round trip, same CPU", seccomp_round_trip_us(iters, 0, 0, false));
    std::printf("%-52s %9.2f us\n", "seccomp notification, same CPU, SYNC_WAKE_UP", seccomp_round_trip_us(iters, 0, 0, true));
    std::printf("%-52s %9.2f us\n", "seccomp notification round trip, across CPUs", seccomp_round_trip_us(iters, 0, other, false));
    std::printf("%-52s %9.2f us\n", "seccomp notification, across CPUs, SYNC_WAKE_UP", seccomp_round_trip_us(iters, 0, other, true));
    std::printf("%-52s %9.0f MB/s\n", fmt::format("memcpy, {} MiB", mib).c_str(), memcpy_mbs(mib << 20));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "baselines: %s\n", e.what());
    return 1;
  }
  return 0;
}
