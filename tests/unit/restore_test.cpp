// Capture a running workload, kill it, restore it into a fresh stub on the
// same machine, and let the workload verify itself (tests/workloads).
//
// The stub is given the original's stdout pipe as its fd 1: file descriptors
// do not travel in the image, and on one machine this stands in for the
// deputy's forwarded I/O.
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "roam/capture.hpp"
#include "roam/error.hpp"
#include "roam/fd.hpp"
#include "roam/image.hpp"
#include "roam/image_maps.hpp"
#include "roam/ptrace.hpp"
#include "roam/restore.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::string workload_path(const std::string& name) {
  auto self = std::filesystem::read_symlink("/proc/self/exe");
  return (self.parent_path() / ".." / "workloads" / name).string();
}

// A workload started with its stdout on a pipe we read.
class Workload {
 public:
  explicit Workload(const std::vector<std::string>& argv) {
    int p[2];
    roam::check_sys(::pipe2(p, O_CLOEXEC), "pipe2");
    out_ = roam::FileDesc(p[0]);
    write_ = roam::FileDesc(p[1]);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(write_.get(), 1);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
  }
  ~Workload() {
    for (pid_t p : {pid_, restored_}) {
      if (p > 0 && ::kill(p, SIGKILL) == 0) ::waitpid(p, nullptr, 0);
    }
  }

  pid_t pid() const { return pid_; }
  int stdout_write_end() const { return write_.get(); }
  void forget_original() { pid_ = -1; }
  void set_restored(pid_t p) { restored_ = p; }

  // The next line on its stdout, or "" after `timeout`.
  std::string line(std::chrono::milliseconds timeout = 20s) {
    auto deadline = Clock::now() + timeout;
    for (;;) {
      auto nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string l = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return l;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left <= 0ms) return "";
      pollfd pfd{out_.get(), POLLIN, 0};
      if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) continue;
      char chunk[256];
      ssize_t n = ::read(out_.get(), chunk, sizeof chunk);
      if (n <= 0) return "";
      buf_.append(chunk, static_cast<size_t>(n));
    }
  }

  // The line that starts with `prefix`, skipping others.
  std::string line_starting(const std::string& prefix) {
    for (;;) {
      std::string l = line();
      if (l.empty() || l.rfind(prefix, 0) == 0) return l;
    }
  }

 private:
  roam::FileDesc out_, write_;
  std::string buf_;
  pid_t pid_ = -1;
  pid_t restored_ = -1;
};

int wait_exit(pid_t pid, std::chrono::seconds timeout = 30s) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  EXPECT_GE(fd, 0);
  roam::FileDesc pidfd(fd);
  pollfd pfd{pidfd.get(), POLLIN, 0};
  EXPECT_EQ(::poll(&pfd, 1, static_cast<int>(std::chrono::milliseconds(timeout).count())), 1)
      << "process " << pid << " did not exit";
  int status = -1;
  EXPECT_EQ(::waitpid(pid, &status, 0), pid);
  return status;
}

// Migrates the workload into a stub on this machine, then lets it finish.
// Returns the time from freezing the original to resuming the body.
std::chrono::microseconds migrate_and_check(Workload& w) {
  std::string ready = w.line();
  EXPECT_EQ(ready.rfind("READY", 0), 0u) << "got '" << ready << "'";
  std::this_thread::sleep_for(100ms);  // let it work a while

  // The stub is ready before the freeze, as a remote node would have it
  // (and forked while this process is still small).
  roam::ptrace::Tracee stub = roam::restore::spawn_stub({.fds = {{w.stdout_write_end(), 1}}});
  w.set_restored(stub.tid());

  roam::image::Frozen frozen = roam::image::capture(w.pid());
  auto captured = Clock::now();
  int status = roam::image::kill_frozen(frozen);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  w.forget_original();

  roam::restore::RestoreTimes times;
  auto restore_start = Clock::now();
  roam::restore::restore_into(stub, frozen.image, &times);
  stub.detach();
  auto resumed = Clock::now();
  pid_t body = stub.tid();
  auto us = [](auto d) { return static_cast<long long>(std::chrono::duration_cast<std::chrono::microseconds>(d).count()); };
  std::printf("migration of %s: capture %lld us (proc %lld, injected %lld, pages %lld), kill %lld us, restore %lld us\n",
              frozen.image.comm.c_str(), us(captured - frozen.frozen_at), us(frozen.times.proc),
              us(frozen.times.injected), us(frozen.times.pages), us(restore_start - captured), us(resumed - restore_start));
  auto freeze_to_resume = std::chrono::duration_cast<std::chrono::microseconds>(resumed - frozen.frozen_at);
  std::printf("restore of %s: layout %lld us, mapping %lld us, pages %lld us (%llu bytes), state %lld us\n",
              frozen.image.comm.c_str(), static_cast<long long>(times.layout.count()),
              static_cast<long long>(times.mapping.count()), static_cast<long long>(times.pages.count()),
              static_cast<unsigned long long>(times.page_bytes), static_cast<long long>(times.state.count()));

  std::this_thread::sleep_for(100ms);  // it runs on in the stub
  EXPECT_EQ(::kill(body, SIGUSR1), 0);
  std::string verdict = w.line_starting("PASS");
  EXPECT_EQ(verdict, "PASS");
  int st = wait_exit(body);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "body status " << st;
  w.set_restored(-1);
  return freeze_to_resume;
}

