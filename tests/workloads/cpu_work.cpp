// Workload: a fixed amount of CPU work, for the balancing benchmark.
// UNITS (argument) units of kStepsPerUnit steps of a 64-bit linear
// congruential generator, one long dependency chain. The result is checked
// against the same count of steps computed in O(log n) by composing the
// affine map with itself, so a move that lost or repeated work, or corrupted a
// register, prints FAIL. Single-threaded and never forks, so roam may move it
// at any time. Prints "elapsed SECONDS cpu SECONDS" (wall and CPU time of the
// work) and PASS, exit 0; FAIL: why, exit 1.
#include <time.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "workload.hpp"

namespace {

constexpr uint64_t kMul = 6364136223846793005ULL;  // Knuth's MMIX constants
constexpr uint64_t kAdd = 1442695040888963407ULL;
constexpr uint64_t kStepsPerUnit = uint64_t{1} << 22;
constexpr uint64_t kSeed = 0x726f616d;  // "roam"

// x -> mul*x + add, modulo 2^64.
struct Affine {
  uint64_t mul = 1, add = 0;
  uint64_t operator()(uint64_t x) const { return mul * x + add; }
};

// `second` after `first`.
Affine then(Affine first, Affine second) { return {second.mul * first.mul, second.mul * first.add + second.add}; }

Affine power(Affine f, uint64_t n) {
  Affine result;
  for (; n; n >>= 1) {
    if (n & 1) result = then(result, f);
    f = then(f, f);
  }
  return result;
}

double now_s(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace roam::workload;
  char* end = nullptr;
  uint64_t units = argc == 2 ? std::strtoull(argv[1], &end, 10) : 0;
  if (argc != 2 || *end != '\0' || units == 0) {
    std::fprintf(stderr, "usage: cpu_work UNITS (a positive number of work units)\n");
    return 2;
  }
  double start = now_s(CLOCK_MONOTONIC), start_cpu = now_s(CLOCK_PROCESS_CPUTIME_ID);
  // volatile between units: the compiler may not fold the chain.
  volatile uint64_t state = kSeed;
  for (uint64_t u = 0; u < units; ++u) {
    uint64_t x = state;
    for (uint64_t i = 0; i < kStepsPerUnit; ++i) x = kMul * x + kAdd;
    state = x;
  }
  double elapsed = now_s(CLOCK_MONOTONIC) - start, cpu = now_s(CLOCK_PROCESS_CPUTIME_ID) - start_cpu;
  uint64_t expected = power(Affine{kMul, kAdd}, units * kStepsPerUnit)(kSeed);
  std::printf("elapsed %.3f cpu %.3f\n", elapsed, cpu);
  if (state != expected) fail("checksum differs from the closed form");
  pass();
}
