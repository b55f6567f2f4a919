// Workload: values held live in x87 and SSE/AVX registers across the wait
// (the loop keeps them in registers, never in memory), checked at the end.
#include <immintrin.h>

#include <cstring>

#include "workload.hpp"

__attribute__((target("avx"))) static bool avx_loop() {
  __m256d a = _mm256_set_pd(1.5, 2.5, 3.5, 4.5);
  __m256d one = _mm256_set1_pd(1.0);
  long n = 0;
  while (!roam::workload::go()) {
    // Add one and take it away again: the register must hold its value.
    a = _mm256_add_pd(a, one);
    a = _mm256_sub_pd(a, one);
    asm volatile("" : "+x"(a));
    ++n;
  }
  double out[4];
  _mm256_storeu_pd(out, a);
  return out[0] == 4.5 && out[1] == 3.5 && out[2] == 2.5 && out[3] == 1.5 && n > 0;
}

static bool sse_x87_loop() {
  long double x = 1.0L / 3.0L;
  __m128i v = _mm_set_epi32(0x11111111, 0x22222222, 0x33333333, 0x44444444);
  while (!roam::workload::go()) {
    asm volatile("" : "+t"(x));
    asm volatile("" : "+x"(v));
  }
  int out[4];
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), v);
  return x == 1.0L / 3.0L && out[0] == 0x44444444 && out[3] == 0x11111111;
}

int main() {
  using namespace roam::workload;
  ready();
  bool ok = __builtin_cpu_supports("avx") ? avx_loop() : sse_x87_loop();
  if (!ok) fail("register contents changed");
  pass();
}
