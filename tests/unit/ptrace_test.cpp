// Tracee and RemoteSyscalls against real forked children that do real work.
// Synchronisation goes through pipes; every wait is bounded (a watchdog
// SIGKILLs a stuck child, which also ends any waitpid on it; pipe reads time
// out); polling /proc only ever waits for a state, it never stands in for one.
#include "roam/ptrace.hpp"
#include "roam/remote_syscall.hpp"

#include <fcntl.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/rseq.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "roam/error.hpp"
#include "roam/fd.hpp"

namespace roam::ptrace {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const TraceOptions kTestOptions{TraceOption::sysgood, TraceOption::exit_kill};
constexpr uint64_t sigbit(int sig) { return uint64_t{1} << (sig - 1); }
constexpr uint64_t kSaRestorer = 0x04000000;  // not in glibc's headers

// ---------------------------------------------------------------------------
// State the children set up. fork keeps addresses, so the parent knows where
// all of this lives in a child.

volatile sig_atomic_t g_usr1_count = 0;
volatile sig_atomic_t g_rt_count = 0;
volatile sig_atomic_t g_rt_sum = 0;
volatile sig_atomic_t g_segv_count = 0;
volatile sig_atomic_t g_segv_code = -1;
volatile sig_atomic_t g_segv_pid = 0;
alignas(16) char g_altstack[64 * 1024];
int g_tid_word = 0;
robust_list_head g_robust{};
volatile uint64_t g_probe_addr = 0;
volatile uint64_t g_probe_len = 0;
alignas(32) uint8_t g_ymm_in[32];
alignas(32) uint8_t g_ymm_out[32];
volatile uint64_t g_go = 0;

constexpr uint64_t kUsr1HandlerMask = sigbit(SIGUSR2) | sigbit(SIGWINCH);
constexpr uint64_t kChildBlocked = sigbit(SIGUSR2) | sigbit(SIGTTIN);
constexpr unsigned long kPersona = ADDR_NO_RANDOMIZE;  // PER_LINUX is 0
constexpr mode_t kUmask = 027;
constexpr uintptr_t kBrkGrowth = 5 * 4096 + 123;

void usr1_action(int, siginfo_t*, void*) { g_usr1_count = g_usr1_count + 1; }
void rt_action(int, siginfo_t* si, void*) {
  g_rt_count = g_rt_count + 1;
  g_rt_sum = g_rt_sum + si->si_value.sival_int;
}
void trap_action(int, siginfo_t*, void*) {}
void segv_action(int, siginfo_t* si, void*) {
  g_segv_count = g_segv_count + 1;
  g_segv_code = si->si_code;
  g_segv_pid = si->si_pid;
}

struct Counts {
  int32_t usr1, rt, rt_sum, segv, segv_code, segv_pid;
};

uint64_t fnv1a(const void* p, size_t n) {
  auto* b = static_cast<const unsigned char*>(p);
  uint64_t h = 14695981039346656037ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

void child_write(int fd, const void* p, size_t n) {
  if (::write(fd, p, n) != static_cast<ssize_t>(n)) _exit(90);
}

void install(int sig, void (*fn)(int, siginfo_t*, void*), int flags, std::initializer_list<int> mask) {
  struct sigaction sa {};
  sa.sa_sigaction = fn;
  sa.sa_flags = flags | SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  for (int s : mask) sigaddset(&sa.sa_mask, s);
  if (::sigaction(sig, &sa, nullptr) != 0) _exit(91);
}

// Serves one-byte commands on `cmd`, answering on `report`. Blocked in read()
// between commands: the state most tests interrupt it in.
[[noreturn]] void command_loop(int cmd, int report) {
  for (;;) {
    char c = 0;
    ssize_t n = ::read(cmd, &c, 1);
    if (n == 0) _exit(0);
    if (n < 0) {
      int err = errno;
      child_write(report, "E", 1);
      child_write(report, &err, sizeof err);
      _exit(92);
    }
    switch (c) {
      case 'b': {
        uint64_t brk = static_cast<uint64_t>(::syscall(SYS_brk, 0));
        child_write(report, &brk, sizeof brk);
        break;
      }
      case 'c': {
        Counts k{g_usr1_count, g_rt_count, g_rt_sum, g_segv_count, g_segv_code, g_segv_pid};
        child_write(report, &k, sizeof k);
        break;
      }
      case 'p': {
        uint64_t h = fnv1a(reinterpret_cast<const void*>(g_probe_addr), g_probe_len);
        child_write(report, &h, sizeof h);
        break;
      }
      case 'e': {
        uint64_t v = 0;
        if (::read(cmd, &v, sizeof v) != sizeof v) _exit(93);
        v = ~v;
        child_write(report, &v, sizeof v);
        break;
      }
      default:
        _exit(0);
    }
  }
}

// A child with a bit of everything a migration must carry.
[[noreturn]] void stateful_child(int cmd, int report) {
  install(SIGUSR1, usr1_action, SA_RESTART | SA_ONSTACK, {SIGUSR2, SIGWINCH});
  install(SIGRTMIN, rt_action, SA_RESTART, {});
  install(SIGSEGV, segv_action, SA_RESTART, {});
  install(SIGTRAP, trap_action, SA_RESTART, {SIGHUP});
  stack_t ss{};
  ss.ss_sp = g_altstack;
  ss.ss_size = sizeof g_altstack;
  if (::sigaltstack(&ss, nullptr) != 0) _exit(94);
  ::syscall(SYS_set_tid_address, &g_tid_word);
  g_robust.list.next = &g_robust.list;
  if (::syscall(SYS_set_robust_list, &g_robust, sizeof g_robust) != 0) _exit(95);
  ::umask(kUmask);
  ::personality(kPersona);
  auto brk0 = static_cast<uintptr_t>(::syscall(SYS_brk, 0));
  ::syscall(SYS_brk, brk0 + kBrkGrowth);
  sigset_t block;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR2);
  sigaddset(&block, SIGTTIN);
  ::sigprocmask(SIG_BLOCK, &block, nullptr);
  child_write(report, "R", 1);
  command_loop(cmd, report);
}

// ---------------------------------------------------------------------------
// The harness.

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }
int pidfd_kill(int pidfd, int sig) { return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0)); }

// A forked child running `body(cmd_read_fd, report_write_fd)`. A watchdog
// kills it after `limit`; the destructor kills and reaps it.
class Child {
 public:
  using Body = void (*)(int, int);
  explicit Child(Body body, std::chrono::seconds limit = 30s) {
    int cmd[2], report[2];
    if (::pipe2(cmd, O_CLOEXEC) != 0 || ::pipe2(report, O_CLOEXEC) != 0) throw SysError("pipe2", errno);
    pid_ = ::fork();
    if (pid_ < 0) throw SysError("fork", errno);
    if (pid_ == 0) {
      ::close(cmd[1]);
      ::close(report[0]);
      body(cmd[0], report[1]);
      _exit(0);
    }
    ::close(cmd[0]);
    ::close(report[1]);
    cmd_ = FileDesc(cmd[1]);
    report_ = FileDesc(report[0]);
    pidfd_ = FileDesc(pidfd_open(pid_));
    if (!pidfd_) throw SysError("pidfd_open", errno);
    watchdog_ = std::thread([this, limit] {
      std::unique_lock lock(mu_);
      if (!cv_.wait_for(lock, limit, [this] { return done_; })) {
        fired_ = true;
        pidfd_kill(pidfd_.get(), SIGKILL);
      }
    });
  }
  ~Child() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    watchdog_.join();
    pidfd_kill(pidfd_.get(), SIGKILL);
    siginfo_t info{};
    ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_.get()), &info, WEXITED);
    EXPECT_FALSE(fired_) << "watchdog killed child " << pid_;
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  int pidfd() const { return pidfd_.get(); }
  int report_fd() const { return report_.get(); }

  void send(const void* p, size_t n) {
    if (::write(cmd_.get(), p, n) != static_cast<ssize_t>(n)) throw SysError("writing to child", errno);
  }
  void send(char c) { send(&c, 1); }

  void receive(void* p, size_t n, std::chrono::milliseconds limit = 10s) {
    auto deadline = Clock::now() + limit;
    auto* out = static_cast<char*>(p);
    size_t done = 0;
    while (done < n) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) throw std::runtime_error("timed out waiting for the child");
      pollfd pfd{report_.get(), POLLIN, 0};
      int r = ::poll(&pfd, 1, static_cast<int>(left));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) continue;
      ssize_t got = ::read(report_.get(), out + done, n - done);
      if (got == 0) throw std::runtime_error("child closed its report pipe");
      if (got < 0) {
        if (errno == EINTR) continue;
        throw SysError("reading from child", errno);
      }
      done += static_cast<size_t>(got);
    }
  }
  template <typename T>
  T receive(std::chrono::milliseconds limit = 10s) {
    T v{};
    receive(&v, sizeof v, limit);
    return v;
  }
  void expect_ready() { ASSERT_EQ(receive<char>(), 'R'); }
  bool report_pending() {
    pollfd pfd{report_.get(), POLLIN, 0};
    return ::poll(&pfd, 1, 0) > 0;
  }
  // The command loop answers 'e' + v with ~v.
  uint64_t echo(uint64_t v) {
    char msg[9];
    msg[0] = 'e';
    std::memcpy(msg + 1, &v, sizeof v);
    send(msg, sizeof msg);
    return ~receive<uint64_t>();
  }

 private:
  pid_t pid_ = -1;
  FileDesc cmd_, report_, pidfd_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::atomic<bool> fired_{false};
  std::thread watchdog_;
};