std::string fd_target(pid_t pid, int fd) {
  std::error_code ec;
  auto t = std::filesystem::read_symlink("/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd), ec);
  return ec ? "" : t.string();
}

TEST(Restore, StubHasExactlyTheFdsAskedFor) {
  int a[2], b[2];
  ASSERT_EQ(::pipe(a), 0);
  ASSERT_EQ(::pipe(b), 0);
  roam::FileDesc a0(a[0]), a1(a[1]), b0(b[0]), b1(b[1]);
  // Swapped: each source is the other's target.
  roam::ptrace::Tracee stub =
      roam::restore::spawn_stub({.fds = {{a1.get(), b1.get()}, {b1.get(), a1.get()}, {a0.get(), 40}}});
  pid_t pid = stub.tid();
  EXPECT_EQ(fd_target(pid, b1.get()), fd_target(::getpid(), a1.get()));
  EXPECT_EQ(fd_target(pid, a1.get()), fd_target(::getpid(), b1.get()));
  EXPECT_EQ(fd_target(pid, 40), fd_target(::getpid(), a0.get()));
  size_t open = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    (void)e;
    ++open;
  }
  EXPECT_EQ(open, 3u);
  ::kill(pid, SIGKILL);
  try {
    stub.resume_as(roam::ptrace::Resume::cont);
    for (;;) stub.wait_stop();
  } catch (const roam::ptrace::TraceeDied&) {
  }
}

TEST(Restore, CpuLoopCarriesOn) {
  Workload w({workload_path("cpu_loop")});
  migrate_and_check(w);
}

TEST(Restore, MemPattern64MiB) {
  Workload w({workload_path("mem_pattern"), "64"});
  auto t = migrate_and_check(w);
  std::printf("mem_pattern 64 MiB: freeze to resume %.2f ms\n", static_cast<double>(t.count()) / 1000.0);
}

// As a remote node moves a process: the stub is prepared from a capture of
// the workload still running (`plan`, which `edit` may change to stand for
// a layout that changed before the freeze), then restored from the image
// taken frozen. Returns what prepare() did.
roam::restore::Prepared migrate_prepared(Workload& w, const std::function<void(roam::image::ProcessImage&)>& edit,
                                         std::vector<roam::image::Vma>* body_maps = nullptr) {
  std::string ready = w.line();
  EXPECT_EQ(ready.rfind("READY", 0), 0u) << "got '" << ready << "'";
  roam::ptrace::Tracee stub = roam::restore::spawn_stub({.fds = {{w.stdout_write_end(), 1}}});
  w.set_restored(stub.tid());
  roam::image::ProcessImage plan = roam::image::capture_from_proc(w.pid());
  if (edit) edit(plan);
  roam::restore::Prepared prepared = roam::restore::prepare(stub, plan);

  roam::image::Frozen frozen = roam::image::capture(w.pid());
  int status = roam::image::kill_frozen(frozen);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  w.forget_original();
  roam::restore::restore_into(stub, frozen.image, roam::restore::PageSource{}, prepared);
  if (body_maps) *body_maps = roam::image::read_maps(stub.tid());
  stub.detach();
  pid_t body = stub.tid();
  EXPECT_EQ(::kill(body, SIGUSR1), 0);
  EXPECT_EQ(w.line_starting("PASS"), "PASS");
  int st = wait_exit(body);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "body status " << st;
  w.set_restored(-1);
  return prepared;
}

