// Workload: a process's own CPU-time readings stay true while it moves.
//   cpu_clocks
// Burns CPU and, every ~2 ms of it, reads its CPU time four ways:
// clock_gettime(CLOCK_PROCESS_CPUTIME_ID), clock_gettime(CLOCK_THREAD_CPUTIME_ID),
// getrusage(RUSAGE_SELF) user + system, times() user + system. Each must
// never go backwards (times() within one clock tick, its resolution), and
// none may exceed the wall time since the process started (no usage counted
// twice). Prints "READY" once it used 300 ms at home; after SIGUSR1 it burns
// 200 ms more and checks that every reading grew by at least 150 ms, then
// prints "PASS cpu_ms=X" or "FAIL: ..." with the first bad reading.
#include <sys/resource.h>
#include <sys/times.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>

#include "workload.hpp"

namespace {

int64_t clock_ns(clockid_t c) {
  timespec ts{};
  if (clock_gettime(c, &ts) != 0) roam::workload::fail("clock_gettime failed");
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

int64_t rusage_ns() {
  rusage r{};
  if (getrusage(RUSAGE_SELF, &r) != 0) roam::workload::fail("getrusage failed");
  auto us = [](const timeval& t) { return static_cast<int64_t>(t.tv_sec) * 1'000'000 + t.tv_usec; };
  return (us(r.ru_utime) + us(r.ru_stime)) * 1000;
}

const int64_t kTickNs = 1'000'000'000 / sysconf(_SC_CLK_TCK);

int64_t times_ns() {
  tms t{};
  if (times(&t) == static_cast<clock_t>(-1)) roam::workload::fail("times failed");
  return static_cast<int64_t>(t.tms_utime + t.tms_stime) * kTickNs;
}

struct Reading {
  const char* name;
  int64_t (*read)();
  int64_t slack;  // how far back a reading may seem to go (resolution)
  int64_t last = 0;
};

int64_t process_clock() { return clock_ns(CLOCK_PROCESS_CPUTIME_ID); }
int64_t thread_clock() { return clock_ns(CLOCK_THREAD_CPUTIME_ID); }

Reading g_readings[] = {{"CLOCK_PROCESS_CPUTIME_ID", process_clock, 0},
                        {"CLOCK_THREAD_CPUTIME_ID", thread_clock, 0},
                        {"getrusage", rusage_ns, 1000},
                        {"times", times_ns, kTickNs}};
int64_t g_start_wall = 0;
volatile uint64_t g_sink = 0;

void check_all(unsigned long iteration) {
  int64_t wall = clock_ns(CLOCK_MONOTONIC) - g_start_wall;
  for (Reading& r : g_readings) {
    int64_t now = r.read();
    char why[200];
    if (now + r.slack < r.last) {
      std::snprintf(why, sizeof why, "%s went back from %lld to %lld ns at iteration %lu", r.name,
                    static_cast<long long>(r.last), static_cast<long long>(now), iteration);
      roam::workload::fail(why);
    }
    // 2 ticks of slack for the coarse readings; the wall clock since start
    // bounds the CPU time of a single thread.
    if (now > wall + 2 * kTickNs + 50'000'000) {
      std::snprintf(why, sizeof why, "%s says %lld ns used in %lld ns of wall time", r.name,
                    static_cast<long long>(now), static_cast<long long>(wall));
      roam::workload::fail(why);
    }
    if (now > r.last) r.last = now;
  }
}

// Burns CPU until the process clock passed `until_ns`, checking as it goes.
void burn_until(int64_t until_ns, unsigned long& iteration) {
  while (clock_ns(CLOCK_PROCESS_CPUTIME_ID) < until_ns) {
    int64_t step_end = clock_ns(CLOCK_PROCESS_CPUTIME_ID) + 2'000'000;
    while (clock_ns(CLOCK_PROCESS_CPUTIME_ID) < step_end)
      for (int i = 0; i < 1000; ++i) g_sink = g_sink * 6364136223846793005ull + 1;
    check_all(++iteration);
  }
}

}  // namespace

int main() {
  using namespace roam::workload;
  // The process's start, not main's: CPU time before main counts too.
  g_start_wall = clock_ns(CLOCK_MONOTONIC) - process_clock();
  unsigned long iteration = 0;
  burn_until(300'000'000, iteration);
  ready();
  // Keeps checking, lightly, while it is moved around.
  while (!go()) {
    check_all(++iteration);
    timespec ts{0, 5'000'000};
    nanosleep(&ts, nullptr);
  }
  int64_t before[4];
  for (int i = 0; i < 4; ++i) before[i] = g_readings[i].read();
  burn_until(process_clock() + 200'000'000, iteration);
  for (int i = 0; i < 4; ++i) {
    int64_t grew = g_readings[i].read() - before[i];
    if (grew < 150'000'000) {
      char why[200];
      std::snprintf(why, sizeof why, "%s grew by only %lld ns over 200 ms of CPU", g_readings[i].name,
                    static_cast<long long>(grew));
      fail(why);
    }
  }
  std::printf("PASS cpu_ms=%lld iterations=%lu\n", static_cast<long long>(process_clock() / 1'000'000), iteration);
  std::fflush(stdout);
  return 0;
}
