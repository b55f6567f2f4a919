// Workload: MIB mebibytes (argument, default 64) filled with a pattern that
// depends on each word's address, kept and rewritten while waiting; every
// word is checked at the end.
#include <sys/mman.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "workload.hpp"

int main(int argc, char** argv) {
  using namespace roam::workload;
  size_t mib = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 64;
  size_t words = mib * 1024 * 1024 / sizeof(uint64_t);
  auto* mem = static_cast<uint64_t*>(mmap(nullptr, words * sizeof(uint64_t), PROT_READ | PROT_WRITE,
                                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (mem == MAP_FAILED) fail("mmap");
  uint64_t generation = 1;
  auto fill = [&] {
    for (size_t i = 0; i < words; ++i) mem[i] = (i * 0x9e3779b97f4a7c15ULL) ^ generation;
  };
  fill();
  ready();
  while (!go()) {
    ++generation;
    fill();
  }
  for (size_t i = 0; i < words; ++i)
    if (mem[i] != ((i * 0x9e3779b97f4a7c15ULL) ^ generation)) fail("memory pattern changed");
  std::printf("generations %llu\n", static_cast<unsigned long long>(generation));
  pass();
}