TEST(Restore, PreparedStubHasTheMemoryFaultedInBeforeTheFreeze) {
  Workload w({workload_path("mem_pattern"), "64"});
  auto p = migrate_prepared(w, {});
  EXPECT_GE(p.populated_bytes, uint64_t{64} << 20);
}

TEST(Restore, PreparedStubTakesARegionLayoutThatChangedMeanwhile) {
  Workload w({workload_path("mem_pattern"), "16"});
  uint64_t stale = 0x200000000000;  // free in the workload (no ASLR lands there)
  uint64_t dropped = 0;
  std::vector<roam::image::Vma> maps;
  migrate_prepared(w, [&](roam::image::ProcessImage& plan) {
    // The plan lacks the biggest anonymous region (mapped "after" it was
    // made) and has one the process has "since" unmapped.
    auto big = std::max_element(plan.vmas.begin(), plan.vmas.end(), [](const auto& a, const auto& b) {
      bool aa = a.vma.kind == roam::image::VmaKind::anon, ba = b.vma.kind == roam::image::VmaKind::anon;
      return aa != ba ? ba : a.vma.size() < b.vma.size();
    });
    ASSERT_EQ(big->vma.kind, roam::image::VmaKind::anon);
    dropped = big->vma.start;
    plan.vmas.erase(big);
    std::erase_if(plan.page_map, [&](const roam::image::PageRun& r) { return r.start >= dropped && r.start < dropped + (16u << 20); });
    roam::image::ImageVma ghost;
    ghost.vma.start = stale;
    ghost.vma.end = stale + (1u << 20);
    ghost.vma.prot = roam::image::kProtRead | roam::image::kProtWrite;
    ghost.vma.kind = roam::image::VmaKind::anon;
    auto at = std::upper_bound(plan.vmas.begin(), plan.vmas.end(), stale,
                               [](uint64_t a, const roam::image::ImageVma& v) { return a < v.vma.start; });
    plan.vmas.insert(at, ghost);
  }, &maps);
  EXPECT_NE(dropped, 0u);
  EXPECT_TRUE(std::none_of(maps.begin(), maps.end(), [&](const auto& v) { return v.start == stale; }))
      << "the region only the plan had is still mapped";
  EXPECT_TRUE(std::any_of(maps.begin(), maps.end(), [&](const auto& v) { return v.start <= dropped && dropped < v.end; }))
      << "the region the plan lacked is not mapped";
}

TEST(Restore, FpuRegisters) {
  Workload w({workload_path("fpu_regs")});
  migrate_and_check(w);
}

// Every page of `want` is mapped in `have` with the same protection, sharing
// and file (the kernel may merge neighbours, so regions need not match 1:1).
void expect_same_layout(const std::vector<roam::image::ImageVma>& want, const std::vector<roam::image::ImageVma>& have) {
  for (const auto& w : want) {
    const roam::image::Vma& v = w.vma;
    if (v.kind == roam::image::VmaKind::vsyscall) continue;
    uint64_t covered = v.start;
    for (const auto& h : have) {
      const roam::image::Vma& b = h.vma;
      if (b.end <= covered || b.start > covered) continue;
      EXPECT_EQ(b.prot, v.prot) << std::hex << "region " << v.start << "-" << v.end << " " << v.path;
      EXPECT_EQ(b.shared, v.shared) << std::hex << "region " << v.start;
      EXPECT_EQ(b.path, v.path) << std::hex << "region " << v.start;
      EXPECT_EQ(b.kind, v.kind) << std::hex << "region " << v.start << " " << v.path;
      if (v.kind == roam::image::VmaKind::file) {
        EXPECT_EQ(b.inode, v.inode) << v.path;
        EXPECT_EQ(b.offset + (covered - b.start), v.offset + (covered - v.start)) << v.path;
      }
      covered = std::min(b.end, v.end);
      if (covered == v.end) break;
    }
    EXPECT_EQ(covered, v.end) << std::hex << "region " << v.start << "-" << v.end << " " << v.path
                              << " is not mapped in the body";
  }
}

