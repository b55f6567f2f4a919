// Workload for the deputy/body split (tests/unit/split_test.cpp): every kind
// of call the first slice serves, on descriptors opened at home before the
// split and on one opened after it by path.
//   split_io APPEND_FILE OTHER_FILE [fork]
// Before READY: opens APPEND_FILE for append and /dev/null. After SIGUSR1:
// writes "line N" lines to APPEND_FILE, prints its pid, parent and uid, echoes
// a line read from stdin, prints OTHER_FILE's content, times 1-byte writes to
// /dev/null and getpid() calls, and exits with code 3 (a status the test can tell from PASS/FAIL).
// With "fork" it forks right after SIGUSR1 instead (a call that must go home).
// With "signals" it counts signals after SIGUSR1 instead: it prints "armed",
// then serves commands read from stdin: "count" prints what its handlers
// saw, "spin" prints "spinning" and spins until SIGRTMIN+1 arrives, then
// prints "t NS" (CLOCK_MONOTONIC when that handler ran), "wait" does the
// same asleep in sigsuspend, "exit" exits 3.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "workload.hpp"

namespace {

void say(const char* text) {
  size_t len = std::strlen(text);
  while (len > 0) {
    ssize_t n = ::write(1, text, len);
    if (n <= 0) _exit(1);
    text += n;
    len -= static_cast<size_t>(n);
  }
}

double now_us() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

volatile sig_atomic_t g_usr2 = 0, g_int = 0, g_rt = 0, g_rt_sum = 0, g_last_pid = 0, g_last_uid = 0,
                      g_last_code = 0;
volatile sig_atomic_t g_lat = 0;
volatile long long g_lat_ns = 0;

void on_signal(int sig, siginfo_t* info, void*) {
  if (sig == SIGUSR2) g_usr2 = g_usr2 + 1;
  if (sig == SIGINT) g_int = g_int + 1;
  if (sig == SIGRTMIN) {
    g_rt = g_rt + 1;
    g_rt_sum = g_rt_sum + info->si_value.sival_int;
  }
  if (sig == SIGRTMIN + 1) {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    g_lat_ns = static_cast<long long>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
    g_lat = g_lat + 1;
  }
  g_last_pid = info->si_pid;
  g_last_uid = static_cast<sig_atomic_t>(info->si_uid);
  g_last_code = info->si_code;
}

bool read_line(char* out, size_t size) {
  size_t got = 0;
  while (got + 1 < size) {
    ssize_t n = ::read(0, out + got, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    if (out[got] == '\n') break;
    got += static_cast<size_t>(n);
  }
  out[got] = '\0';
  return true;
}

[[noreturn]] void count_signals() {
  struct sigaction sa {};
  sa.sa_sigaction = on_signal;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGUSR2, SIGINT, SIGRTMIN, SIGRTMIN + 1}) sigaction(sig, &sa, nullptr);
  say("armed\n");
  char cmd[64], buf[256];
  while (read_line(cmd, sizeof cmd)) {
    if (std::strcmp(cmd, "count") == 0) {
      std::snprintf(buf, sizeof buf, "usr2 %d int %d rt %d sum %d pid %d uid %d code %d\n", int(g_usr2), int(g_int),
                    int(g_rt), int(g_rt_sum), int(g_last_pid), int(g_last_uid), int(g_last_code));
      say(buf);
    } else if (std::strcmp(cmd, "spin") == 0) {
      sig_atomic_t before = g_lat;
      say("spinning\n");
      double until = now_us() + 10e6;
      while (g_lat == before && now_us() < until) {
      }
      std::snprintf(buf, sizeof buf, "t %lld\n", static_cast<long long>(g_lat == before ? -1 : g_lat_ns));
      say(buf);
    } else if (std::strcmp(cmd, "wait") == 0) {
      sig_atomic_t before = g_lat;
      sigset_t none;
      sigemptyset(&none);
      say("waiting\n");
      while (g_lat == before) sigsuspend(&none);
      std::snprintf(buf, sizeof buf, "t %lld\n", static_cast<long long>(g_lat_ns));
      say(buf);
    } else if (std::strcmp(cmd, "exit") == 0) {
      _exit(3);
    }
  }
  _exit(5);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace roam::workload;
  if (argc != 3 && argc != 4) fail("usage: split_io APPEND_FILE OTHER_FILE [fork|signals]");
  int log_fd = ::open(argv[1], O_WRONLY | O_APPEND | O_CREAT, 0644);
  int null_fd = ::open("/dev/null", O_WRONLY);
  if (log_fd < 0 || null_fd < 0) fail("open at home");

  sigset_t usr1, old;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  sigprocmask(SIG_BLOCK, &usr1, &old);
  ready();
  sigset_t waiting = old;
  sigdelset(&waiting, SIGUSR1);
  while (!go()) sigsuspend(&waiting);
  if (argc == 4 && std::strcmp(argv[3], "fork") == 0) {
    pid_t child = fork();
    if (child == 0) _exit(0);
    say("forked\n");
    _exit(4);
  }
  if (argc == 4 && std::strcmp(argv[3], "signals") == 0) count_signals();

  char buf[256];
  for (int i = 0; i < 5; ++i) {
    int n = std::snprintf(buf, sizeof buf, "line %d\n", i);
    if (::write(log_fd, buf, static_cast<size_t>(n)) != n) fail("write to the append file");
  }
  std::snprintf(buf, sizeof buf, "offset %lld\n", static_cast<long long>(::lseek(log_fd, 0, SEEK_CUR)));
  say(buf);
  struct stat by_fd {}, by_path {};
  if (fstat(log_fd, &by_fd) < 0 || stat(argv[2], &by_path) < 0) fail("stat");
  std::snprintf(buf, sizeof buf, "sizes %lld %lld\n", static_cast<long long>(by_fd.st_size),
                static_cast<long long>(by_path.st_size));
  say(buf);
  std::snprintf(buf, sizeof buf, "pid %d\n", static_cast<int>(getpid()));
  say(buf);
  std::snprintf(buf, sizeof buf, "ppid %d uid %d\n", static_cast<int>(getppid()), static_cast<int>(getuid()));
  say(buf);

  char in[128] = {};
  size_t got = 0;
  while (got + 1 < sizeof in) {
    ssize_t n = ::read(0, in + got, 1);
    if (n <= 0 || in[got] == '\n') break;
    got += static_cast<size_t>(n);
  }
  in[got] = '\0';
  std::snprintf(buf, sizeof buf, "stdin %s\n", in);
  say(buf);

  int other = ::open(argv[2], O_RDONLY | O_CLOEXEC);
  if (other < 0) fail("open the other file");
  char content[128] = {};
  ssize_t n = ::read(other, content, sizeof content - 1);
  if (n < 0) fail("read the other file");
  ::close(other);
  if (n > 0 && content[n - 1] == '\n') content[n - 1] = '\0';
  std::snprintf(buf, sizeof buf, "other %s\n", content);
  say(buf);

  constexpr int kWrites = 2000;
  double t = now_us();
  for (int i = 0; i < kWrites; ++i)
    if (::write(null_fd, "x", 1) != 1) fail("write to /dev/null");
  double write_us = (now_us() - t) / kWrites;
  t = now_us();
  for (int i = 0; i < kWrites; ++i)
    if (getpid() <= 0) fail("getpid");
  double getpid_us = (now_us() - t) / kWrites;
  std::snprintf(buf, sizeof buf, "write_us %.3f getpid_us %.3f\n", write_us, getpid_us);
  say(buf);
  _exit(3);
}
