// usage_of() against the kernel's own figures for this process, and the
// arithmetic the agents use to carry usage across moves.
#include "roam/usage.hpp"

#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <gtest/gtest.h>

namespace roam {
namespace {

uint64_t own_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000 + static_cast<uint64_t>(ts.tv_nsec);
}

void burn(uint64_t ns) {
  volatile uint64_t x = 1;
  uint64_t until = own_cpu_ns() + ns;
  while (own_cpu_ns() < until)
    for (int i = 0; i < 1000; ++i) x = x * 3 + 1;
}

TEST(Usage, MatchesTheKernelsFiguresForThisProcess) {
  burn(50'000'000);
  uint64_t before = own_cpu_ns();
  auto u = usage_of(::getpid());
  uint64_t after = own_cpu_ns();
  ASSERT_TRUE(u);
  // The CPU clock, read between our two readings.
  EXPECT_GE(u->cpu_ns(), before);
  EXPECT_LE(u->cpu_ns(), after);
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  EXPECT_GT(u->maxrss_kib, 0u);
  EXPECT_NEAR(static_cast<double>(u->maxrss_kib), static_cast<double>(r.ru_maxrss), 4096);
  EXPECT_GE(u->minflt, 1u);
  EXPECT_LE(u->minflt, static_cast<uint64_t>(r.ru_minflt));
  EXPECT_LE(u->nvcsw + u->nivcsw, static_cast<uint64_t>(r.ru_nvcsw + r.ru_nivcsw));
}

TEST(Usage, CountsReapedChildren) {
  pid_t c = fork();
  ASSERT_GE(c, 0);
  if (c == 0) {
    burn(30'000'000);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(c, &status, 0), c);
  auto u = usage_of(::getpid());
  ASSERT_TRUE(u);
  // Tick resolution: 30 ms of CPU shows as at least 10 ms of it.
  EXPECT_GE(u->child_user_ns + u->child_sys_ns, 10'000'000u);
}

TEST(Usage, AGoneProcessHasNone) {
  pid_t c = fork();
  ASSERT_GE(c, 0);
  if (c == 0) _exit(0);
  waitpid(c, nullptr, 0);
  EXPECT_FALSE(usage_of(c));
}

TEST(Usage, SumsAndDifferencesKeepTheCpuTimeAndThePeak) {
  CpuUsage home{.user_ns = 300, .sys_ns = 100, .minflt = 5, .maxrss_kib = 800};
  CpuUsage body{.user_ns = 1000, .sys_ns = 20, .minflt = 7, .maxrss_kib = 500};
  CpuUsage all = home;
  all += body;
  EXPECT_EQ(all.cpu_ns(), 1420u);
  EXPECT_EQ(all.minflt, 12u);
  EXPECT_EQ(all.maxrss_kib, 800u);  // a peak, not a sum
  CpuUsage away = beyond(all, home);
  EXPECT_EQ(away.cpu_ns(), body.cpu_ns());
  EXPECT_EQ(away.minflt, 7u);
  EXPECT_EQ(away.maxrss_kib, 0u);  // the home figure already shows the peak
  // Never negative.
  EXPECT_EQ(beyond(home, all).cpu_ns(), 0u);
}

TEST(Usage, RusageAndTmsConversions) {
  CpuUsage u{.user_ns = 1'234'567'890, .sys_ns = 20'000'000, .child_user_ns = 3'000'000'000, .maxrss_kib = 77};
  rusage r = to_rusage(u, false);
  EXPECT_EQ(r.ru_utime.tv_sec, 1);
  EXPECT_EQ(r.ru_utime.tv_usec, 234567);
  EXPECT_EQ(r.ru_stime.tv_usec, 20000);
  EXPECT_EQ(r.ru_maxrss, 77);
  rusage c = to_rusage(u, true);
  EXPECT_EQ(c.ru_utime.tv_sec, 3);
  tms t = to_tms(u);
  long hz = sysconf(_SC_CLK_TCK);
  EXPECT_EQ(t.tms_utime, static_cast<clock_t>(1'234'567'890 / (1'000'000'000 / hz)));
  EXPECT_EQ(t.tms_cutime, static_cast<clock_t>(3 * hz));
}

}  // namespace
}  // namespace roam
