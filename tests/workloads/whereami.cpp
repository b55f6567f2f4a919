// Workload: reports what the process sees of where it lives, each time it
// gets SIGUSR2 (so a test can ask while it is away): hostname (uname), cwd,
// pid, whether /tmp/roam-marker exists (the node's private /tmp), a readdir
// of /tmp/roam-dir (-1 when absent), an epoll/pipe round trip and isatty(0).
// Ends on SIGUSR1.
#include <dirent.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstring>

#include "workload.hpp"

namespace {

volatile sig_atomic_t g_ask = 0;
void on_ask(int) { g_ask = 1; }

void report() {
  utsname u{};
  uname(&u);
  char cwd[PATH_MAX] = "?";
  if (!getcwd(cwd, sizeof cwd)) std::strcpy(cwd, "?");
  struct stat st {};
  bool marker = stat("/tmp/roam-marker", &st) == 0;

  int entries = -1;
  if (DIR* d = opendir("/tmp/roam-dir")) {
    entries = 0;
    while (readdir(d)) ++entries;
    closedir(d);
  }
  int p[2];
  bool epoll_ok = false;
  if (pipe2(p, O_CLOEXEC) == 0) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = 77;
    epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
    if (write(p[1], "x", 1) == 1) {
      epoll_event out{};
      epoll_ok = epoll_wait(ep, &out, 1, 1000) == 1 && out.data.u32 == 77;
    }
    close(ep);
    close(p[0]);
    close(p[1]);
  }
  std::printf("host %s cwd %s pid %d marker %d entries %d epoll %d tty %d\n", u.nodename, cwd, (int)getpid(),
              marker ? 1 : 0, entries, epoll_ok ? 1 : 0, isatty(0));
  std::fflush(stdout);
}

}  // namespace

int main() {
  using namespace roam::workload;
  struct sigaction sa {};
  sa.sa_handler = on_ask;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR2, &sa, nullptr);
  ready();
  report();
  while (!go()) {
    if (g_ask) {
      g_ask = 0;
      report();
    }
    usleep(2000);
  }
  pass();
}