TEST(Restore, BodyLooksLikeTheOriginal) {
  Workload w({workload_path("cpu_loop")});
  ASSERT_EQ(w.line().rfind("READY", 0), 0u);
  roam::image::Frozen frozen = roam::image::capture(w.pid());
  roam::image::kill_frozen(frozen);
  w.forget_original();
  const roam::image::ProcessImage& orig = frozen.image;

  roam::ptrace::Tracee stub = roam::restore::spawn_stub({.fds = {{w.stdout_write_end(), 1}}});
  w.set_restored(stub.tid());
  roam::restore::restore_into(stub, orig);
  roam::image::ProcessImage body = roam::image::capture_from_proc(stub.tid());
  roam::image::fill_injected(stub, body);

  expect_same_layout(orig.vmas, body.vmas);
  roam::image::MmFields want_mm = orig.mm;
  EXPECT_EQ(body.mm, want_mm);
  EXPECT_EQ(body.signals.blocked, orig.signals.blocked);
  EXPECT_EQ(body.signals.caught, orig.signals.caught);
  EXPECT_EQ(body.signals.ignored, orig.signals.ignored);
  EXPECT_EQ(body.sigactions, orig.sigactions);
  EXPECT_EQ(body.sigaltstack, orig.sigaltstack);
  EXPECT_EQ(body.clear_child_tid, orig.clear_child_tid);
  EXPECT_EQ(body.robust_list, orig.robust_list);
  EXPECT_EQ(body.rseq, orig.rseq);
  EXPECT_EQ(body.rlimits, orig.rlimits);
  EXPECT_EQ(body.umask, orig.umask);
  EXPECT_EQ(body.comm, orig.comm);
  EXPECT_EQ(body.misc, orig.misc);
  EXPECT_EQ(body.personality, orig.personality);
  EXPECT_EQ(body.regs->gp, orig.regs->gp);
  EXPECT_EQ(body.regs->xstate.size(), orig.regs->xstate.size());

  // And it still runs.
  stub.detach();
  ASSERT_EQ(::kill(body.pid, SIGUSR1), 0);
  EXPECT_EQ(w.line_starting("PASS"), "PASS");
  int st = wait_exit(body.pid);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "body status " << st;
  w.set_restored(-1);
}

// A child of this test (forked, no exec) that runs `body` with two pipes:
// commands in, a verdict line out.
class Child {
 public:
  template <typename F>
  explicit Child(F body) {
    int a[2], b[2];
    roam::check_sys(::pipe(a), "pipe");
    roam::check_sys(::pipe(b), "pipe");
    cmd_rd_ = roam::FileDesc(a[0]);
    cmd_wr_ = roam::FileDesc(a[1]);
    out_rd_ = roam::FileDesc(b[0]);
    out_wr_ = roam::FileDesc(b[1]);
    pid_ = ::fork();
    if (pid_ == 0) body(cmd_rd_.get(), out_wr_.get());
  }
  ~Child() {
    if (pid_ > 0 && ::kill(pid_, SIGKILL) == 0) ::waitpid(pid_, nullptr, 0);
  }
  pid_t pid() const { return pid_; }
  void set_pid(pid_t p) { pid_ = p; }
  // The same fd numbers in a stub.
  roam::restore::StubOptions stub_fds() const {
    return {.fds = {{cmd_rd_.get(), cmd_rd_.get()}, {out_wr_.get(), out_wr_.get()}}};
  }
  void send(char c) { ASSERT_EQ(::write(cmd_wr_.get(), &c, 1), 1); }
  std::string verdict(std::chrono::milliseconds timeout = 20s) {
    pollfd pfd{out_rd_.get(), POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(timeout.count())) != 1) return "";
    char buf[64];
    ssize_t n = ::read(out_rd_.get(), buf, sizeof buf);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  }

 private:
  roam::FileDesc cmd_rd_, cmd_wr_, out_rd_, out_wr_;
  pid_t pid_ = -1;
};

void say(int fd, bool ok) {
  const char* msg = ok ? "PASS\n" : "FAIL\n";
  (void)!::write(fd, msg, 5);
}

// Waits until `pid` sleeps in a system call.
void wait_sleeping(pid_t pid) {
  for (int i = 0; i < 200; ++i) {
    FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
    ASSERT_NE(f, nullptr);
    char state = 0;
    int rc = std::fscanf(f, "%*d (%*[^)]) %c", &state);
    std::fclose(f);
    if (rc == 1 && state == 'S') return;
    std::this_thread::sleep_for(5ms);
  }
  FAIL() << "process " << pid << " never went to sleep";
}

