// Workload: a pipe filter driven by a home process.
//   pipe_peer
// Prints "READY <pid>", then reads lines from stdin, each a decimal number N,
// and answers each with "<N*2>\n" on stdout (raw write(), no buffering). At
// EOF on stdin it exits 0 without printing more (a last line without '\n' is
// still answered). SIGUSR1 is only counted. A line that is not a number gets
// "FAIL: bad number '<line>'" and exit 1.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

volatile sig_atomic_t g_usr1 = 0;
void on_usr1(int) { g_usr1 = g_usr1 + 1; }

void say(const char* text, size_t len) {
  while (len > 0) {
    ssize_t n = ::write(1, text, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) _exit(2);  // stdout gone: nothing more to say
    text += n;
    len -= static_cast<size_t>(n);
  }
}

void answer(const std::string& line) {
  std::string s = line;
  if (!s.empty() && s.back() == '\r') s.pop_back();
  const char* p = s.c_str();
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(p, &end, 10);
  bool ok = !s.empty() && end != p && errno == 0;
  while (ok && (*end == ' ' || *end == '\t')) ++end;
  ok = ok && *end == '\0' && v <= (1LL << 62) && v >= -(1LL << 62);
  char out[600];
  if (!ok) {
    int n = std::snprintf(out, sizeof out, "FAIL: bad number '%.500s'\n", s.c_str());
    say(out, static_cast<size_t>(n));
    _exit(1);
  }
  int n = std::snprintf(out, sizeof out, "%lld\n", v * 2);
  say(out, static_cast<size_t>(n));
}

}  // namespace

int main() {
  struct sigaction sa {};
  sa.sa_handler = on_usr1;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, nullptr);
  signal(SIGPIPE, SIG_DFL);
  char ready[64];
  int rn = std::snprintf(ready, sizeof ready, "READY %d\n", static_cast<int>(getpid()));
  say(ready, static_cast<size_t>(rn));

  std::string line;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(0, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int m = std::snprintf(buf, sizeof buf, "FAIL: read stdin: %s\n", std::strerror(errno));
      say(buf, static_cast<size_t>(m));
      return 1;
    }
    if (n == 0) break;
    for (ssize_t i = 0; i < n; ++i) {
      if (buf[i] == '\n') {
        answer(line);
        line.clear();
      } else {
        line.push_back(buf[i]);
      }
    }
  }
  if (!line.empty()) answer(line);
  return 0;
}
