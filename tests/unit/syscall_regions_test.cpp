// The memory regions of forwarded calls (oscore/include/roam/syscall_regions.hpp),
// described over this test's own memory: nested pointers are real pointers
// here, and an unmapped or PROT_NONE page really faults.
#include "roam/syscall_regions.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <termios.h>
#include <unistd.h>

#include <cstring>
#include <initializer_list>
#include <ostream>
#include <string_view>

#include <gtest/gtest.h>

#include "roam/syscalls.hpp"

namespace roam::fwd {

bool operator==(const Region& a, const Region& b) { return a.addr == b.addr && a.len == b.len && a.dir == b.dir; }

std::ostream& operator<<(std::ostream& os, const Region& r) {
  return os << "{" << std::hex << r.addr << std::dec << ", " << r.len << ", " << static_cast<int>(r.dir) << "}";
}

namespace {

// process_vm_readv on ourselves reports a fault instead of taking SIGSEGV.
bool read_self(uint64_t addr, void* out, std::size_t n) {
  iovec local{out, n};
  iovec remote{reinterpret_cast<void*>(addr), n};
  return process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == static_cast<ssize_t>(n);
}

uint64_t p(const void* ptr) { return reinterpret_cast<uint64_t>(ptr); }

struct Args {
  uint64_t a[6] = {};
  Args(std::initializer_list<uint64_t> values) {
    size_t i = 0;
    for (uint64_t v : values) a[i++] = v;
  }
};

Description run(std::string_view name, Args args) {
  int nr = syscall_number(name);
  EXPECT_GE(nr, 0) << name;
  return describe(nr, args.a, read_self);
}

using V = std::vector<Region>;
constexpr Dir I = Dir::in, O = Dir::out, IO = Dir::inout;

#define EXPECT_REGIONS(d, ...)          \
  do {                                  \
    auto d_ = (d);                      \
    EXPECT_TRUE(d_.ok) << d_.why;       \
    EXPECT_FALSE(d_.fault);             \
    EXPECT_EQ(d_.regions, (V{__VA_ARGS__})); \
  } while (0)

// Two pages, the second PROT_NONE: a string can end right before it.
struct GuardedPage {
  char* base = nullptr;
  long page = sysconf(_SC_PAGESIZE);
  GuardedPage() {
    void* m = mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(m, MAP_FAILED);
    base = static_cast<char*>(m);
    EXPECT_EQ(mprotect(base + page, page, PROT_NONE), 0);
  }
  ~GuardedPage() { munmap(base, 2 * page); }
  char* guard() const { return base + page; }
};

TEST(SyscallRegions, ReadWritePread) {
  char buf[100];
  EXPECT_REGIONS(run("read", {3, p(buf), 100}), {p(buf), 100, O});
  EXPECT_REGIONS(run("write", {1, p(buf), 7}), {p(buf), 7, I});
  EXPECT_REGIONS(run("pread64", {3, p(buf), 50, 4096}), {p(buf), 50, O});
  EXPECT_REGIONS(run("read", {3, p(buf), 0}));   // zero length: nothing
  EXPECT_REGIONS(run("write", {1, 0, 10}));      // NULL: the deputy sees NULL
}

TEST(SyscallRegions, ReadvWritevFollowTheIovecArray) {
  char a[10], b[20];
  iovec iov[3] = {{a, sizeof a}, {nullptr, 0}, {b, sizeof b}};
  EXPECT_REGIONS(run("readv", {3, p(iov), 3}), {p(iov), sizeof iov, I}, {p(a), 10, O}, {p(b), 20, O});
  EXPECT_REGIONS(run("writev", {3, p(iov), 3}), {p(iov), sizeof iov, I}, {p(a), 10, I}, {p(b), 20, I});
  EXPECT_REGIONS(run("readv", {3, p(iov), 5000}));  // over UIO_MAXIOV: EINVAL unread
}

TEST(SyscallRegions, OpenatStringIncludesTheNul) {
  const char* path = "/etc/hostname";
  EXPECT_REGIONS(run("openat", {uint64_t(AT_FDCWD), p(path), O_RDONLY}), {p(path), 14, I});
}

TEST(SyscallRegions, StringEndingRightBeforeAnUnmappedPage) {
  GuardedPage g;
  char* s = g.guard() - 6;
  std::memcpy(s, "/tmp/", 6);  // the NUL is the page's last byte
  EXPECT_REGIONS(run("openat", {uint64_t(AT_FDCWD), p(s), 0}), {p(s), 6, I});

  // Spanning a page boundary into the readable page works too.
  char* t = g.base + g.page - 3000;
  std::memset(t, 'a', 2999);
  t[2999] = 0;
  EXPECT_REGIONS(run("open", {p(t), 0}), {p(t), 3000, I});
}

TEST(SyscallRegions, UnterminatedStringRunningIntoAGuardFaults) {
  GuardedPage g;
  char* s = g.guard() - 4;
  std::memcpy(s, "abcd", 4);  // no NUL before PROT_NONE
  auto d = run("openat", {uint64_t(AT_FDCWD), p(s), 0});
  EXPECT_FALSE(d.ok);
  EXPECT_TRUE(d.fault);
  EXPECT_FALSE(d.why.empty());
}

TEST(SyscallRegions, NewfstatatAndGetdents64) {
  const char* path = "x";
  struct stat st;
  EXPECT_REGIONS(run("newfstatat", {uint64_t(AT_FDCWD), p(path), p(&st), 0}), {p(path), 2, I}, {p(&st), 144, O});
  char dents[4096];
  EXPECT_REGIONS(run("getdents64", {3, p(dents), sizeof dents}), {p(dents), sizeof dents, O});
}

TEST(SyscallRegions, RecvfromReadsTheAddressLength) {
  char buf[64];
  sockaddr_storage from;
  socklen_t len = 16;
  EXPECT_REGIONS(run("recvfrom", {3, p(buf), 64, 0, p(&from), p(&len)}),
                 {p(buf), 64, O}, {p(&len), 4, IO}, {p(&from), 16, O});
  len = 1000;  // the kernel writes at most sizeof(sockaddr_storage)
  EXPECT_REGIONS(run("recvfrom", {3, p(buf), 64, 0, p(&from), p(&len)}),
                 {p(buf), 64, O}, {p(&len), 4, IO}, {p(&from), 128, O});
  // No address: the length pointer is not followed.
  EXPECT_REGIONS(run("recvfrom", {3, p(buf), 64, 0, 0, p(&len)}), {p(buf), 64, O});
}

TEST(SyscallRegions, SendmsgRecvmsgFollowNameIovAndControl) {
  sockaddr_storage name;
  char a[8], b[16], control[64];
  iovec iov[2] = {{a, sizeof a}, {b, sizeof b}};
  msghdr m{};
  m.msg_name = &name;
  m.msg_namelen = 16;
  m.msg_iov = iov;
  m.msg_iovlen = 2;
  m.msg_control = control;
  m.msg_controllen = sizeof control;
  EXPECT_REGIONS(run("sendmsg", {3, p(&m), 0}),
                 {p(&m), sizeof m, I}, {p(&name), 16, I}, {p(iov), sizeof iov, I}, {p(a), 8, I}, {p(b), 16, I},
                 {p(control), 64, I});
  EXPECT_REGIONS(run("recvmsg", {3, p(&m), 0}),
                 {p(&m), sizeof m, IO}, {p(&name), 16, O}, {p(iov), sizeof iov, I}, {p(a), 8, O}, {p(b), 16, O},
                 {p(control), 64, O});
}

TEST(SyscallRegions, PollSelectEpoll) {
  pollfd fds[3];
  EXPECT_REGIONS(run("poll", {p(fds), 3, 100}), {p(fds), 24, IO});

  fd_set r;
  timeval tv;
  EXPECT_REGIONS(run("select", {70, p(&r), 0, 0, p(&tv)}), {p(&r), 16, IO}, {p(&tv), 16, IO});
  EXPECT_REGIONS(run("select", {0, 0, 0, 0, 0}));  // all NULL

  epoll_event ev[5];
  EXPECT_REGIONS(run("epoll_wait", {4, p(ev), 5, 0}), {p(ev), 60, O});
  EXPECT_REGIONS(run("epoll_wait", {4, p(ev), uint64_t(-1), 0}));  // EINVAL unread
}

TEST(SyscallRegions, Pselect6FollowsItsSigmaskPair) {
  fd_set r, w;
  timespec ts;
  uint64_t set = 0;
  struct {
    uint64_t set;
    uint64_t size;
  } mask{0, 8};
  mask.set = p(&set);
  EXPECT_REGIONS(run("pselect6", {1, p(&r), p(&w), 0, p(&ts), p(&mask)}), {p(&r), 8, IO}, {p(&w), 8, IO},
                 {p(&ts), 16, IO}, {p(&mask), 16, I}, {p(&set), 8, I});
}

TEST(SyscallRegions, Wait4WithAndWithoutOutputs) {
  int status;
  rusage ru;
  EXPECT_REGIONS(run("wait4", {uint64_t(-1), 0, 0, 0}));
  EXPECT_REGIONS(run("wait4", {uint64_t(-1), p(&status), 0, p(&ru)}), {p(&status), 4, O}, {p(&ru), 144, O});
}

TEST(SyscallRegions, IoctlKnownRequestsOnly) {
  char termios_buf[64];
  EXPECT_REGIONS(run("ioctl", {0, TCGETS, p(termios_buf)}), {p(termios_buf), 36, O});
  EXPECT_REGIONS(run("ioctl", {0, FIOCLEX, 0}));
  auto d = run("ioctl", {0, 0xdeadbeef, p(termios_buf)});
  EXPECT_FALSE(d.ok);
  EXPECT_FALSE(d.fault);
  EXPECT_NE(d.why.find("0xdeadbeef"), std::string::npos) << d.why;
}

TEST(SyscallRegions, FcntlByCommand) {
  struct flock fl {};
  EXPECT_REGIONS(run("fcntl", {3, F_SETLK, p(&fl)}), {p(&fl), 32, IO});
  EXPECT_REGIONS(run("fcntl", {3, F_SETFL, O_NONBLOCK}));
  EXPECT_FALSE(run("fcntl", {3, 99999, p(&fl)}).ok);
}

TEST(SyscallRegions, GetsockoptAndReadlinkat) {
  int val;
  socklen_t len = sizeof val;
  EXPECT_REGIONS(run("getsockopt", {3, SOL_SOCKET, SO_ERROR, p(&val), p(&len)}), {p(&len), 4, IO},
                 {p(&val), 4, IO});
  const char* path = "/proc/self/exe";
  char buf[256];
  EXPECT_REGIONS(run("readlinkat", {uint64_t(AT_FDCWD), p(path), p(buf), sizeof buf}), {p(path), 15, I},
                 {p(buf), 256, O});
}

TEST(SyscallRegions, UnreadableNestedPointerFaults) {
  GuardedPage g;
  auto d = run("readv", {3, p(g.guard()), 2});
  EXPECT_FALSE(d.ok);
  EXPECT_TRUE(d.fault);
  EXPECT_TRUE(d.regions.empty());

  socklen_t* bad_len = reinterpret_cast<socklen_t*>(g.guard());
  char buf[8];
  EXPECT_TRUE(run("getsockname", {3, p(buf), p(bad_len)}).fault);
}

TEST(SyscallRegions, LimitsAreRefused) {
  char buf[1];
  auto big = run("read", {3, p(buf), (64ull << 20) + 1});
  EXPECT_FALSE(big.ok);
  EXPECT_FALSE(big.fault);
  EXPECT_FALSE(big.why.empty());

  std::vector<char> long_path(5000, 'a');
  long_path.back() = 0;
  EXPECT_FALSE(run("open", {p(long_path.data()), 0}).ok);

  // 1024 iovecs with a buffer each: 1025 regions.
  std::vector<char> bytes(1024);
  std::vector<iovec> iov(1024);
  for (size_t i = 0; i < iov.size(); ++i) iov[i] = {&bytes[i], 1};
  auto many = run("writev", {3, p(iov.data()), iov.size()});
  EXPECT_FALSE(many.ok);
  EXPECT_NE(many.why.find("1024"), std::string::npos) << many.why;
}

TEST(SyscallRegions, ForwardedInspectCalls) {
  timespec ts;
  EXPECT_REGIONS(run("clock_gettime", {uint64_t(-6), p(&ts)}), {p(&ts), 16, O});
  EXPECT_REGIONS(run("prctl", {16, p(&ts)}), {p(&ts), 16, O});  // PR_GET_NAME
  EXPECT_FALSE(run("prctl", {22, 0}).ok);                       // PR_SET_SECCOMP goes home
}

TEST(SyscallRegions, NotForwardedCallsAreRefused) {
  auto d = run("execve", {0, 0, 0});
  EXPECT_FALSE(d.ok);
  EXPECT_FALSE(d.why.empty());
  EXPECT_FALSE(describe(-1, Args{}.a, read_self).ok);
  EXPECT_FALSE(describe(100000, Args{}.a, read_self).ok);
}

// Every forwarded call, and every inspect call, with zeroed registers: no
// crash, and a forwarded one is always known to the describer.
TEST(SyscallRegions, EveryForwardedCallIsKnown) {
  Args zero{};
  for (const auto& s : all_syscalls()) {
    if (s.how != Disposition::forward && s.how != Disposition::inspect) continue;
    std::string_view name = s.name;
    if (name == "madvise" || name == "timer_create") continue;  // inspect, but never forwarded
    auto d = describe(s.nr, zero.a, read_self);
    EXPECT_TRUE(d.ok || !d.why.empty()) << s.name;
    EXPECT_EQ(d.why.find("not a forwarded call"), std::string::npos) << s.name << ": " << d.why;
    EXPECT_FALSE(d.fault) << s.name;
  }
}

}  // namespace
}  // namespace roam::fwd