// Captures a child asleep in a system call, restores it and returns the body.
pid_t move_sleeping_child(Child& c, long want_syscall, long want_rax) {
  wait_sleeping(c.pid());
  std::this_thread::sleep_for(50ms);
  roam::image::Frozen frozen = roam::image::capture(c.pid());
  user_regs_struct regs;
  EXPECT_EQ(frozen.image.regs->gp.size(), sizeof regs);
  std::memcpy(&regs, frozen.image.regs->gp.data(), sizeof regs);
  EXPECT_EQ(static_cast<long>(regs.orig_rax), want_syscall);
  EXPECT_EQ(static_cast<long>(regs.rax), want_rax);
  roam::image::kill_frozen(frozen);
  pid_t body = roam::restore::restore(frozen.image, c.stub_fds());
  c.set_pid(body);
  return body;
}

constexpr long kERestartSys = -512;
constexpr long kERestartRestartBlock = -516;

TEST(Restore, ReadInterruptedAtHomeIsReissued) {
  Child c([](int cmd, int out) {
    struct sigaction sa {};
    sa.sa_handler = [](int) {};
    sa.sa_flags = SA_RESTART;
    ::sigaction(SIGUSR2, &sa, nullptr);
    char got = 0;
    ssize_t n = ::read(cmd, &got, 1);
    say(out, n == 1 && got == 'x');
    ::_exit(0);
  });
  pid_t body = move_sleeping_child(c, SYS_read, kERestartSys);
  std::this_thread::sleep_for(50ms);
  ASSERT_EQ(::kill(body, SIGUSR2), 0);  // SA_RESTART: the read goes on
  std::this_thread::sleep_for(50ms);
  c.send('x');
  EXPECT_EQ(c.verdict(), "PASS\n");
  int st = wait_exit(body);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "body status " << st;
  c.set_pid(-1);
}

TEST(Restore, SleepInterruptedAtHomeStartsOver) {
  Child c([](int, int out) {
    timespec ts{0, 400'000'000};
    // The restart block belongs to the old task: the body re-issues the
    // sleep rather than getting EINTR from the stub's restart block.
    int rc = ::nanosleep(&ts, nullptr);
    say(out, rc == 0);
    ::_exit(0);
  });
  pid_t body = move_sleeping_child(c, SYS_clock_nanosleep, kERestartRestartBlock);
  EXPECT_EQ(c.verdict(), "PASS\n");
  int st = wait_exit(body);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "body status " << st;
  c.set_pid(-1);
}

char g_altstack[64 * 1024];
volatile sig_atomic_t g_on_altstack = 0;

TEST(Restore, SignalStateSurvives) {
  Child c([](int cmd, int out) {
    stack_t ss{};
    ss.ss_sp = g_altstack;
    ss.ss_size = sizeof g_altstack;
    ::sigaltstack(&ss, nullptr);
    struct sigaction sa {};
    sa.sa_handler = [](int) {
      char here;
      g_on_altstack = &here >= g_altstack && &here < g_altstack + sizeof g_altstack;
    };
    sa.sa_flags = SA_ONSTACK;
    ::sigaction(SIGUSR1, &sa, nullptr);
    ::signal(SIGTRAP, SIG_IGN);  // and the restore must not single-step it away
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR2);
    ::sigprocmask(SIG_BLOCK, &block, nullptr);
    ::umask(027);
    char got = 0;
    if (::read(cmd, &got, 1) != 1) ::_exit(1);
    bool ok = ::umask(0) == 027;
    ok = ok && ::signal(SIGTRAP, SIG_IGN) == SIG_IGN;
    sigset_t now;
    ::sigprocmask(SIG_BLOCK, nullptr, &now);
    ok = ok && sigismember(&now, SIGUSR2);
    // Not raise(): glibc's cached tid is the original's (no identity
    // virtualization yet), so tgkill(new pid, old tid) would fail.
    ::syscall(SYS_kill, ::getpid(), SIGUSR1);
    ok = ok && g_on_altstack;
    say(out, ok);
    ::_exit(0);
  });
  pid_t body = move_sleeping_child(c, SYS_read, kERestartSys);
  c.send('x');
  EXPECT_EQ(c.verdict(), "PASS\n");
  int st = wait_exit(body);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "body status " << st;
  c.set_pid(-1);
}

// madvise and mlock state lives in the regions' VmFlags: a restored process
// keeps it, so that a fork after the move still leaves out MADV_DONTFORK
// memory and wipes MADV_WIPEONFORK memory.
constexpr size_t kAdvisedBytes = 4 * 4096;
char* g_advised[9];

