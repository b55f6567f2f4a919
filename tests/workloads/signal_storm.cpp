// Workload: receives a storm of signals (from tests/workloads/signal_sender)
// while it computes, and may move meanwhile.
//   signal_storm [instant]
// Handlers: SIGUSR2 (counted; SA_RESTART) and SIGRTMIN (SA_SIGINFO; counts
// the queued signals and sums their si_value.sival_int). Keeps a CPU loop with
// a checksum going. With `instant` the handlers are installed without
// SA_RESTART and every round also calls times(), getrusage() and
// clock_gettime(CLOCK_PROCESS_CPUTIME_ID): calls that never block, so no
// signal may make them fail (EINTR), whichever node serves them. After SIGUSR1 it lets signals still pending arrive, then
// prints "COUNTS usr2=<n> rt=<n> rtsum=<sum>" and PASS if the checksum
// recomputed matches (the test compares the counts with the sender's).
#include <signal.h>
#include <sys/resource.h>
#include <sys/times.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <atomic>
#include <cstdint>
#include <cstdio>

#include "workload.hpp"

namespace {

std::atomic<long> g_usr2{0}, g_rt{0}, g_rtsum{0};
static_assert(std::atomic<long>::is_always_lock_free);

void on_usr2(int) { g_usr2.fetch_add(1, std::memory_order_relaxed); }

void on_rt(int, siginfo_t* info, void*) {
  g_rt.fetch_add(1, std::memory_order_relaxed);
  g_rtsum.fetch_add(info->si_value.sival_int, std::memory_order_relaxed);
}

uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}

// The calls that never block; "" or why one failed.
const char* instant_calls() {
  static char why[160];
  errno = 0;
  tms t{};
  clock_t r = times(&t);
  // glibc hides times()'s errors but EFAULT: an interrupted call shows as
  // a negative errno value returned, or errno set.
  if (r == static_cast<clock_t>(-1) || (r < 0 && r > -4096) || errno != 0) {
    std::snprintf(why, sizeof why, "times() returned %ld (errno %d)", static_cast<long>(r), errno);
    return why;
  }
  rusage u{};
  if (getrusage(RUSAGE_SELF, &u) != 0) {
    std::snprintf(why, sizeof why, "getrusage failed: %s", std::strerror(errno));
    return why;
  }
  timespec ts{};
  if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) {
    std::snprintf(why, sizeof why, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed: %s", std::strerror(errno));
    return why;
  }
  return "";
}

bool signals_pending() {
  sigset_t set;
  sigemptyset(&set);
  sigpending(&set);
  return sigismember(&set, SIGUSR2) == 1 || sigismember(&set, SIGRTMIN) == 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace roam::workload;
  bool instant = argc > 1 && std::strcmp(argv[1], "instant") == 0;
  int restart = instant ? 0 : SA_RESTART;
  struct sigaction sa {};
  sa.sa_handler = on_usr2;
  sa.sa_flags = restart;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGUSR2, &sa, nullptr) != 0) fail("sigaction SIGUSR2");
  struct sigaction rt {};
  rt.sa_sigaction = on_rt;
  rt.sa_flags = SA_SIGINFO | restart;
  sigemptyset(&rt.sa_mask);
  if (sigaction(SIGRTMIN, &rt, nullptr) != 0) fail("sigaction SIGRTMIN");

  ready();
  uint64_t sum = 0, rounds = 0;
  unsigned long calls = 0;
  while (!go()) {
    for (int i = 0; i < 10000; ++i) sum = mix(sum + rounds * 10000 + static_cast<uint64_t>(i));
    ++rounds;
    if (instant) {
      if (const char* why = instant_calls(); *why != 0) fail(why);
      ++calls;
    }
  }
  // Signals sent before SIGUSR1 but still pending are delivered on the next
  // return to user mode; wait a little for any still in flight.
  for (int i = 0; i < 100 && signals_pending(); ++i) {
    timespec ts{0, 1000000};
    nanosleep(&ts, nullptr);
  }
  timespec settle{0, 20000000};
  nanosleep(&settle, nullptr);

  uint64_t check = 0;
  for (uint64_t r = 0; r < rounds; ++r)
    for (int i = 0; i < 10000; ++i) check = mix(check + r * 10000 + static_cast<uint64_t>(i));
  std::printf("COUNTS usr2=%ld rt=%ld rtsum=%ld\n", g_usr2.load(), g_rt.load(), g_rtsum.load());
  std::printf("rounds %llu\n", static_cast<unsigned long long>(rounds));
  if (instant) std::printf("instant call rounds %lu\n", calls);
  if (check != sum) fail("checksum changed");
  pass();
}
