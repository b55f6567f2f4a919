// Workload: a file size limit (RLIMIT_FSIZE) set while away applies to the
// process's writes at home as Linux applies it.
//   fsize_limit FILE
// Prints "READY <pid>", waits for SIGUSR1 (the test moves it meanwhile),
// then: opens FILE (truncated), sets RLIMIT_FSIZE to 4096, ignores SIGXFSZ
// and writes 8192 bytes: the write must stop at the limit (4096). A second
// write must fail with EFBIG ("EFBIG"). Then SIGXFSZ gets its default
// action back and one more byte is written: the process must die of
// SIGXFSZ there (the test expects that death); returning is a FAIL.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "workload.hpp"

int main(int argc, char** argv) {
  using namespace roam::workload;
  if (argc != 2) fail("usage: fsize_limit FILE");
  ready();
  while (!go()) ::pause();

  int fd = ::open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("open");
  rlimit lim{4096, 4096};
  if (::setrlimit(RLIMIT_FSIZE, &lim) != 0) fail("setrlimit");
  ::signal(SIGXFSZ, SIG_IGN);
  std::vector<char> data(8192, 'f');
  ssize_t n = ::write(fd, data.data(), data.size());
  char why[128];
  if (n != 4096) {
    std::snprintf(why, sizeof why, "a write past the limit returned %zd (%s), not 4096", n,
                  n < 0 ? std::strerror(errno) : "short");
    fail(why);
  }
  n = ::write(fd, data.data(), 1);
  if (n != -1 || errno != EFBIG) {
    std::snprintf(why, sizeof why, "a write at the limit returned %zd (%s), not EFBIG", n,
                  n < 0 ? std::strerror(errno) : "written");
    fail(why);
  }
  std::printf("EFBIG\n");
  std::fflush(stdout);
  ::signal(SIGXFSZ, SIG_DFL);
  n = ::write(fd, data.data(), 1);
  std::snprintf(why, sizeof why, "a write at the limit with SIGXFSZ's default action returned %zd (%s)", n,
                n < 0 ? std::strerror(errno) : "written");
  fail(why);
}
