// Workload: a blocking read() on stdin interrupted by a signal.
//   blocking_read restart|norestart
// Installs a counting SIGUSR2 handler (with SA_RESTART for "restart",
// without for "norestart"), prints "READY <pid>", then blocks in
// read(0, buf, 100) on stdin (a pipe the test controls).
//   norestart: the test sends SIGUSR2 while nothing is written; read must
//     fail with EINTR (prints "EINTR"); it reads again and must get "hello\n";
//     then PASS.
//   restart: the test sends SIGUSR2, then writes "hello\n"; read must not
//     return before the data; it must return "hello\n" and the handler must
//     have run (prints "HANDLER <n>"); then PASS.
// No SIGUSR1 life cycle: PASS or "FAIL: why" when done.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "workload.hpp"

namespace {

volatile sig_atomic_t g_usr2 = 0;
void on_usr2(int) { g_usr2 = g_usr2 + 1; }

// Reads on after a first chunk until a newline (or EOF), in case the line
// arrives in pieces; a further EINTR here is a failure in restart mode only.
std::string finish_line(std::string got, bool restart) {
  char buf[100];
  while (got.find('\n') == std::string::npos) {
    ssize_t n = ::read(0, buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      if (restart) roam::workload::fail("read returned EINTR despite SA_RESTART");
      continue;
    }
    if (n < 0) roam::workload::fail("read error");
    if (n == 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

void check_hello(const std::string& data) {
  if (data != "hello\n") {
    char why[200];
    std::snprintf(why, sizeof why, "read %zu bytes, expected \"hello\\n\": \"%.100s\"", data.size(), data.c_str());
    roam::workload::fail(why);
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace roam::workload;
  bool restart = restart_argument(argc, argv, "blocking_read");
  handle(SIGUSR2, on_usr2, restart);
  std::printf("READY %d\n", static_cast<int>(getpid()));
  std::fflush(stdout);

  char buf[100];
  ssize_t n = ::read(0, buf, 100);
  int err = errno;
  if (!restart) {
    if (n >= 0) {
      char why[160];
      std::snprintf(why, sizeof why, "first read returned %zd (not EINTR), handler ran %d times", n,
                    static_cast<int>(g_usr2));
      fail(why);
    }
    if (err != EINTR) {
      char why[160];
      std::snprintf(why, sizeof why, "first read failed with %s, not EINTR", std::strerror(err));
      fail(why);
    }
    if (g_usr2 < 1) fail("EINTR but the handler did not run");
    std::printf("EINTR\n");
    std::fflush(stdout);
    ssize_t m;
    do m = ::read(0, buf, 100);
    while (m < 0 && errno == EINTR);
    if (m < 0) fail("second read failed");
    if (m == 0) fail("EOF instead of the data line");
    check_hello(finish_line(std::string(buf, static_cast<size_t>(m)), false));
    pass();
  }
  if (n < 0 && err == EINTR) fail("read returned EINTR despite SA_RESTART");
  if (n < 0) fail("read failed");
  if (n == 0) fail("EOF instead of the data line");
  std::string data = finish_line(std::string(buf, static_cast<size_t>(n)), true);
  std::printf("HANDLER %d\n", static_cast<int>(g_usr2));
  std::fflush(stdout);
  if (g_usr2 < 1) fail("the handler did not run before the data arrived");
  check_hello(data);
  pass();
}
