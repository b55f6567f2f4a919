// The life cycle every roam workload program follows (after CRIU's zdtm):
//   1. set up state;
//   2. print "READY <pid>" on stdout;
//   3. keep working until SIGUSR1 arrives (a migration test moves the process
//      meanwhile);
//   4. verify the state survived and print "PASS" (exit 0) or "FAIL: why"
//      (exit 1).
#pragma once

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace roam::workload {

inline volatile sig_atomic_t g_go = 0;

inline void on_go(int) { g_go = 1; }

// Installs the SIGUSR1 handler and announces readiness.
inline void ready() {
  struct sigaction sa {};
  sa.sa_handler = on_go;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, nullptr);
  std::printf("READY %d\n", static_cast<int>(getpid()));
  std::fflush(stdout);
}

inline bool go() { return g_go != 0; }

[[noreturn]] inline void pass() {
  std::printf("PASS\n");
  std::fflush(stdout);
  std::exit(0);
}

[[noreturn]] inline void fail(const char* why) {
  std::printf("FAIL: %s\n", why);
  std::fflush(stdout);
  std::exit(1);
}

// One line on stdout, flushed at once (the test waits for it).
inline void say_line(const char* line) {
  std::printf("%s\n", line);
  std::fflush(stdout);
}

// The one argument of the workloads whose handlers run with SA_RESTART or
// without: "restart" (true) or "norestart" (false); anything else fails.
inline bool restart_argument(int argc, char** argv, const char* name) {
  if (argc == 2 && std::strcmp(argv[1], "restart") == 0) return true;
  if (argc == 2 && std::strcmp(argv[1], "norestart") == 0) return false;
  char usage[128];
  std::snprintf(usage, sizeof usage, "usage: %s restart|norestart", name);
  fail(usage);
}

// Installs `handler` for `sig`, with SA_RESTART or without.
inline void handle(int sig, void (*handler)(int), bool restart) {
  struct sigaction sa {};
  sa.sa_handler = handler;
  sa.sa_flags = restart ? SA_RESTART : 0;
  sigemptyset(&sa.sa_mask);
  if (sigaction(sig, &sa, nullptr) != 0) fail("sigaction");
}

}  // namespace roam::workload
