// Workload: the clocks a process reads through the vDSO must stay sane while
// it moves.
//   clock_check
// Every ~1 ms reads CLOCK_MONOTONIC and CLOCK_BOOTTIME with clock_gettime()
// (libc: vDSO) and checks that each reading is >= the previous one of the same
// clock and that no step between consecutive readings exceeds 2 s; records
// the largest step. After SIGUSR1: "PASS max_step_ms=X" or "FAIL: ..." with
// the first bad reading found.
#include <time.h>

#include <cstdint>
#include <cstdio>

#include "workload.hpp"

namespace {

constexpr int64_t kMaxStepNs = 2'000'000'000;

int64_t read_ns(clockid_t clock) {
  timespec ts{};
  if (clock_gettime(clock, &ts) != 0) roam::workload::fail("clock_gettime failed");
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

struct Tracker {
  const char* name;
  clockid_t clock;
  int64_t last = 0;
  int64_t max_step = 0;
  char error[200] = "";

  void sample(unsigned long iteration) {
    int64_t now = read_ns(clock);
    int64_t step = now - last;
    if (error[0] == '\0') {
      if (step < 0)
        std::snprintf(error, sizeof error, "%s went backwards by %lld ns at iteration %lu", name,
                      static_cast<long long>(-step), iteration);
      else if (step > kMaxStepNs)
        std::snprintf(error, sizeof error, "%s jumped forward by %.3f ms at iteration %lu", name,
                      static_cast<double>(step) / 1e6, iteration);
    }
    if (step > max_step) max_step = step;
    last = now;
  }
};

}  // namespace

int main() {
  using namespace roam::workload;
  Tracker mono{"CLOCK_MONOTONIC", CLOCK_MONOTONIC};
  Tracker boot{"CLOCK_BOOTTIME", CLOCK_BOOTTIME};
  mono.last = read_ns(CLOCK_MONOTONIC);
  boot.last = read_ns(CLOCK_BOOTTIME);
  ready();
  unsigned long iterations = 0;
  while (!go()) {
    ++iterations;
    mono.sample(iterations);
    boot.sample(iterations);
    timespec ts{0, 1'000'000};
    nanosleep(&ts, nullptr);
  }
  std::printf("iterations %lu monotonic_max_step_ms=%.3f boottime_max_step_ms=%.3f\n", iterations,
              static_cast<double>(mono.max_step) / 1e6, static_cast<double>(boot.max_step) / 1e6);
  if (mono.error[0] != '\0') fail(mono.error);
  if (boot.error[0] != '\0') fail(boot.error);
  if (iterations == 0) fail("no iterations");
  int64_t max_step = mono.max_step > boot.max_step ? mono.max_step : boot.max_step;
  std::printf("PASS max_step_ms=%.3f\n", static_cast<double>(max_step) / 1e6);
  std::fflush(stdout);
  return 0;
}
