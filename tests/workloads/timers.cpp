// Workload: an interval timer (setitimer ITIMER_REAL, SIGALRM) and a POSIX
// timer (CLOCK_MONOTONIC, SIGRTMIN+2) both firing every 10 ms, counted by
// their handlers while the program spins. After SIGUSR1 it checks that both
// kept firing at about their rate since start (no timer lost by a move, none
// doubled) and that the POSIX timer is still its own (timer_gettime works).
#include <signal.h>
#include <sys/time.h>
#include <time.h>

#include <cstdio>

#include "workload.hpp"

namespace {

volatile sig_atomic_t g_alrm = 0, g_rt = 0;
void on_alrm(int) { g_alrm = g_alrm + 1; }
void on_rt(int) { g_rt = g_rt + 1; }

double now_s() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

}  // namespace

int main() {
  using namespace roam::workload;
  struct sigaction sa {};
  sa.sa_handler = on_alrm;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGALRM, &sa, nullptr);
  sa.sa_handler = on_rt;
  sigaction(SIGRTMIN + 2, &sa, nullptr);
  itimerval it{{0, 10000}, {0, 10000}};
  if (setitimer(ITIMER_REAL, &it, nullptr) != 0) fail("setitimer");
  sigevent ev{};
  ev.sigev_notify = SIGEV_SIGNAL;
  ev.sigev_signo = SIGRTMIN + 2;
  timer_t timer;
  if (timer_create(CLOCK_MONOTONIC, &ev, &timer) != 0) fail("timer_create");
  itimerspec its{{0, 10000000}, {0, 10000000}};
  if (timer_settime(timer, 0, &its, nullptr) != 0) fail("timer_settime");
  double start = now_s();
  ready();
  volatile unsigned long spin = 0;
  while (!go()) spin = spin + 1;
  double secs = now_s() - start;
  int alrm = g_alrm, rt = g_rt;
  itimerspec left{};
  if (timer_gettime(timer, &left) != 0) fail("timer_gettime after the moves");
  itimerval itl{};
  getitimer(ITIMER_REAL, &itl);
  std::printf("ran %.2f s: SIGALRM %d, timer %d (expected about %.0f each)\n", secs, alrm, rt, secs * 100);
  // Moves freeze the process for a while (the timers do not run then), and
  // this VM is noisy: between a third and 1.1x the ideal count.
  double ideal = secs * 100;
  if (alrm < ideal / 3 || alrm > ideal * 1.1 + 5) fail("SIGALRM count off: lost or doubled");
  if (rt < ideal / 3 || rt > ideal * 1.1 + 5) fail("POSIX timer count off: lost or doubled");
  if (left.it_interval.tv_nsec != 10000000) fail("the POSIX timer's interval changed");
  if (itl.it_interval.tv_usec != 10000) fail("the interval timer's interval changed");
  pass();
}
