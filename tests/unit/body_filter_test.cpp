// The body's seccomp filter: what it lets through and what it hands to the
// agent, checked both by evaluating the program and in a real filtered child.
#include "roam/body_filter.hpp"

#include <linux/audit.h>
#include <linux/seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fcntl.h>
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <string>

#include <cstring>
#include <set>

#include "roam/syscalls.hpp"

namespace roam {
namespace {

const uint64_t kNoArgs[6] = {};

uint32_t eval(const std::vector<sock_filter>& p, int nr, uint64_t ip = 0x1000, const uint64_t* args = kNoArgs,
              uint32_t arch = AUDIT_ARCH_X86_64) {
  return evaluate_body_filter(p, arch, nr, ip, args);
}

TEST(BodyFilter, EveryNumberFollowsTheTable) {
  auto p = build_body_filter({});
  EXPECT_LT(p.size(), 400u);
  for (int nr = -2; nr < 600; ++nr) {
    if (nr == SYS_mmap || nr == SYS_rt_sigaction) continue;  // argument-dependent, below
    bool local = disposition_of(nr) == Disposition::local;
    EXPECT_EQ(eval(p, nr), local ? SECCOMP_RET_ALLOW : SECCOMP_RET_USER_NOTIF)
        << "nr " << nr << " (" << (syscall_info(nr) ? syscall_info(nr)->name : "unknown") << ")";
  }
  EXPECT_EQ(eval(p, SYS_futex), SECCOMP_RET_ALLOW);
  EXPECT_EQ(eval(p, SYS_read), SECCOMP_RET_USER_NOTIF);
  EXPECT_EQ(eval(p, SYS_fork), SECCOMP_RET_USER_NOTIF);
}

TEST(BodyFilter, OtherAbisGoToTheAgent) {
  auto p = build_body_filter({});
  EXPECT_EQ(eval(p, SYS_futex, 0x1000, kNoArgs, AUDIT_ARCH_I386), SECCOMP_RET_USER_NOTIF);
  EXPECT_EQ(eval(p, 0x40000000 | SYS_futex), SECCOMP_RET_USER_NOTIF);  // x32
}

TEST(BodyFilter, AnonymousPrivateMmapIsLocalTheRestIsNot) {
  auto p = build_body_filter({});
  uint64_t anon[6] = {0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, static_cast<uint64_t>(-1), 0};
  EXPECT_EQ(eval(p, SYS_mmap, 0x1000, anon), SECCOMP_RET_ALLOW);
  uint64_t shared_anon[6] = {0, 4096, PROT_READ, MAP_SHARED | MAP_ANONYMOUS, static_cast<uint64_t>(-1), 0};
  EXPECT_EQ(eval(p, SYS_mmap, 0x1000, shared_anon), SECCOMP_RET_USER_NOTIF);
  uint64_t validate[6] = {0, 4096, PROT_READ, MAP_SHARED_VALIDATE, 3, 0};
  EXPECT_EQ(eval(p, SYS_mmap, 0x1000, validate), SECCOMP_RET_USER_NOTIF);
  uint64_t private_file[6] = {0, 4096, PROT_READ, MAP_PRIVATE, 3, 0};
  EXPECT_EQ(eval(p, SYS_mmap, 0x1000, private_file), SECCOMP_RET_USER_NOTIF);
}

TEST(BodyFilter, SigactionIsLocalButSettingSigchld) {
  auto p = build_body_filter({});
  uint64_t set_usr1[6] = {SIGUSR1, 0x7ffd00001000, 0, 8, 0, 0};
  EXPECT_EQ(eval(p, SYS_rt_sigaction, 0x1000, set_usr1), SECCOMP_RET_ALLOW);
  uint64_t read_chld[6] = {SIGCHLD, 0, 0x7ffd00001000, 8, 0, 0};
  EXPECT_EQ(eval(p, SYS_rt_sigaction, 0x1000, read_chld), SECCOMP_RET_ALLOW);
  uint64_t set_chld[6] = {SIGCHLD, 0x7ffd00001000, 0, 8, 0, 0};
  EXPECT_EQ(eval(p, SYS_rt_sigaction, 0x1000, set_chld), SECCOMP_RET_USER_NOTIF);
  uint64_t set_chld_high[6] = {SIGCHLD, 0x100000000, 0, 8, 0, 0};  // a pointer with only high bits
  EXPECT_EQ(eval(p, SYS_rt_sigaction, 0x1000, set_chld_high), SECCOMP_RET_USER_NOTIF);
}

TEST(BodyFilter, TrampolineMayCallAnything) {
  BodyFilterOptions o;
  o.trampoline_begin = 0x7f0000001000;
  o.trampoline_end = 0x7f0000002000;
  auto p = build_body_filter(o);
  EXPECT_EQ(eval(p, SYS_read, 0x7f0000001000), SECCOMP_RET_ALLOW);
  EXPECT_EQ(eval(p, SYS_fork, 0x7f0000001ffe), SECCOMP_RET_ALLOW);
  EXPECT_EQ(eval(p, SYS_read, 0x7f0000002000), SECCOMP_RET_USER_NOTIF);
  EXPECT_EQ(eval(p, SYS_read, 0x7f0000000fff), SECCOMP_RET_USER_NOTIF);
  EXPECT_EQ(eval(p, SYS_read, 0x7e0000001800), SECCOMP_RET_USER_NOTIF);  // same low half, other high half
  EXPECT_EQ(eval(p, SYS_futex, 0x5000), SECCOMP_RET_ALLOW);
}

// The trampoline is the [vdso], whose own fallbacks make calls from the same
// range: a CPU-time clock read through clock_gettime must still reach the
// agent (which adds the CPU time used at home before the move).
TEST(BodyFilter, TheVdsosOwnFallbacksTakeTheNormalPath) {
  BodyFilterOptions o;
  o.trampoline_begin = 0x7f0000001000;
  o.trampoline_end = 0x7f0000003000;
  auto p = build_body_filter(o);
  for (int nr : {SYS_clock_gettime, SYS_clock_getres})
    EXPECT_EQ(eval(p, nr, 0x7f0000001800), SECCOMP_RET_USER_NOTIF) << nr;
  // Local calls stay local from there too; the agent's other calls pass.
  for (int nr : {SYS_gettimeofday, SYS_time, SYS_getcpu})
    EXPECT_EQ(eval(p, nr, 0x7f0000001800), eval(p, nr, 0x5000)) << nr;
  EXPECT_EQ(eval(p, SYS_setresuid, 0x7f0000001800), SECCOMP_RET_ALLOW);
}

// A real child under the filter: the supervisor sees exactly the calls the
// table does not mark local, and answers getpid with a home value.
TEST(BodyFilter, RealChildNotifiesOnlyNonLocalCalls) {
  // Once the filter is on, the child cannot send anything without a
  // notification, so it says beforehand which descriptor number the listener
  // will get (the lowest free one) and the parent takes it with pidfd_getfd.
  int ready[2];
  ASSERT_EQ(pipe2(ready, O_CLOEXEC), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    int probe = open("/dev/null", O_RDONLY);
    close(probe);
    if (write(ready[1], &probe, sizeof probe) != sizeof probe) _exit(9);
    FileDesc listener = install_body_filter({});
    if (listener.get() != probe) _exit(8);
    // Local calls: no notification.
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    void* m = mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) _exit(10);
    static_cast<char*>(m)[0] = 1;
    munmap(m, 1 << 20);
    // Non-local: getpid is answered by the supervisor.
    if (syscall(SYS_getpid) != 4242) _exit(11);
    // An unknown number also reaches the supervisor, never the kernel's ENOSYS.
    if (syscall(1000) != 7) _exit(12);
    _exit(0);
  }
  close(ready[1]);
  int number = -1;
  ASSERT_EQ(read(ready[0], &number, sizeof number), static_cast<ssize_t>(sizeof number));
  close(ready[0]);
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, child, 0));
  ASSERT_GE(pidfd, 0);
  int listener = -1;
  for (int tries = 0; tries < 5000 && listener < 0; ++tries) {
    int fd = static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, number, 0));
    if (fd >= 0) {
      char link[64] = {};
      readlink(fmt::format("/proc/self/fd/{}", fd).c_str(), link, sizeof link - 1);
      if (std::string(link).find("seccomp") != std::string::npos) listener = fd;
      else close(fd);
    }
    if (listener < 0) usleep(1000);
  }
  close(pidfd);
  ASSERT_GE(listener, 0) << "never saw the child's listener";
  std::multiset<int> seen;
  for (;;) {
    seccomp_notif req{};
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) break;  // child gone
    seen.insert(req.data.nr);
    seccomp_notif_resp resp{};
    resp.id = req.id;
    if (req.data.nr == SYS_getpid) {
      resp.val = 4242;
    } else if (req.data.nr == 1000) {
      resp.val = 7;
    } else {
      resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;  // let the kernel run it (exit_group)
    }
    ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp);
    if (req.data.nr == SYS_exit_group) break;
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  close(listener);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(seen.count(SYS_getpid), 1u);
  EXPECT_EQ(seen.count(1000), 1u);
  EXPECT_EQ(seen.count(SYS_clock_gettime), 0u);
  EXPECT_EQ(seen.count(SYS_mmap), 0u);
  EXPECT_EQ(seen.count(SYS_munmap), 0u);
}

}  // namespace
}  // namespace roam
