// Workload: a CPU loop with a running checksum. The checksum computed while
// the process may move is compared with one recomputed at the end.
#include <cstdint>
#include <cstdio>

#include "workload.hpp"

namespace {
uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}
}  // namespace

int main() {
  using namespace roam::workload;
  ready();
  uint64_t sum = 0, rounds = 0;
  while (!go()) {
    for (int i = 0; i < 100000; ++i) sum = mix(sum + rounds * 100000 + static_cast<uint64_t>(i));
    ++rounds;
  }
  uint64_t check = 0;
  for (uint64_t r = 0; r < rounds; ++r)
    for (int i = 0; i < 100000; ++i) check = mix(check + r * 100000 + static_cast<uint64_t>(i));
  std::printf("rounds %llu\n", static_cast<unsigned long long>(rounds));
  if (check != sum) fail("checksum changed");
  pass();
}
