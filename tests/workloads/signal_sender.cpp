// Helper for signal_storm: sends a signal storm to a process.
//   signal_sender PID N
// Sends N SIGUSR2 with kill() and N SIGRTMIN with sigqueue(value = i + 1),
// i in 0..N-1, interleaved, ~100 us apart; then prints
// "SENT usr2=N rt=N rtsum=<sum of values>". A sigqueue() refused with EAGAIN
// (the receiver's queue is full) is retried after a pause; any other error
// prints "FAIL: why" and exits 1.
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::printf("FAIL: usage: signal_sender PID N\n");
    return 1;
  }
  pid_t pid = static_cast<pid_t>(std::strtol(argv[1], nullptr, 10));
  long n = std::strtol(argv[2], nullptr, 10);
  if (pid <= 0 || n < 0) {
    std::printf("FAIL: bad arguments\n");
    return 1;
  }
  long usr2 = 0, rt = 0, rtsum = 0;
  for (long i = 0; i < n; ++i) {
    if (kill(pid, SIGUSR2) != 0) {
      std::printf("FAIL: kill #%ld: %s\n", i, std::strerror(errno));
      return 1;
    }
    ++usr2;
    union sigval v {};
    v.sival_int = static_cast<int>(i + 1);
    int tries = 0;
    while (sigqueue(pid, SIGRTMIN, v) != 0) {
      if (errno != EAGAIN || ++tries > 10000) {
        std::printf("FAIL: sigqueue #%ld: %s\n", i, std::strerror(errno));
        return 1;
      }
      timespec ts{0, 1000000};
      nanosleep(&ts, nullptr);
    }
    ++rt;
    rtsum += i + 1;
    timespec ts{0, 100000};
    nanosleep(&ts, nullptr);
  }
  std::printf("SENT usr2=%ld rt=%ld rtsum=%ld\n", usr2, rt, rtsum);
  return 0;
}
