// Workload: appends fixed-width records to a file through an O_APPEND
// descriptor, one every ~1 ms, while the process may move (its file calls then
// run remotely through the proxy).
//   file_append PATH
// The file is created (or truncated) at start. Each record is
// "seq NNNNNNNN\n" (13 bytes); after every write the file's size is checked
// with fstat. After SIGUSR1: stops, closes, re-opens PATH read-only and checks
// that it holds exactly records 0..N-1 in order; prints "PASS N records".
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "workload.hpp"

namespace {

constexpr size_t kRecord = 13;  // "seq " + 8 digits + "\n"

void format_record(char* out, unsigned long seq) {
  char tmp[32];  // 8 digits: wraps after 10^8 records (~28 h at 1 ms)
  std::snprintf(tmp, sizeof tmp, "seq %08lu\n", seq % 100000000UL);
  std::memcpy(out, tmp, kRecord);
}

[[noreturn]] void failf(const char* fmt, unsigned long a, unsigned long b = 0, int err = 0) {
  char why[256];
  int n = std::snprintf(why, sizeof why, fmt, a, b);
  if (err != 0 && n > 0 && static_cast<size_t>(n) < sizeof why)
    std::snprintf(why + n, sizeof why - static_cast<size_t>(n), " (%s)", std::strerror(err));
  roam::workload::fail(why);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace roam::workload;
  if (argc != 2) fail("usage: file_append PATH");
  const char* path = argv[1];
  int fd = ::open(path, O_WRONLY | O_CREAT | O_APPEND | O_TRUNC, 0644);
  if (fd < 0) failf("open for append: errno %lu", static_cast<unsigned long>(errno), 0, errno);
  ready();
  unsigned long count = 0;
  char rec[kRecord];
  while (!go()) {
    format_record(rec, count);
    ssize_t n;
    do n = ::write(fd, rec, kRecord);
    while (n < 0 && errno == EINTR);
    if (n < 0) failf("write of record %lu failed", count, 0, errno);
    if (static_cast<size_t>(n) != kRecord) failf("short write of record %lu: %lu bytes", count, static_cast<unsigned long>(n));
    ++count;
    struct stat st {};
    if (::fstat(fd, &st) != 0) failf("fstat after record %lu failed", count - 1, 0, errno);
    if (static_cast<unsigned long>(st.st_size) != count * kRecord)
      failf("file size %lu after %lu records", static_cast<unsigned long>(st.st_size), count);
    timespec ts{0, 1000000};
    ::nanosleep(&ts, nullptr);  // EINTR (SIGUSR1) just ends the pause early
  }
  if (::close(fd) != 0) failf("close failed: errno %lu", static_cast<unsigned long>(errno), 0, errno);

  int rfd = ::open(path, O_RDONLY);
  if (rfd < 0) failf("re-open read-only: errno %lu", static_cast<unsigned long>(errno), 0, errno);
  std::string data;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(rfd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) failf("read back failed after %lu bytes", static_cast<unsigned long>(data.size()), 0, errno);
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  ::close(rfd);
  if (data.size() != count * kRecord)
    failf("file has %lu bytes, expected %lu", static_cast<unsigned long>(data.size()), count * kRecord);
  for (unsigned long i = 0; i < count; ++i) {
    format_record(rec, i);
    if (std::memcmp(data.data() + i * kRecord, rec, kRecord) != 0) failf("record %lu is wrong (of %lu)", i, count);
  }
  if (count == 0) fail("no records written");
  std::printf("PASS %lu records\n", count);
  std::fflush(stdout);
  return 0;
}