TEST(Restore, RegionAdviceSurvives) {
  Child c([](int cmd, int out) {
    const int advice[] = {MADV_DONTFORK, MADV_WIPEONFORK, MADV_DONTDUMP, MADV_HUGEPAGE, MADV_NOHUGEPAGE,
                          MADV_SEQUENTIAL, MADV_RANDOM, -1 /* mlock */, -2 /* mlock2(MLOCK_ONFAULT) */};
    for (size_t i = 0; i < std::size(advice); ++i) {
      auto* p = static_cast<char*>(::mmap(nullptr, kAdvisedBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
      if (p == MAP_FAILED) ::_exit(2);
      std::memset(p, 0x5a, kAdvisedBytes);
      int rc = advice[i] >= 0 ? ::madvise(p, kAdvisedBytes, advice[i])
               : advice[i] == -1 ? ::mlock(p, kAdvisedBytes)
                                 : static_cast<int>(::syscall(SYS_mlock2, p, kAdvisedBytes, MLOCK_ONFAULT));
      if (rc != 0) ::_exit(3);
      g_advised[i] = p;
    }
    char got = 0;
    if (::read(cmd, &got, 1) != 1) ::_exit(1);
    // DONTFORK: not in the child. WIPEONFORK: zeroes in the child. The rest: as written.
    pid_t kid = ::fork();
    if (kid == 0) {
      unsigned char vec;
      bool ok = ::mincore(g_advised[0], 4096, &vec) != 0 && errno == ENOMEM;
      ok = ok && g_advised[1][0] == 0 && g_advised[1][kAdvisedBytes - 1] == 0;
      ok = ok && g_advised[2][0] == 0x5a;
      ::_exit(ok ? 0 : 1);
    }
    int st = 0;
    ::waitpid(kid, &st, 0);
    bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0 && g_advised[0][0] == 0x5a && g_advised[1][0] == 0x5a;
    say(out, ok);
    ::_exit(0);
  });
  wait_sleeping(c.pid());
  std::vector<roam::image::Vma> before = roam::image::read_maps(c.pid());
  pid_t body = move_sleeping_child(c, SYS_read, kERestartSys);
  std::vector<roam::image::Vma> after = roam::image::read_maps(body);
  using namespace roam::image;
  constexpr uint64_t kAdviceFlags = kVmDontCopy | kVmWipeOnFork | kVmDontDump | kVmHugePage | kVmNoHugePage |
                                    kVmSeqRead | kVmRandRead | kVmLocked | kVmLockOnFault;
  int advised = 0;
  for (const Vma& v : before) {
    if (v.kernel_provided() || (v.flags & kAdviceFlags) == 0) continue;
    ++advised;
    auto it = std::find_if(after.begin(), after.end(), [&](const Vma& b) { return b.start == v.start; });
    ASSERT_NE(it, after.end()) << std::hex << "region " << v.start << " is missing";
    EXPECT_EQ(it->flags & kAdviceFlags, v.flags & kAdviceFlags) << std::hex << "region " << v.start;
  }
  EXPECT_GE(advised, 9);
  c.send('x');
  EXPECT_EQ(c.verdict(), "PASS\n");
  int st = wait_exit(body);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "body status " << st;
  c.set_pid(-1);
}

// mlockall(MCL_FUTURE) is the mm's default flags, shown nowhere in /proc:
// the capture probes it, the restore sets it, so what the process maps after
// the move is locked (faulted in at mmap) as before; with MCL_ONFAULT it is
// locked but not faulted in.
TEST(Restore, MlockallFutureSurvives) {
  for (int flags : {MCL_FUTURE, MCL_FUTURE | MCL_ONFAULT}) {
    SCOPED_TRACE(flags == MCL_FUTURE ? "MCL_FUTURE" : "MCL_FUTURE|MCL_ONFAULT");
    Child c([flags](int cmd, int out) {
      constexpr size_t kLen = 64 << 10;
      auto resident = [] {
        void* p = ::mmap(nullptr, kLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) ::_exit(2);
        unsigned char vec[kLen / 4096];
        if (::mincore(p, kLen, vec) != 0) ::_exit(3);
        int n = 0;
        for (unsigned char v : vec) n += v & 1;
        return n;  // left mapped: a locked region for the capture to see
      };
      if (::mlockall(flags) != 0) ::_exit(4);
      int want = flags & MCL_ONFAULT ? 0 : static_cast<int>(kLen / 4096);
      if (resident() != want) ::_exit(5);
      char got = 0;
      if (::read(cmd, &got, 1) != 1) ::_exit(1);
      say(out, resident() == want);
      ::_exit(0);
    });
    wait_sleeping(c.pid());
    pid_t body = move_sleeping_child(c, SYS_read, kERestartSys);
    c.send('x');
    EXPECT_EQ(c.verdict(), "PASS\n");
    int st = wait_exit(body);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "body status " << st;
    c.set_pid(-1);
  }
}

// A filter for the seccomp tests: on x86_64, `nr` gets `action`; all else
// passes. Packed as the image holds it.
std::vector<sock_filter> one_rule_filter(long nr, unsigned action) {
  return {BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
          BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
          BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
          BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
          BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<unsigned>(nr), 0, 1),
          BPF_STMT(BPF_RET | BPF_K, action),
          BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
}
std::vector<uint64_t> packed(const std::vector<sock_filter>& f) {
  std::vector<uint64_t> out;
  for (const sock_filter& i : f)
    out.push_back(uint64_t{i.code} | uint64_t{i.jt} << 16 | uint64_t{i.jf} << 24 | uint64_t{i.k} << 32);
  return out;
}
long install_filter(const std::vector<sock_filter>& f, unsigned flags) {
  sock_fprog prog{static_cast<unsigned short>(f.size()), const_cast<sock_filter*>(f.data())};
  return ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
}

// The capture reads a program's filters, the oldest first with their LOG
// flag, and suspends them meanwhile: a rule that kills the process for
// getitimer (the capture injects it) does not fire. Once let go, the
// process is under its filters as before.
TEST(Capture, SeccompFiltersAreReadAndSuspended) {
  const auto first = one_rule_filter(SYS_getcwd, SECCOMP_RET_ERRNO | EACCES);
  const auto second = one_rule_filter(SYS_getitimer, SECCOMP_RET_KILL_PROCESS);
  Child c([&](int cmd, int out) {
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || install_filter(first, SECCOMP_FILTER_FLAG_LOG) != 0 ||
        install_filter(second, 0) != 0)
      ::_exit(2);
    char got = 0;
    if (::read(cmd, &got, 1) != 1) ::_exit(1);
    char buf[256];
    errno = 0;
    say(out, ::syscall(SYS_getcwd, buf, sizeof buf) == -1 && errno == EACCES);
    ::_exit(0);
  });
  wait_sleeping(c.pid());
  {
    roam::image::Frozen f = roam::image::capture(c.pid());
    ASSERT_EQ(f.image.seccomp_filters.size(), 2u);
    EXPECT_EQ(f.image.seccomp_filters[0].insns, packed(first));
    EXPECT_EQ(f.image.seccomp_filters[0].flags, static_cast<uint32_t>(SECCOMP_FILTER_FLAG_LOG));
    EXPECT_EQ(f.image.seccomp_filters[1].insns, packed(second));
    EXPECT_EQ(f.image.seccomp_filters[1].flags, 0u);
    ASSERT_TRUE(f.image.itimers.has_value()) << "the capture read the itimers";
  }  // detached: runs on
  c.send('x');
  EXPECT_EQ(c.verdict(), "PASS\n");
}

// A filter that hands calls to a supervisor (SECCOMP_RET_USER_NOTIF) cannot
// move: the capture refuses it with the reason and lets it run on.
TEST(Capture, SupervisedSeccompFilterIsRefused) {
  const auto notify = one_rule_filter(SYS_getpriority, SECCOMP_RET_USER_NOTIF);
  Child c([&](int cmd, int out) {
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || install_filter(notify, SECCOMP_FILTER_FLAG_NEW_LISTENER) < 0)
      ::_exit(2);
    char got = 0;
    if (::read(cmd, &got, 1) != 1) ::_exit(1);
    say(out, true);
    ::_exit(0);
  });
  wait_sleeping(c.pid());
  try {
    roam::image::capture(c.pid());
    ADD_FAILURE() << "a process under a USER_NOTIF filter was captured";
  } catch (const roam::UserError& e) {
    EXPECT_NE(std::string(e.what()).find("hands calls to a supervisor (SECCOMP_RET_USER_NOTIF)"), std::string::npos)
        << e.what();
  }
  c.send('x');
  EXPECT_EQ(c.verdict(), "PASS\n");
}

