// Workload: writes that block at home while the process is away, and a
// write to a pipe nobody reads.
//   blocking_write restart|norestart
// Sets up, at home (fork cannot run away): a pipe whose reader is a child
// that reads nothing until it gets SIGUSR1, then reads to the end and
// prints "CHILD READ <bytes>"; a second pipe with no reader at all. Installs
// a counting SIGUSR2 handler (SA_RESTART for "restart") that prints
// "HANDLER <n>". Prints "READY <pid>" and "CHILD <pid>", waits for SIGUSR1
// (the test moves it meanwhile). Then:
//   fills the pipe without blocking (O_NONBLOCK for the filling only) and
//   prints "FULL <bytes>", then "WRITE" and write()s 64 KiB more, which must
//   block: nobody reads.
//   norestart: the test's SIGUSR2 ends it with EINTR, nothing written
//   ("write EINTR", signal(7): a handler interrupts a blocked pipe write).
//   It is written again, and blocks again.
//   restart: the handler runs and the write goes on blocking.
//   Either way the test then sends the child SIGUSR1: the child drains the
//   pipe, the write completes whole ("write done 65536"), and the child must
//   have read every byte once the writer closes ("CHILD READ" = FULL +
//   65536, checked by the test).
//   Last, "SIGPIPE": a write to the pipe without a reader. SIGPIPE's default
//   action kills the process there (the test expects death by SIGPIPE); the
//   program must never see the EPIPE ("FAIL: write to a closed pipe
//   returned").
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "workload.hpp"

namespace {

volatile sig_atomic_t g_usr2 = 0;
volatile sig_atomic_t g_drain = 0;

void on_usr2(int) {
  int n = g_usr2 + 1;
  g_usr2 = n;
  char line[] = "HANDLER 0\n";
  line[8] = static_cast<char>('0' + n % 10);
  ssize_t ignored = ::write(1, line, sizeof line - 1);
  (void)ignored;
}

void on_drain(int) { g_drain = 1; }

}  // namespace

int main(int argc, char** argv) {
  using namespace roam::workload;
  bool restart = restart_argument(argc, argv, "blocking_write");

  int data[2], dead[2];
  if (::pipe(data) != 0 || ::pipe(dead) != 0) fail("pipe");
  ::close(dead[0]);  // no reader, ever
  struct sigaction drain {};
  drain.sa_handler = on_drain;
  sigemptyset(&drain.sa_mask);
  if (sigaction(SIGUSR1, &drain, nullptr) != 0) fail("sigaction");
  pid_t child = ::fork();
  if (child < 0) fail("fork");
  if (child == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::close(data[1]);
    ::close(dead[1]);
    while (!g_drain) ::pause();
    std::vector<char> buf(1 << 16);
    long total = 0;
    for (;;) {
      ssize_t n = ::read(data[0], buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      total += n;
    }
    std::printf("CHILD READ %ld\n", total);
    std::fflush(stdout);
    ::_exit(0);
  }
  ::close(data[0]);

  handle(SIGUSR2, on_usr2, restart);
  ready();
  std::printf("CHILD %d\n", static_cast<int>(child));
  std::fflush(stdout);
  while (!go()) ::pause();

  // Fill the pipe: with O_NONBLOCK only for this.
  int flags = ::fcntl(data[1], F_GETFL);
  if (::fcntl(data[1], F_SETFL, flags | O_NONBLOCK) != 0) fail("fcntl O_NONBLOCK");
  std::vector<char> chunk(4096, 'x');
  long full = 0;
  for (;;) {
    ssize_t n = ::write(data[1], chunk.data(), chunk.size());
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) fail("filling the pipe failed");
    full += n;
  }
  if (::fcntl(data[1], F_SETFL, flags) != 0) fail("fcntl");
  std::printf("FULL %ld\n", full);
  std::fflush(stdout);

  std::vector<char> more(1 << 16, 'y');
  say_line("WRITE");
  ssize_t n = ::write(data[1], more.data(), more.size());
  if (!restart) {
    if (n >= 0) {
      char why[96];
      std::snprintf(why, sizeof why, "the blocked write returned %zd instead of failing with EINTR", n);
      fail(why);
    }
    if (errno != EINTR) fail("the blocked write failed, but not with EINTR");
    if (g_usr2 != 1) fail("write returned EINTR without the handler having run");
    say_line("write EINTR");
    n = ::write(data[1], more.data(), more.size());
  }
  if (n != static_cast<ssize_t>(more.size())) {
    char why[96];
    std::snprintf(why, sizeof why, "the write returned %zd, not %zu", n, more.size());
    fail(why);
  }
  if (g_usr2 != 1) fail("the handler did not run exactly once");
  std::printf("write done %zd\n", n);
  std::fflush(stdout);
  ::close(data[1]);
  int status = 0;
  if (::waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail("the reading child did not end well");

  say_line("SIGPIPE");
  ssize_t w = ::write(dead[1], "z", 1);
  char why[96];
  std::snprintf(why, sizeof why, "write to a closed pipe returned %zd (%s)", w, w < 0 ? std::strerror(errno) : "");
  fail(why);
}