template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = 10s) {
  auto deadline = Clock::now() + limit;
  while (!pred()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// The syscall a thread is blocked in (/proc/PID/syscall), -1 if it is blocked
// outside one, -2 if it is running or gone.
long blocked_in_syscall(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/syscall");
  std::string first;
  if (!(f >> first) || first == "running") return -2;
  return std::stol(first);
}

char proc_state(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto paren = all.rfind(')');
  return paren == std::string::npos || paren + 2 >= all.size() ? '?' : all[paren + 2];
}

void expect_same_regs(const Regs& a, const Regs& b) {
  EXPECT_EQ(a.rip, b.rip);
  EXPECT_EQ(a.rsp, b.rsp);
  EXPECT_EQ(a.rax, b.rax);
  EXPECT_EQ(a.orig_rax, b.orig_rax);
  EXPECT_EQ(a.rdi, b.rdi);
  EXPECT_EQ(a.rsi, b.rsi);
  EXPECT_EQ(a.rdx, b.rdx);
  EXPECT_EQ(a.r10, b.r10);
  EXPECT_EQ(a.fs_base, b.fs_base);
  EXPECT_EQ(0, std::memcmp(&a, &b, sizeof a)) << "some register differs";
}

// A stateful child, seized and interrupted while blocked in read() on its
// command pipe.
struct Frozen {
  Child child{stateful_child};
  std::optional<Tracee> tracee;
  Frozen() {
    child.expect_ready();
    if (!eventually([&] { return blocked_in_syscall(child.pid()) == SYS_read; })) {
      throw std::runtime_error("child never blocked in read");
    }
    tracee.emplace(Tracee::seize(child.pid(), kTestOptions));
    tracee->interrupt();
  }
  Tracee& t() { return *tracee; }
};

// ---------------------------------------------------------------------------

TEST(RemotePtr, StepsBySizeOfPointee) {
  RemotePtr<uint64_t> p(0x1000);
  EXPECT_EQ((p + 2).addr(), 0x1010u);
  EXPECT_EQ((p - 1).addr(), 0xff8u);
  RemotePtr<void> v = p;
  EXPECT_EQ((v + 2).addr(), 0x1002u);
  EXPECT_EQ(v.cast<uint32_t>() + 1, RemotePtr<uint32_t>(0x1004));
  EXPECT_LT(v, v + 1);
  EXPECT_TRUE(RemotePtr<>().is_null());
}

TEST(Ptrace, InterruptedReadRestartsAfterInjection) {
  Frozen f;
  Tracee& t = f.t();
  EXPECT_EQ(t.last_stop().kind, StopKind::interrupt);
  Regs before = t.regs();
  // Stopped inside read(): the kernel's restart code is still in rax.
  EXPECT_EQ(before.orig_rax, static_cast<uint64_t>(SYS_read));
  EXPECT_EQ(static_cast<long>(before.rax), -kERestartSys);
  {
    RemoteSyscalls rs(t);
    EXPECT_EQ(rs.site(), SyscallSite::vdso);
    EXPECT_EQ(remote_getpid(rs), f.child.pid());
    EXPECT_EQ(rs.syscall(SYS_gettid), f.child.pid());
    EXPECT_EQ(rs.syscall(SYS_getppid), ::getpid());
    EXPECT_EQ(rs.syscall(SYS_close, 100000), -EBADF);  // failures come back as -errno
    EXPECT_THROW(rs.checked_syscall("close", SYS_close, 100000), SysError);
  }
  EXPECT_EQ(t.last_stop().kind, StopKind::interrupt);
  expect_same_regs(before, t.regs());
  // Resumed (not detached: PTRACE_DETACH alone would make the kernel redo
  // the restart), the read restarts instead of returning -ERESTARTSYS.
  t.resume();
  ASSERT_TRUE(eventually([&] { return blocked_in_syscall(f.child.pid()) == SYS_read; }));
  EXPECT_FALSE(f.child.report_pending());
  t.detach();
  EXPECT_EQ(f.child.echo(0x1122334455667788ull), 0x1122334455667788ull);
}

TEST(Ptrace, InjectedReadsReturnTheChildsState) {
  Child child(stateful_child);
  child.expect_ready();
  child.send('b');
  auto brk = child.receive<uint64_t>();
  ASSERT_TRUE(eventually([&] { return blocked_in_syscall(child.pid()) == SYS_read; }));
  Tracee t = Tracee::seize(child.pid(), kTestOptions);
  t.interrupt();

  // Readable from outside.
  EXPECT_EQ(t.signal_mask(), kChildBlocked);
  RobustList robust = t.robust_list();
  EXPECT_EQ(robust.head.addr(), reinterpret_cast<uintptr_t>(&g_robust));
  EXPECT_EQ(robust.len, sizeof g_robust);
  auto rseq = t.rseq_config();
  if (__rseq_size > 0) {
    ASSERT_TRUE(rseq.has_value());
    EXPECT_EQ(rseq->abi.addr(), reinterpret_cast<uintptr_t>(__builtin_thread_pointer()) + __rseq_offset);
    EXPECT_EQ(rseq->signature, static_cast<uint32_t>(RSEQ_SIG));
    EXPECT_GE(rseq->size, 32u);
  }

  {
    RemoteSyscalls rs(t);
    KernelSigaction usr1 = sigaction_of(rs, SIGUSR1);
    EXPECT_EQ(usr1.handler, reinterpret_cast<uint64_t>(&usr1_action));
    EXPECT_EQ(usr1.flags & (SA_SIGINFO | SA_RESTART | SA_ONSTACK | kSaRestorer),
              SA_SIGINFO | SA_RESTART | SA_ONSTACK | kSaRestorer);
    EXPECT_EQ(usr1.mask, kUsr1HandlerMask);
    EXPECT_NE(usr1.restorer, 0u);
    KernelSigaction segv = sigaction_of(rs, SIGSEGV);
    EXPECT_EQ(segv.handler, reinterpret_cast<uint64_t>(&segv_action));
    EXPECT_EQ(segv.flags & SA_ONSTACK, 0u);
    EXPECT_EQ(sigaction_of(rs, SIGPIPE).handler, reinterpret_cast<uint64_t>(SIG_DFL));

    EXPECT_EQ(current_brk(rs).addr(), brk);
    EXPECT_EQ(tid_address(rs).addr(), reinterpret_cast<uintptr_t>(&g_tid_word));
    AltStack alt = sigaltstack_of(rs);
    EXPECT_EQ(alt.sp.addr(), reinterpret_cast<uintptr_t>(g_altstack));
    EXPECT_EQ(alt.size, sizeof g_altstack);
    EXPECT_EQ(alt.flags, 0);
    EXPECT_EQ(personality_of(rs), kPersona);
    EXPECT_EQ(umask_of(rs), kUmask);
    EXPECT_EQ(umask_of(rs), kUmask);  // the first read put it back
    EXPECT_EQ(sigmask_of(rs), kChildBlocked);

    // Inside the scope the tracee runs with our blocking mask, which is why
    // sigmask_of does not inject rt_sigprocmask.
    ScratchMem old(rs, sizeof(uint64_t));
    EXPECT_EQ(rs.syscall(SYS_rt_sigprocmask, SIG_BLOCK, nullptr, old.get(), 8), 0);
    auto scope_mask = old.read<uint64_t>();
    EXPECT_NE(scope_mask & sigbit(SIGUSR1), 0u);
    EXPECT_EQ(scope_mask & sigbit(SIGSEGV), 0u);
  }
  EXPECT_EQ(t.signal_mask(), kChildBlocked);
  t.detach();
  EXPECT_EQ(child.echo(7), 7u);
}

TEST(Ptrace, InjectedMmapIsWritableThroughMemEvenReadOnly) {
  Frozen f;
  Tracee& t = f.t();
  constexpr size_t kLen = 8 * 4096;  // large enough for the process_vm_readv path
  std::vector<std::byte> pattern(kLen);
  uint64_t x = 88172645463325252ull;
  for (auto& b : pattern) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    b = static_cast<std::byte>(x);
  }
  uint64_t addr = 0;
  {
    RemoteSyscalls rs(t);
    addr = rs.checked_syscall("mmap", SYS_mmap, 0, kLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(addr, 0u);
    t.write_mem(RemotePtr<void>(addr), pattern);
    std::vector<std::byte> back(kLen);
    t.read_mem(RemotePtr<void>(addr), back);
    EXPECT_EQ(back, pattern);
    uint64_t word = 0;
    std::memcpy(&word, pattern.data() + 4096 + 8, 8);
    EXPECT_EQ(t.read(RemotePtr<uint64_t>(addr + 4096 + 8)), word);

    ASSERT_EQ(rs.syscall(SYS_mprotect, addr, kLen, PROT_READ), 0);
    // process_vm_writev refuses a read-only page; /proc/PID/mem does not.
    char probe = 1;
    iovec local{&probe, 1}, remote{reinterpret_cast<void*>(addr + 3 * 4096), 1};
    EXPECT_EQ(::process_vm_writev(f.child.pid(), &local, 1, &remote, 1, 0), -1);
    for (size_t i = 0; i < 100; ++i) pattern[3 * 4096 + 17 + i] = static_cast<std::byte>(i);
    t.write_mem(RemotePtr<void>(addr + 3 * 4096 + 17), std::span(pattern).subspan(3 * 4096 + 17, 100));
    std::vector<std::byte> small(100);
    t.read_mem(RemotePtr<void>(addr + 3 * 4096 + 17), small);
    EXPECT_TRUE(std::equal(small.begin(), small.end(), pattern.begin() + 3 * 4096 + 17));

    t.write(RemotePtr<uint64_t>(reinterpret_cast<uintptr_t>(&g_probe_addr)), addr);
    t.write(RemotePtr<uint64_t>(reinterpret_cast<uintptr_t>(&g_probe_len)), uint64_t{kLen});
  }
  // Still read-only in the child.
  std::ifstream maps("/proc/" + std::to_string(f.child.pid()) + "/maps");
  std::string line, perms;
  while (std::getline(maps, line)) {
    std::istringstream in(line);
    uint64_t start = 0;
    in >> std::hex >> start;
    if (start == addr) perms = line.substr(line.find(' ') + 1, 4);
  }
  EXPECT_EQ(perms, "r--p");
  t.detach();
  // The child sees exactly the bytes we wrote.
  f.child.send('p');
  EXPECT_EQ(f.child.receive<uint64_t>(), fnv1a(pattern.data(), pattern.size()));
}

// Holds a known value in ymm0 across an interrupt, spinning until g_go.
[[noreturn]] void ymm_child(int, int report) {
  static const char ready = 'R';
  for (int i = 0; i < 32; ++i) g_ymm_in[i] = static_cast<uint8_t>(0xa0 + i);
  asm volatile(
      "vmovdqu (%[in]), %%ymm0\n\t"
      "mov $1, %%eax\n\t"  // write(report, "R", 1), without touching ymm0
      "mov %k[fd], %%edi\n\t"
      "mov %[msg], %%rsi\n\t"
      "mov $1, %%edx\n\t"
      "syscall\n\t"
      "1: pause\n\t"
      "cmpq $0, (%[go])\n\t"
      "je 1b\n\t"
      "vmovdqu %%ymm0, (%[out])\n\t"
      "vzeroupper\n\t"
      :
      : [in] "r"(g_ymm_in), [out] "r"(g_ymm_out), [go] "r"(&g_go), [fd] "r"(report), [msg] "r"(&ready)
      : "rax", "rdi", "rsi", "rdx", "rcx", "r11", "xmm0", "memory");
  child_write(report, g_ymm_out, sizeof g_ymm_out);
  _exit(0);
}

TEST(Ptrace, XstateRoundTripReachesTheChildsYmm0) {
  if (!__builtin_cpu_supports("avx")) GTEST_SKIP() << "no AVX";
  Child child(ymm_child);
  child.expect_ready();
  Tracee t = Tracee::seize(child.pid(), kTestOptions);
  t.interrupt();
  std::vector<uint8_t> xs = t.xstate();
  size_t avx = Tracee::xstate_component_offset(2);
  ASSERT_GT(avx, 512u);
  ASSERT_GE(xs.size(), avx + 32);
  EXPECT_LE(xs.size(), Tracee::xstate_size_hint());
  uint64_t xstate_bv = 0;
  std::memcpy(&xstate_bv, xs.data() + 512, 8);
  EXPECT_EQ(xstate_bv & 0x6, 0x6u) << "SSE and AVX state in use";
  uint8_t expect[32];
  for (int i = 0; i < 32; ++i) expect[i] = static_cast<uint8_t>(0xa0 + i);
  EXPECT_EQ(0, std::memcmp(xs.data() + 160, expect, 16)) << "xmm0 in the legacy area";
  EXPECT_EQ(0, std::memcmp(xs.data() + avx, expect + 16, 16)) << "upper half of ymm0";

  uint8_t fresh[32];
  for (int i = 0; i < 32; ++i) fresh[i] = static_cast<uint8_t>(0x11 * (i % 15) + 3);
  std::memcpy(xs.data() + 160, fresh, 16);
  std::memcpy(xs.data() + avx, fresh + 16, 16);
  xstate_bv |= 0x6;
  std::memcpy(xs.data() + 512, &xstate_bv, 8);
  t.set_xstate(xs);
  std::vector<uint8_t> again = t.xstate();
  EXPECT_EQ(0, std::memcmp(again.data() + 160, fresh, 16));
  EXPECT_EQ(0, std::memcmp(again.data() + avx, fresh + 16, 16));
  // An injection in between must not disturb the vector state either.
  { RemoteSyscalls rs(t); EXPECT_EQ(remote_getpid(rs), child.pid()); }
  t.write(RemotePtr<uint64_t>(reinterpret_cast<uintptr_t>(&g_go)), uint64_t{1});
  t.detach();
  uint8_t seen[32];
  child.receive(seen, sizeof seen);
  EXPECT_EQ(0, std::memcmp(seen, fresh, 32));
}

// Writes (i, x) records where x runs through an LCG 1000 steps per record;
// x lives in registers, so a register the injection failed to restore
// breaks the chain.
constexpr uint64_t kLcgA = 6364136223846793005ull, kLcgC = 1442695040888963407ull;
struct Record {
  uint64_t i, x;
};
uint64_t lcg_step(uint64_t x) {
  for (int k = 0; k < 1000; ++k) x = x * kLcgA + kLcgC;
  return x;
}
[[noreturn]] void lcg_child(int, int report) {
  uint64_t x = 12345;
  for (uint64_t i = 0;; ++i) {
    x = lcg_step(x);
    Record r{i, x};
    child_write(report, &r, sizeof r);
  }
}

TEST(Ptrace, ChecksumStreamContinuesAfterInjections) {
  Child child(lcg_child);
  uint64_t x = 12345, next = 0;
  auto check = [&](int n) {
    for (int k = 0; k < n; ++k) {
      auto r = child.receive<Record>();
      x = lcg_step(x);
      ASSERT_EQ(r.i, next) << "record out of order";
      ASSERT_EQ(r.x, x) << "checksum chain broken at record " << r.i;
      ++next;
    }
  };
  check(100);
  Tracee t = Tracee::seize(child.pid(), kTestOptions);
  for (int round = 0; round < 5; ++round) {
    t.interrupt();
    {
      RemoteSyscalls rs(t);
      EXPECT_EQ(remote_getpid(rs), child.pid());
      uint64_t m = rs.checked_syscall("mmap", SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      EXPECT_EQ(rs.syscall(SYS_munmap, m, 4096), 0);
      EXPECT_EQ(sigaction_of(rs, SIGINT).handler, reinterpret_cast<uint64_t>(SIG_DFL));
      ScratchMem junk(rs, std::vector<std::byte>(512, std::byte{0xee}));
      EXPECT_EQ(rs.syscall(SYS_getuid), static_cast<long>(::getuid()));
    }
    t.resume();
    check(50);
  }
  t.detach();
  // Well past what the pipe held when we stopped it: all computed afterwards.
  check(10000);
}

TEST(Ptrace, RestartBlockSleepCompletesAfterInjection) {
  struct Report {
    long rc;
    int err;
    int64_t elapsed_ns;
  };
  Child child(+[](int cmd, int report) {
    child_write(report, "R", 1);
    timespec t0{}, t1{}, req{0, 300'000'000};
    ::clock_gettime(CLOCK_MONOTONIC, &t0);
    Report r{};
    r.rc = ::syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &req, nullptr);
    r.err = r.rc < 0 ? errno : 0;
    ::clock_gettime(CLOCK_MONOTONIC, &t1);
    r.elapsed_ns = (t1.tv_sec - t0.tv_sec) * 1'000'000'000 + (t1.tv_nsec - t0.tv_nsec);
    child_write(report, &r, sizeof r);
    command_loop(cmd, report);
  });
  child.expect_ready();
  ASSERT_TRUE(eventually([&] { return blocked_in_syscall(child.pid()) == SYS_clock_nanosleep; }));
  Tracee t = Tracee::seize(child.pid(), kTestOptions);
  t.interrupt();
  Regs before = t.regs();
  EXPECT_EQ(before.orig_rax, static_cast<uint64_t>(SYS_clock_nanosleep));
  EXPECT_EQ(static_cast<long>(before.rax), -kERestartRestartBlock);
  {
    RemoteSyscalls rs(t);
    EXPECT_EQ(remote_getpid(rs), child.pid());
    EXPECT_EQ(current_brk(rs).is_null(), false);
  }
  expect_same_regs(before, t.regs());
  t.resume();
  auto r = child.receive<Report>();
  EXPECT_EQ(r.rc, 0) << "errno " << r.err;
  EXPECT_GE(r.elapsed_ns, 300'000'000);
  EXPECT_LT(r.elapsed_ns, 10'000'000'000);
  t.detach();
  EXPECT_EQ(child.echo(4), 4u);
}

TEST(Ptrace, PauseGoesBackToSleepAfterInjection) {
  struct Report {
    long rc;
    int err;
    int usr1;
  };
  Child child(+[](int, int report) {
    install(SIGUSR1, usr1_action, 0, {});  // no SA_RESTART: pause must end with EINTR
    child_write(report, "R", 1);
    Report r{};
    r.rc = ::syscall(SYS_pause);
    r.err = errno;
    r.usr1 = g_usr1_count;
    child_write(report, &r, sizeof r);
  });
  child.expect_ready();
  ASSERT_TRUE(eventually([&] { return blocked_in_syscall(child.pid()) == SYS_pause; }));
  Tracee t = Tracee::seize(child.pid(), kTestOptions);
  t.interrupt();
  Regs before = t.regs();
  EXPECT_EQ(static_cast<long>(before.rax), -kERestartNoHand);
  {
    RemoteSyscalls rs(t);
    EXPECT_EQ(remote_getpid(rs), child.pid());
  }
  expect_same_regs(before, t.regs());
  t.resume();
  // Back in pause, not returned with a kernel-internal errno.
  ASSERT_TRUE(eventually([&] { return blocked_in_syscall(child.pid()) == SYS_pause; }));
  EXPECT_FALSE(child.report_pending());
  t.detach();
  ASSERT_EQ(pidfd_kill(child.pidfd(), SIGUSR1), 0);
  auto r = child.receive<Report>();
  EXPECT_EQ(r.rc, -1);
  EXPECT_EQ(r.err, EINTR);
  EXPECT_EQ(r.usr1, 1);
}

TEST(Ptrace, SignalsSentDuringInjectionAreDeliveredAfterwards) {
  Frozen f;
  Tracee& t = f.t();
  Regs before = t.regs();
  {
    RemoteSyscalls rs(t);
    EXPECT_EQ(remote_getpid(rs), f.child.pid());
    ASSERT_EQ(::kill(f.child.pid(), SIGUSR1), 0);
    for (int v = 1; v <= 3; ++v) {
      sigval val{};
      val.sival_int = v;
      ASSERT_EQ(::sigqueue(f.child.pid(), SIGRTMIN, val), 0);
    }
    // A synchronous signal sent by kill is not blocked while we inject: it
    // stops the tracee, is held, and is queued back with its siginfo.
    ASSERT_EQ(::kill(f.child.pid(), SIGSEGV), 0);
    for (int i = 0; i < 10; ++i) EXPECT_EQ(remote_getpid(rs), f.child.pid());
    EXPECT_EQ(rs.held_signals(), 1u);
  }
  expect_same_regs(before, t.regs());
  EXPECT_EQ(t.signal_mask(), kChildBlocked);
  t.resume();
  t.detach();
  f.child.send('c');
  auto k = f.child.receive<Counts>();
  EXPECT_EQ(k.usr1, 1);
  EXPECT_EQ(k.rt, 3);
  EXPECT_EQ(k.rt_sum, 6);
  EXPECT_EQ(k.segv, 1);
  EXPECT_EQ(k.segv_code, SI_USER);
  EXPECT_EQ(k.segv_pid, ::getpid());
  EXPECT_EQ(f.child.echo(99), 99u);
}

TEST(Ptrace, SigstopDuringInjectionStopsTheChildAfterwards) {
  Frozen f;
  Tracee& t = f.t();
  Regs before = t.regs();
  {
    RemoteSyscalls rs(t);
    EXPECT_EQ(remote_getpid(rs), f.child.pid());
    ASSERT_EQ(::kill(f.child.pid(), SIGSTOP), 0);
    EXPECT_EQ(remote_getpid(rs), f.child.pid());
    EXPECT_EQ(rs.held_signals(), 1u);
    EXPECT_EQ(sigaction_of(rs, SIGUSR1).handler, reinterpret_cast<uint64_t>(&usr1_action));
  }
  expect_same_regs(before, t.regs());
  // Pending again; let go, the child stops as the sender meant it to.
  t.detach();
  EXPECT_TRUE(eventually([&] { return proc_state(f.child.pid()) == 'T'; }));
  EXPECT_FALSE(f.child.report_pending());
  ASSERT_EQ(::kill(f.child.pid(), SIGCONT), 0);
  EXPECT_EQ(f.child.echo(21), 21u);
}

TEST(Ptrace, SignalStoppedBeforeInterruptIsDelivered) {
  Child child(stateful_child);
  child.expect_ready();
  ASSERT_TRUE(eventually([&] { return blocked_in_syscall(child.pid()) == SYS_read; }));
  Tracee t = Tracee::seize(child.pid(), kTestOptions);
  ASSERT_EQ(::kill(child.pid(), SIGUSR1), 0);
  // Traced, the child now waits for us in a signal-delivery-stop.
  ASSERT_TRUE(eventually([&] { return proc_state(child.pid()) == 't'; }));
  t.interrupt();
  EXPECT_EQ(t.last_stop().kind, StopKind::interrupt);
  // Delivered: the child stands at its handler, on its alternate stack.
  Regs r = t.regs();
  EXPECT_EQ(r.rip, reinterpret_cast<uint64_t>(&usr1_action));
  EXPECT_GE(r.rsp, reinterpret_cast<uint64_t>(g_altstack));
  EXPECT_LT(r.rsp, reinterpret_cast<uint64_t>(g_altstack) + sizeof g_altstack);
  t.detach();
  child.send('c');
  EXPECT_EQ(child.receive<Counts>().usr1, 1);
}

// Spins until g_go, then reports what its handlers saw.
[[noreturn]] void spinner_child(int, int report) {
  install(SIGRTMIN, rt_action, SA_RESTART, {});
  child_write(report, "R", 1);
  while (g_go == 0) {
  }
  Counts k{g_usr1_count, g_rt_count, g_rt_sum, g_segv_count, g_segv_code, g_segv_pid};
  child_write(report, &k, sizeof k);
  _exit(0);
}

TEST(Ptrace, SignalsRacingInterruptAreDeliveredExactlyOnce) {
  Child child(spinner_child);
  child.expect_ready();
  Tracee t = Tracee::seize(child.pid(), kTestOptions);
  constexpr int kRounds = 300;
  int sum = 0;
  for (int i = 1; i <= kRounds; ++i) {
    sigval v{};
    v.sival_int = i;
    ASSERT_EQ(::sigqueue(child.pid(), SIGRTMIN, v), 0);  // queued: none coalesce
    sum += i;
    t.interrupt();  // races the delivery of the signal just sent
    ASSERT_EQ(t.last_stop().kind, StopKind::interrupt);
    if (i % 3 == 0) {
      RemoteSyscalls rs(t);
      ASSERT_EQ(remote_getpid(rs), child.pid());
    }
    t.resume();
  }
  t.interrupt();
  t.write(RemotePtr<uint64_t>(reinterpret_cast<uintptr_t>(&g_go)), uint64_t{1});
  t.detach();
  auto k = child.receive<Counts>();
  EXPECT_EQ(k.rt, kRounds);
  EXPECT_EQ(k.rt_sum, sum);
}

TEST(Ptrace, ChildKilledDuringInjectedCallThrowsTraceeDied) {
  Frozen f;
  Tracee& t = f.t();
  std::atomic<bool> killed{false};
  {
    RemoteSyscalls rs(t);
    std::thread killer([&] {
      if (eventually([&] { return blocked_in_syscall(f.child.pid()) == SYS_pause; })) {
        killed = pidfd_kill(f.child.pidfd(), SIGKILL) == 0;
      }
    });
    try {
      rs.syscall(SYS_pause);  // blocks: every signal but SIGKILL is blocked
      ADD_FAILURE() << "pause returned";
    } catch (const TraceeDied& e) {
      EXPECT_TRUE(e.killed());
      EXPECT_EQ(e.signal(), SIGKILL);
      EXPECT_EQ(e.tid(), f.child.pid());
    }
    killer.join();
  }  // the destructor sees a dead tracee and returns
  EXPECT_TRUE(killed);
  EXPECT_FALSE(t.alive());
}

TEST(Ptrace, ChildKilledBetweenInjectedCallsThrowsTraceeDied) {
  Frozen f;
  Tracee& t = f.t();
  RemoteSyscalls rs(t);
  EXPECT_EQ(remote_getpid(rs), f.child.pid());
  ASSERT_EQ(pidfd_kill(f.child.pidfd(), SIGKILL), 0);
  EXPECT_THROW(remote_getpid(rs), TraceeDied);
  EXPECT_FALSE(t.alive());
  EXPECT_THROW(rs.syscall(SYS_getpid), TraceeDied);
}

TEST(Ptrace, ScopeRestoresEverythingWhenItThrows) {
  Frozen f;
  Tracee& t = f.t();
  struct Boom {};
  Regs before = t.regs();
  uint64_t mask = t.signal_mask();
  std::vector<std::byte> stack_before(1024), stack_after(1024);
  RemotePtr<void> below(before.rsp - 128 - 1024);
  t.read_mem(below, stack_before);
  try {
    RemoteSyscalls rs(t);
    ScratchMem a(rs, std::vector<std::byte>(300, std::byte{0xab}));
    ScratchMem b = ScratchMem::holding(rs, uint64_t{0x5151515151515151});
    EXPECT_LT(b.get(), a.get());
    EXPECT_LE(a.get().addr() + a.size(), before.rsp - 128);
    EXPECT_EQ(a.get().addr() % 16, 0u);
    EXPECT_EQ(b.read<uint64_t>(), 0x5151515151515151u);
    EXPECT_EQ(remote_getpid(rs), f.child.pid());
    throw Boom{};
  } catch (const Boom&) {
  }
  expect_same_regs(before, t.regs());
  EXPECT_EQ(t.signal_mask(), mask);
  t.read_mem(below, stack_after);
  EXPECT_EQ(stack_before, stack_after);
  t.detach();
  EXPECT_EQ(f.child.echo(5), 5u);
}

// Parks its stack pointer 64 bytes above an unmapped hole and spins until
// g_go: no room below the red zone for scratch memory.
volatile uint64_t g_low_page = 0;
[[noreturn]] void low_stack_child(int, int report) {
  void* two = ::mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (two == MAP_FAILED) _exit(96);
  ::munmap(two, 4096);
  uint64_t page = reinterpret_cast<uint64_t>(two) + 4096;
  g_low_page = page;
  static const char ready = 'R';
  asm volatile(
      "mov %%rsp, %%r12\n\t"
      "lea 64(%[page]), %%rsp\n\t"
      "mov $1, %%eax\n\t"
      "mov %k[fd], %%edi\n\t"
      "mov %[msg], %%rsi\n\t"
      "mov $1, %%edx\n\t"
      "syscall\n\t"
      "1: pause\n\t"
      "cmpq $0, (%[go])\n\t"
      "je 1b\n\t"
      "mov %%r12, %%rsp\n\t"
      :
      : [page] "r"(page), [fd] "r"(report), [msg] "r"(&ready), [go] "r"(&g_go)
      : "rax", "rdi", "rsi", "rdx", "rcx", "r11", "r12", "memory");
  child_write(report, "D", 1);
  _exit(0);
}

bool is_mapped(pid_t pid, uint64_t addr) {
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  for (std::string line; std::getline(maps, line);) {
    std::istringstream in(line);
    uint64_t start = 0, end = 0;
    char dash = 0;
    in >> std::hex >> start >> dash >> end;
    if (addr >= start && addr < end) return true;
  }
  return false;
}

TEST(Ptrace, ScratchFallsBackToAMappingWhenTheStackEnds) {
  Child child(low_stack_child);
  child.expect_ready();
  Tracee t = Tracee::seize(child.pid(), kTestOptions);
  t.interrupt();
  uint64_t page = t.read(RemotePtr<uint64_t>(reinterpret_cast<uintptr_t>(&g_low_page)));
  Regs before = t.regs();
  ASSERT_EQ(before.rsp, page + 64);
  uint64_t scratch = 0;
  {
    RemoteSyscalls rs(t);
    EXPECT_EQ(sigaction_of(rs, SIGINT).handler, reinterpret_cast<uint64_t>(SIG_DFL));
    ScratchMem m = ScratchMem::holding(rs, uint64_t{0x77});
    EXPECT_TRUE(m.get().addr() < page - 4096 || m.get().addr() >= page + 4096) << "not in the stack page";
    EXPECT_EQ(m.read<uint64_t>(), 0x77u);
    scratch = m.get().addr();
    EXPECT_TRUE(is_mapped(child.pid(), scratch));
  }
  EXPECT_FALSE(is_mapped(child.pid(), scratch)) << "scratch mapping left behind";
  expect_same_regs(before, t.regs());
  t.write(RemotePtr<uint64_t>(reinterpret_cast<uintptr_t>(&g_go)), uint64_t{1});
  t.detach();
  EXPECT_EQ(child.receive<char>(), 'D');
}

TEST(Ptrace, EverySyscallSiteWorks) {
  Frozen f;
  Tracee& t = f.t();
  Regs before = t.regs();
  std::array<std::byte, 2> text{}, text_after{};
  t.read_mem(RemotePtr<void>(before.rip), text);
  for (SyscallSite site : {SyscallSite::vdso, SyscallSite::current_syscall, SyscallSite::patch_at_ip}) {
    RemoteSyscalls rs(t, site);
    EXPECT_EQ(rs.site(), site);
    EXPECT_EQ(remote_getpid(rs), f.child.pid());
    EXPECT_EQ(umask_of(rs), kUmask);
    if (site == SyscallSite::current_syscall) {
      EXPECT_EQ(rs.syscall_insn().addr(), before.rip - 2);
    }
    if (site == SyscallSite::patch_at_ip) {
      EXPECT_EQ(rs.syscall_insn().addr(), before.rip);
      std::array<std::byte, 2> patched{};
      t.read_mem(RemotePtr<void>(before.rip), patched);
      EXPECT_EQ(patched[0], std::byte{0x0f});
      EXPECT_EQ(patched[1], std::byte{0x05});
    }
  }
  t.read_mem(RemotePtr<void>(before.rip), text_after);
  EXPECT_EQ(text, text_after);
  {
    auto insn = RemoteSyscalls::find_syscall_in_vdso(t);
    ASSERT_TRUE(insn.has_value());
    RemoteSyscalls rs(t, *insn);
    EXPECT_EQ(rs.syscall_insn(), *insn);
    EXPECT_EQ(remote_getpid(rs), f.child.pid());
  }
  expect_same_regs(before, t.regs());
  t.detach();
  EXPECT_EQ(f.child.echo(11), 11u);
}

TEST(Ptrace, SingleStepModeInjectsAndLeavesSigtrapAlone) {
  Frozen f;
  Tracee& t = f.t();
  Regs before = t.regs();
  KernelSigaction trap_before;
  {
    RemoteSyscalls rs(t);
    trap_before = sigaction_of(rs, SIGTRAP);
  }
  {
    RemoteSyscalls rs(t, SyscallSite::any, StepMode::single_step);
    EXPECT_EQ(rs.step_mode(), StepMode::single_step);
    for (int i = 0; i < 100; ++i) ASSERT_EQ(remote_getpid(rs), f.child.pid());
    EXPECT_EQ(sigaction_of(rs, SIGUSR1).handler, reinterpret_cast<uint64_t>(&usr1_action));
    ASSERT_EQ(::kill(f.child.pid(), SIGUSR1), 0);
    EXPECT_EQ(rs.syscall(SYS_getppid), ::getpid());
    EXPECT_EQ(rs.held_signals(), 0u);
  }
  {
    RemoteSyscalls rs(t);
    KernelSigaction trap_after = sigaction_of(rs, SIGTRAP);
    EXPECT_EQ(trap_before.handler, reinterpret_cast<uint64_t>(&trap_action));
    EXPECT_EQ(trap_after.handler, trap_before.handler);
    EXPECT_EQ(trap_after.flags, trap_before.flags);
  }
  expect_same_regs(before, t.regs());
  t.detach();
  f.child.send('c');
  EXPECT_EQ(f.child.receive<Counts>().usr1, 1);
}

std::string maps_of(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/maps", pid));
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void expect_same_actions(const std::array<KernelSigaction, 64>& got, const std::array<KernelSigaction, 64>& want) {
  for (size_t i = 0; i < 64; ++i) {
    EXPECT_EQ(got[i].handler, want[i].handler) << "signal " << i + 1;
    EXPECT_EQ(got[i].flags, want[i].flags) << "signal " << i + 1;
    EXPECT_EQ(got[i].restorer, want[i].restorer) << "signal " << i + 1;
    EXPECT_EQ(got[i].mask, want[i].mask) << "signal " << i + 1;
  }
}

TEST(Ptrace, AllSigactionsInOneRunMatchOneCallEach) {
  // The child handles SIGTRAP: the loop's own int3 must not reach it.
  Frozen f;
  Tracee& t = f.t();
  Regs before = t.regs();
  std::string maps_before = maps_of(f.child.pid());
  std::array<KernelSigaction, 64> each{}, all{};
  {
    RemoteSyscalls rs(t, SyscallSite::any, StepMode::single_step);
    for (int sig = 1; sig <= 64; ++sig) each[static_cast<size_t>(sig - 1)] = sigaction_of(rs, sig);
    all = all_sigactions(rs);
    ASSERT_EQ(::kill(f.child.pid(), SIGUSR1), 0);  // held, delivered after the scope
  }
  EXPECT_EQ(each[SIGUSR1 - 1].handler, reinterpret_cast<uint64_t>(&usr1_action));
  EXPECT_EQ(each[SIGTRAP - 1].handler, reinterpret_cast<uint64_t>(&trap_action));
  expect_same_actions(all, each);
  expect_same_regs(before, t.regs());
  EXPECT_EQ(maps_of(f.child.pid()), maps_before);  // the loop's page is gone
  {
    RemoteSyscalls rs(t);
    EXPECT_EQ(sigaction_of(rs, SIGTRAP).handler, reinterpret_cast<uint64_t>(&trap_action));
  }
  t.detach();
  f.child.send('c');
  EXPECT_EQ(f.child.receive<Counts>().usr1, 1);
  EXPECT_EQ(f.child.echo(5), 5u);
}

// SIGTRAP ignored (the loop's int3 would reset it to SIG_DFL) or a seccomp
// filter of the process's own (it may refuse calls from an unknown
// address): one call each, and the disposition stays as it was.
[[noreturn]] void trap_ignoring_child(int cmd, int report) {
  ::signal(SIGTRAP, SIG_IGN);
  install(SIGUSR1, usr1_action, SA_RESTART, {SIGUSR2});
  child_write(report, "R", 1);
  command_loop(cmd, report);
}

[[noreturn]] void filtered_child(int cmd, int report) {
  install(SIGUSR1, usr1_action, SA_RESTART, {SIGUSR2});
  sock_filter allow{BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ALLOW};
  sock_fprog prog{1, &allow};
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
    _exit(96);
  child_write(report, "R", 1);
  command_loop(cmd, report);
}

TEST(Ptrace, AllSigactionsFallBackToOneCallEach) {
  for (Child::Body body : {trap_ignoring_child, filtered_child}) {
    Child child(body);
    child.expect_ready();
    ASSERT_TRUE(eventually([&] { return blocked_in_syscall(child.pid()) == SYS_read; }));
    Tracee t = Tracee::seize(child.pid(), kTestOptions);
    t.interrupt();
    std::string maps_before = maps_of(child.pid());
    std::array<KernelSigaction, 64> each{}, all{};
    {
      RemoteSyscalls rs(t);
      for (int sig = 1; sig <= 64; ++sig) each[static_cast<size_t>(sig - 1)] = sigaction_of(rs, sig);
      all = all_sigactions(rs);
    }
    expect_same_actions(all, each);
    EXPECT_EQ(each[SIGUSR1 - 1].handler, reinterpret_cast<uint64_t>(&usr1_action));
    if (body == trap_ignoring_child) {
      EXPECT_EQ(each[SIGTRAP - 1].handler, reinterpret_cast<uint64_t>(SIG_IGN));
      RemoteSyscalls rs(t);
      EXPECT_EQ(sigaction_of(rs, SIGTRAP).handler, reinterpret_cast<uint64_t>(SIG_IGN));
    }
    EXPECT_EQ(maps_of(child.pid()), maps_before);
    t.detach();
    EXPECT_EQ(child.echo(9), 9u);
  }
}

TEST(Ptrace, GroupStoppedChildStaysStopped) {
  Child child(stateful_child);
  child.expect_ready();
  ASSERT_EQ(::kill(child.pid(), SIGSTOP), 0);
  ASSERT_TRUE(eventually([&] { return proc_state(child.pid()) == 'T'; }));
  Tracee t = Tracee::seize(child.pid(), kTestOptions);
  t.interrupt();
  EXPECT_EQ(t.last_stop().kind, StopKind::group);
  EXPECT_EQ(t.last_stop().sig, SIGSTOP);
  {
    RemoteSyscalls rs(t);
    EXPECT_EQ(remote_getpid(rs), child.pid());
  }
  EXPECT_EQ(t.last_stop().kind, StopKind::group);
  t.detach();
  EXPECT_TRUE(eventually([&] { return proc_state(child.pid()) == 'T'; }));
  EXPECT_FALSE(child.report_pending());
  ASSERT_EQ(::kill(child.pid(), SIGCONT), 0);
  EXPECT_EQ(child.echo(3), 3u);
}

// An rseq critical section that spins until g_go; its abort handler returns 1,
// a commit returns 0. A thread preempted inside it must be aborted when it
// resumes, injection or not.
extern "C" {
extern char roam_rseq_start[], roam_rseq_post[], roam_rseq_abort[];
int roam_rseq_spin(volatile uint64_t* rseq_cs_field, volatile uint64_t* go);
}
asm(R"(
  .pushsection .data
  .balign 32
roam_rseq_cs_desc:
  .long 0, 0
  .quad roam_rseq_start
  .quad roam_rseq_post - roam_rseq_start
  .quad roam_rseq_abort
  .popsection
  .text
  .globl roam_rseq_spin, roam_rseq_start, roam_rseq_post, roam_rseq_abort
  .type roam_rseq_spin, @function
roam_rseq_spin:
  leaq roam_rseq_cs_desc(%rip), %rax
  movq %rax, (%rdi)
roam_rseq_start:
  pause
  cmpq $0, (%rsi)
  je roam_rseq_start
roam_rseq_post:
  movq $0, (%rdi)
  xorl %eax, %eax
  ret
  .long 0x53053053
roam_rseq_abort:
  movq $0, (%rdi)
  movl $1, %eax
  ret
  .size roam_rseq_spin, .-roam_rseq_spin
)");

TEST(Ptrace, ThreadStoppedInRseqCriticalSectionIsStillAborted) {
  if (__rseq_size == 0) GTEST_SKIP() << "glibc did not register rseq";
  Child child(+[](int, int report) {
    auto* field = reinterpret_cast<volatile uint64_t*>(static_cast<char*>(__builtin_thread_pointer()) + __rseq_offset + 8);
    child_write(report, "R", 1);
    for (;;) {
      int aborted = roam_rseq_spin(field, &g_go);
      // Any preemption aborts the section: before g_go that was not us.
      if (!aborted || g_go != 0) {
        child_write(report, &aborted, sizeof aborted);
        break;
      }
    }
  });
  child.expect_ready();
  Tracee t = Tracee::seize(child.pid(), kTestOptions);
  auto start = reinterpret_cast<uint64_t>(roam_rseq_start), post = reinterpret_cast<uint64_t>(roam_rseq_post);
  bool inside = false;
  for (int i = 0; i < 1000 && !inside; ++i) {
    t.interrupt();
    Regs r = t.regs();
    inside = r.rip >= start && r.rip < post;
    if (!inside) t.resume();
  }
  ASSERT_TRUE(inside) << "never caught the child inside its critical section";
  {
    RemoteSyscalls rs(t);  // returns to user mode at the vdso, outside the section
    EXPECT_EQ(remote_getpid(rs), child.pid());
  }
  // Let a commit through if the kernel forgot the section: then we would
  // read 0 instead of 1.
  t.write(RemotePtr<uint64_t>(reinterpret_cast<uintptr_t>(&g_go)), uint64_t{1});
  t.resume();
  EXPECT_EQ(child.receive<int>(), 1);
}

// ---------------------------------------------------------------------------
// Calls that block, run in steps (start_syscall) while the tracer watches.

// A pipe made inside the tracee: its two descriptor numbers there.
std::array<int, 2> remote_pipe(RemoteSyscalls& rs) {
  ScratchMem fds(rs, 2 * sizeof(int));
  rs.checked_syscall("pipe2", SYS_pipe2, fds.get(), O_CLOEXEC);
  return fds.read<std::array<int, 2>>();
}

// Our own copy of a descriptor of the child.
FileDesc copy_of(const Child& c, int fd) {
  FileDesc mine(static_cast<int>(::syscall(SYS_pidfd_getfd, c.pidfd(), fd, 0)));
  if (!mine) throw SysError("pidfd_getfd", errno);
  return mine;
}

// The running call's result, waited for as a tracer serving other things
// would: poll() on StopWakeups (SIGCHLD may go to another thread of this
// test, so with a period too).
std::optional<long> result_of(RemoteSyscalls& rs, StopWakeups& stops, std::chrono::milliseconds limit = 10s) {
  auto deadline = Clock::now() + limit;
  for (;;) {
    stops.drain();
    if (std::optional<long> rc = rs.syscall_result()) return rc;
    if (Clock::now() > deadline) return std::nullopt;
    pollfd p{stops.fd(), POLLIN, 0};
    ::poll(&p, 1, 10);
  }
}

// poll(fd, POLLIN, timeout) in the tracee, its pollfd in `at`.
void start_poll(RemoteSyscalls& rs, const ScratchMem& at, int fd, int timeout_ms,
                SignalsDuring signals = SignalsDuring::held) {
  pollfd p{fd, POLLIN, 0};
  rs.tracee().write(at.get().cast<pollfd>(), p);
  rs.start_syscall(SYS_poll, {at.get().addr(), 1, static_cast<uint64_t>(static_cast<int64_t>(timeout_ms)), 0, 0, 0},
                   signals);
}

TEST(Ptrace, BlockingCallRunsWhileTheTracerWatchesAndStopsWhenInterrupted) {
  Frozen f;
  Tracee& t = f.t();
  Regs before = t.regs();
  StopWakeups stops;
  {
    RemoteSyscalls rs(t);
    std::array<int, 2> p = remote_pipe(rs);
    ScratchMem at(rs, sizeof(pollfd));
    start_poll(rs, at, p[0], -1);
    EXPECT_TRUE(rs.syscall_running());
    ASSERT_TRUE(eventually([&] { return blocked_in_syscall(f.child.pid()) == SYS_poll; }));
    EXPECT_EQ(rs.syscall_result(), std::nullopt);
    rs.interrupt_syscall();
    // poll's own code for an interruption, timeout or not (it leaves a
    // restart block): a handler would make it EINTR.
    EXPECT_EQ(result_of(rs, stops), -kERestartRestartBlock);
    EXPECT_FALSE(rs.syscall_running());
    EXPECT_EQ(rs.syscall(SYS_close, p[0]), 0);
    EXPECT_EQ(rs.syscall(SYS_close, p[1]), 0);
  }
  EXPECT_EQ(t.last_stop().kind, StopKind::interrupt);
  expect_same_regs(before, t.regs());
  EXPECT_EQ(t.signal_mask(), kChildBlocked);
  t.detach();
  EXPECT_EQ(f.child.echo(7), 7u);
}

TEST(Ptrace, BlockingCallThatCompletedBeforeTheInterruptKeepsItsResult) {
  Frozen f;
  Tracee& t = f.t();
  Regs before = t.regs();
  StopWakeups stops;
  {
    RemoteSyscalls rs(t);
    std::array<int, 2> p = remote_pipe(rs);
    FileDesc writer = copy_of(f.child, p[1]);
    ScratchMem at(rs, sizeof(pollfd));
    start_poll(rs, at, p[0], -1);
    ASSERT_TRUE(eventually([&] { return blocked_in_syscall(f.child.pid()) == SYS_poll; }));
    ASSERT_EQ(::write(writer.get(), "x", 1), 1);
    // Returned and waiting at its syscall-exit stop, not yet seen.
    ASSERT_TRUE(eventually([&] { return proc_state(f.child.pid()) == 't'; }));
    rs.interrupt_syscall();
    EXPECT_EQ(result_of(rs, stops), 1);
    EXPECT_EQ(rs.tracee().read(at.get().cast<pollfd>()).revents, POLLIN);
    // The interrupt asked for last is stepped over.
    EXPECT_EQ(remote_getpid(rs), f.child.pid());
    EXPECT_EQ(rs.syscall(SYS_close, p[0]), 0);
    EXPECT_EQ(rs.syscall(SYS_close, p[1]), 0);
  }
  EXPECT_EQ(t.last_stop().kind, StopKind::interrupt);
  expect_same_regs(before, t.regs());
  t.detach();
  EXPECT_EQ(f.child.echo(8), 8u);
}

bool shared_pending(pid_t pid, int sig) {
  std::ifstream st("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(st, line))
    if (line.rfind("ShdPnd:", 0) == 0) return (std::stoull(line.substr(7), nullptr, 16) & sigbit(sig)) != 0;
  return false;
}

TEST(Ptrace, SignalsLetThroughInterruptABlockingCallAndStayPending) {
  Frozen f;
  Tracee& t = f.t();
  Regs before = t.regs();
  StopWakeups stops;
  {
    RemoteSyscalls rs(t);
    std::array<int, 2> p = remote_pipe(rs);
    ScratchMem at(rs, sizeof(pollfd));
    // Let through: a signal ends the call as it would end a native one.
    start_poll(rs, at, p[0], -1, SignalsDuring::interrupt);
    ASSERT_TRUE(eventually([&] { return blocked_in_syscall(f.child.pid()) == SYS_poll; }));
    ASSERT_EQ(::kill(f.child.pid(), SIGUSR1), 0);
    EXPECT_EQ(result_of(rs, stops), -kERestartRestartBlock);
    EXPECT_EQ(rs.held_signals(), 0u);
    EXPECT_TRUE(shared_pending(f.child.pid(), SIGUSR1));
    // Held (the default): the pending signal does not end the next call.
    start_poll(rs, at, p[0], -1);
    ASSERT_TRUE(eventually([&] { return blocked_in_syscall(f.child.pid()) == SYS_poll; }));
    EXPECT_EQ(rs.syscall_result(), std::nullopt);
    rs.interrupt_syscall();
    EXPECT_EQ(result_of(rs, stops), -kERestartRestartBlock);
    EXPECT_EQ(rs.syscall(SYS_close, p[0]), 0);
    EXPECT_EQ(rs.syscall(SYS_close, p[1]), 0);
  }
  expect_same_regs(before, t.regs());
  EXPECT_EQ(t.signal_mask(), kChildBlocked);
  t.detach();
  // Still pending, delivered once the child runs.
  f.child.send('c');
  EXPECT_EQ(f.child.receive<Counts>().usr1, 1);
}

TEST(Ptrace, ScopeClosedWhileACallRunsInterruptsItFirst) {
  Frozen f;
  Tracee& t = f.t();
  Regs before = t.regs();
  {
    RemoteSyscalls rs(t);
    ScratchMem at(rs, sizeof(pollfd));
    std::array<int, 2> p = remote_pipe(rs);
    start_poll(rs, at, p[0], -1);
    ASSERT_TRUE(eventually([&] { return blocked_in_syscall(f.child.pid()) == SYS_poll; }));
  }
  EXPECT_EQ(t.last_stop().kind, StopKind::interrupt);
  expect_same_regs(before, t.regs());
  EXPECT_EQ(t.signal_mask(), kChildBlocked);
  t.detach();
  EXPECT_EQ(f.child.echo(9), 9u);
}

// What the home agent does after a signal interrupted a call with a timeout:
// restart_syscall, injected in a later scope, goes on with the tracee's own
// restart block (here: the same poll, not a fresh one).
TEST(Ptrace, RestartSyscallContinuesAnInterruptedCallInALaterScope) {
  Frozen f;
  Tracee& t = f.t();
  StopWakeups stops;
  std::array<int, 2> p{};
  {
    RemoteSyscalls rs(t);
    p = remote_pipe(rs);
  }
  FileDesc writer = copy_of(f.child, p[1]);
  // Scratch that outlives the scopes: a page of the child's own.
  uint64_t page = 0;
  {
    RemoteSyscalls rs(t);
    page = rs.checked_syscall("mmap", SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  }
  auto at = RemotePtr<pollfd>(page);
  t.write(at, pollfd{p[0], POLLIN, 0});
  {
    RemoteSyscalls rs(t);
    rs.start_syscall(SYS_poll, {page, 1, 600'000, 0, 0, 0});
    ASSERT_TRUE(eventually([&] { return blocked_in_syscall(f.child.pid()) == SYS_poll; }));
    rs.interrupt_syscall();
    EXPECT_EQ(result_of(rs, stops), -kERestartRestartBlock);
  }
  {
    RemoteSyscalls rs(t);
    EXPECT_EQ(remote_getpid(rs), f.child.pid());  // other calls in between
    rs.start_syscall(SYS_restart_syscall, {});
    ASSERT_TRUE(eventually([&] { return blocked_in_syscall(f.child.pid()) == SYS_restart_syscall; }));
    ASSERT_EQ(::write(writer.get(), "x", 1), 1);
    EXPECT_EQ(result_of(rs, stops), 1);
    EXPECT_EQ(t.read(at).revents, POLLIN);
    EXPECT_EQ(rs.syscall(SYS_munmap, page, 4096), 0);
  }
  t.detach();
  EXPECT_EQ(f.child.echo(10), 10u);
}

TEST(Ptrace, RegsForRestartRewindsLikeTheKernel) {
  Regs r{};
  r.rip = 0x401002;
  r.orig_rax = SYS_read;
  r.rdi = 3;
  for (long code : {512L, 513L, 514L, 516L}) {
    r.rax = static_cast<uint64_t>(-code);
    Regs out = regs_for_restart(r);
    EXPECT_EQ(out.rip, 0x401000u) << code;
    EXPECT_EQ(out.rax, static_cast<uint64_t>(SYS_read)) << code;
    EXPECT_EQ(out.rdi, 3u);
  }
  r.rax = static_cast<uint64_t>(-EINTR);  // a finished call stays finished
  EXPECT_EQ(regs_for_restart(r).rip, 0x401002u);
  r.rax = static_cast<uint64_t>(-512);
  r.orig_rax = ~uint64_t{0};  // not in a syscall at all
  EXPECT_EQ(regs_for_restart(r).rip, 0x401002u);
}

// A relative sleep stopped with -ERESTART_RESTARTBLOCK asks for what its
// `rem` holds (the kernel wrote the remaining time there); without `rem`,
// or absolute, or for any other code, the request stays.
TEST(Ptrace, RegsForRestartSleepsOnlyWhatWasLeft) {
  Regs r{};
  r.rip = 0x401002;
  r.rax = static_cast<uint64_t>(-516);
  r.orig_rax = SYS_nanosleep;
  r.rdi = 0x7000;  // req
  r.rsi = 0x7010;  // rem
  Regs out = regs_for_restart(r);
  EXPECT_EQ(out.rdi, 0x7010u);
  EXPECT_EQ(out.rsi, 0x7010u);
  EXPECT_EQ(out.rax, static_cast<uint64_t>(SYS_nanosleep));
  EXPECT_EQ(out.rip, 0x401000u);
  r.rsi = 0;
  EXPECT_EQ(regs_for_restart(r).rdi, 0x7000u);

  r.orig_rax = SYS_clock_nanosleep;
  r.rdi = CLOCK_MONOTONIC;
  r.rsi = 0;        // relative
  r.rdx = 0x7000;   // req
  r.r10 = 0x7010;   // rem
  EXPECT_EQ(regs_for_restart(r).rdx, 0x7010u);
  r.rsi = TIMER_ABSTIME;
  EXPECT_EQ(regs_for_restart(r).rdx, 0x7000u);
  r.rsi = 0;
  r.rax = static_cast<uint64_t>(-514);  // not the restart block's code
  EXPECT_EQ(regs_for_restart(r).rdx, 0x7000u);
}

// Cost of one injected call, tracer and tracee on the same CPU and on
// different CPUs. Printed, not asserted: it depends on the machine.
TEST(PtraceCost, InjectedGetpid) {
  Frozen f;
  Tracee& t = f.t();
  cpu_set_t saved;
  ASSERT_EQ(::sched_getaffinity(0, sizeof saved, &saved), 0);
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &saved)) cpus.push_back(c);
  }
  auto pin = [](pid_t who, int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return ::sched_setaffinity(who, sizeof set, &set) == 0;
  };
  constexpr int kCalls = 10000;
  for (StepMode mode : {StepMode::syscall_stops, StepMode::single_step}) {
    for (bool same : {true, false}) {
      if (!same && cpus.size() < 2) continue;
      ASSERT_TRUE(pin(0, cpus[0]));
      ASSERT_TRUE(pin(f.child.pid(), same ? cpus[0] : cpus[1]));
      RemoteSyscalls rs(t, SyscallSite::any, mode);
      for (int i = 0; i < 200; ++i) rs.syscall(SYS_getpid);
      int wrong = 0;
      auto t0 = Clock::now();
      for (int i = 0; i < kCalls; ++i) wrong += rs.syscall(SYS_getpid) != f.child.pid();
      double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / kCalls;
      EXPECT_EQ(wrong, 0);
      std::printf("[ cost     ] injected getpid, %s, %s CPU: %.2f us/call (%d calls)\n",
                  mode == StepMode::syscall_stops ? "syscall-stops" : "single-step", same ? "same" : "other", us,
                  kCalls);
    }
  }
  ::sched_setaffinity(0, sizeof saved, &saved);
  ::sched_setaffinity(f.child.pid(), sizeof saved, &saved);
  t.detach();
  EXPECT_EQ(f.child.echo(1), 1u);
}

}  // namespace
}  // namespace roam::ptrace
