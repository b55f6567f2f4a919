// Workload: system calls that block at home while the process is away,
// each interrupted by a signal sent to its home pid.
//   blocking_calls restart|norestart
// Sets up (at home: fork cannot run away) a pipe nobody writes, a TCP socket
// listening on 127.0.0.1 (any port) and a child that sleeps until it is
// killed; installs a counting SIGUSR2 handler (with SA_RESTART for
// "restart") that writes "HANDLER <n>" when it runs. Prints "READY <pid>",
// "PORT <port>" and "CHILD <pid>", and waits for SIGUSR1 (the test moves it
// meanwhile). Then, each announced by a line of its own:
//   "POLL": poll() on the pipe, no timeout. A handler ends it with EINTR,
//     SA_RESTART or not (signal(7)): prints "poll EINTR".
//   "ACCEPT": accept() on the socket. norestart: it fails with EINTR
//     ("accept EINTR") and is called again; restart: it goes on. Either way
//     it must accept the test's connection, which sends "hi" (then "accept
//     restarted" or "accept done").
//   "WAIT": wait4() on the child. norestart: EINTR ("wait4 EINTR"), called
//     again; restart: it goes on. Either way it must reap the child, which
//     the test kills with SIGTERM (then "wait4 restarted" or "wait4 done").
// The handler must have run once for each (before the call returned), and
// never more. Then PASS, or "FAIL: why".
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "workload.hpp"

namespace {

volatile sig_atomic_t g_usr2 = 0;

// Only async-signal-safe calls here: the count is formatted by hand.
void on_usr2(int) {
  int n = g_usr2 + 1;
  g_usr2 = n;
  char line[32] = "HANDLER ";
  std::size_t at = 8;
  char digits[12];
  std::size_t d = 0;
  do {
    digits[d++] = static_cast<char>('0' + n % 10);
    n /= 10;
  } while (n > 0 && d < sizeof digits);
  while (d > 0) line[at++] = digits[--d];
  line[at++] = '\n';
  ssize_t ignored = ::write(1, line, at);
  (void)ignored;
}

[[noreturn]] __attribute__((format(printf, 1, 2))) void failf(const char* fmt, ...) {
  char why[256];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  roam::workload::fail(why);
}

// The handler ran exactly `want` times so far.
void handled(int want, const char* call) {
  if (g_usr2 != want)
    failf("%s returned with the handler run %d times, not %d", call, static_cast<int>(g_usr2), want);
}

// A call the signal must have failed with EINTR.
void expect_eintr(long rc, int err, const char* call, int handler_runs) {
  if (rc >= 0) failf("%s returned %ld instead of failing with EINTR", call, rc);
  if (err != EINTR) failf("%s failed with %s, not EINTR", call, std::strerror(err));
  handled(handler_runs, call);
  char line[64];
  std::snprintf(line, sizeof line, "%s EINTR", call);
  roam::workload::say_line(line);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace roam::workload;
  bool restart = restart_argument(argc, argv, "blocking_calls");

  int quiet[2];
  if (::pipe(quiet) != 0) fail("pipe");
  int lsock = ::socket(AF_INET, SOCK_STREAM, 0);
  if (lsock < 0) fail("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t alen = sizeof addr;
  if (::bind(lsock, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) fail("bind");
  if (::listen(lsock, 4) != 0) fail("listen");
  if (::getsockname(lsock, reinterpret_cast<sockaddr*>(&addr), &alen) != 0) fail("getsockname");
  pid_t child = ::fork();
  if (child < 0) fail("fork");
  if (child == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    for (;;) ::pause();
  }

  handle(SIGUSR2, on_usr2, restart);
  ready();
  std::printf("PORT %d\nCHILD %d\n", ntohs(addr.sin_port), static_cast<int>(child));
  std::fflush(stdout);
  while (!go()) ::pause();

  say_line("POLL");
  pollfd p{quiet[0], POLLIN, 0};
  int rc = ::poll(&p, 1, -1);
  expect_eintr(rc, errno, "poll", 1);

  say_line("ACCEPT");
  int conn = ::accept(lsock, nullptr, nullptr);
  if (!restart) {
    expect_eintr(conn, errno, "accept", 2);
    conn = ::accept(lsock, nullptr, nullptr);
  }
  if (conn < 0) failf("accept failed: %s", std::strerror(errno));
  handled(2, "accept");
  char hi[3] = {};
  std::size_t got = 0;
  while (got < 2) {
    ssize_t n = ::read(conn, hi + got, 2 - got);
    if (n <= 0) fail("the accepted connection ended before \"hi\"");
    got += static_cast<std::size_t>(n);
  }
  if (std::strcmp(hi, "hi") != 0) failf("the accepted connection sent \"%s\", not \"hi\"", hi);
  ::close(conn);
  say_line(restart ? "accept restarted" : "accept done");

  say_line("WAIT");
  int status = 0;
  rusage ru{};
  pid_t w = ::wait4(child, &status, 0, &ru);
  if (!restart) {
    expect_eintr(w, errno, "wait4", 3);
    w = ::wait4(child, &status, 0, &ru);
  }
  if (w != child) failf("wait4 returned %d: %s", static_cast<int>(w), w < 0 ? std::strerror(errno) : "not the child");
  handled(3, "wait4");
  if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGTERM) fail("the child did not die of SIGTERM");
  say_line(restart ? "wait4 restarted" : "wait4 done");
  pass();
}