// A system call made by our own instruction: the stub below moves its vDSO
// over its own TLS, so it may run nothing but its own code.
__attribute__((always_inline)) inline long raw_syscall(long nr, long a = 0, long b = 0, long c = 0, long d = 0,
                                                       long e = 0) {
  long ret;
  register long r10 asm("r10") = d;
  register long r8 asm("r8") = e;
  asm volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8) : "rcx", "r11", "memory");
  return ret;
}

// The stub's vDSO pieces sit where the image's must go, shifted so that
// moving them straight would unmap one another: restore must go through a
// free range.
TEST(Restore, VdsoMovesThroughAFreeRangeWhenLayoutsOverlap) {
  std::vector<roam::image::Vma> own = roam::image::read_maps(::getpid());
  auto find = [&](roam::image::VmaKind k) {
    for (const auto& v : own)
      if (v.kind == k) return v;
    return roam::image::Vma{};
  };
  roam::image::Vma vvar = find(roam::image::VmaKind::vvar), clock = find(roam::image::VmaKind::vvar_vclock),
                   vdso = find(roam::image::VmaKind::vdso);
  if (vvar.end != clock.start || clock.end != vdso.start) GTEST_SKIP() << "vDSO pieces not laid out as expected";
  // Down by [vvar]'s size: the image's [vvar] then covers the stub's
  // [vvar_vclock] and [vdso], so moving it first would unmap the very
  // [vdso] the restore injects from.
  const long shift = -static_cast<long>(vvar.size());

  Child c([](int cmd, int out) {
    char got = 0;
    say(out, ::read(cmd, &got, 1) == 1 && got == 'x');
    ::_exit(0);
  });
  wait_sleeping(c.pid());
  roam::image::Frozen frozen = roam::image::capture(c.pid());
  roam::image::kill_frozen(frozen);
  c.set_pid(-1);

  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  roam::FileDesc rd(p[0]), wr(p[1]);
  pid_t stub_pid = ::fork();
  if (stub_pid == 0) {
    long ok = 1;
    const long flags = MREMAP_MAYMOVE | MREMAP_FIXED;
    for (const roam::image::Vma* v : {&vvar, &clock, &vdso}) {  // lowest first: none lands on another
      long start = static_cast<long>(v->start), size = static_cast<long>(v->size());
      if (raw_syscall(SYS_mremap, start, size, size, flags, start + shift) < 0) ok = 0;
    }
    char byte = static_cast<char>(ok);
    raw_syscall(SYS_write, wr.get(), reinterpret_cast<long>(&byte), 1);
    for (;;) raw_syscall(SYS_pause);
  }
  c.set_pid(stub_pid);
  wr.reset();
  char byte = 0;
  ASSERT_EQ(::read(rd.get(), &byte, 1), 1);
  ASSERT_EQ(byte, 1) << "the stub could not move its vDSO";
  roam::ptrace::Tracee stub = roam::ptrace::Tracee::seize(
      stub_pid, {roam::ptrace::TraceOption::sysgood, roam::ptrace::TraceOption::exit_kill});
  stub.interrupt();
  roam::restore::restore_into(stub, frozen.image);
  roam::image::ProcessImage body = roam::image::capture_from_proc(stub_pid);
  expect_same_layout(frozen.image.vmas, body.vmas);
  stub.detach();

  c.send('x');
  EXPECT_EQ(c.verdict(), "PASS\n");
  int st = wait_exit(stub_pid);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "body status " << st;
  c.set_pid(-1);
}

TEST(Restore, BodyIsNotResumedWhenRestoreFails) {
  Workload w({workload_path("cpu_loop")});
  ASSERT_EQ(w.line().rfind("READY", 0), 0u);
  roam::image::Frozen frozen = roam::image::capture(w.pid());
  roam::image::ProcessImage broken = frozen.image;
  for (auto& iv : broken.vmas)
    if (iv.vma.kind == roam::image::VmaKind::vdso) iv.vma.end += 4096;  // a vDSO of another size
  EXPECT_THROW(roam::restore::restore(broken, {.fds = {{w.stdout_write_end(), 1}}}), roam::restore::RestoreError);
  // The original was never touched: it carries on once let go.
  frozen.tracee.detach();
  ASSERT_EQ(::kill(w.pid(), SIGUSR1), 0);
  EXPECT_EQ(w.line_starting("PASS"), "PASS");
  int st = wait_exit(w.pid());
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  w.forget_original();
}

}  // namespace
