// The system call table (oscore/include/roam/syscalls.def): its numbers agree
// with the C library's <sys/syscall.h> and with libseccomp's own table, each
// number and name appears once, and the policy and per-argument rules say what
// docs/syscalls.md says.
#include "roam/syscalls.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>

#include <cstdlib>
#include <initializer_list>
#include <set>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

namespace roam {
namespace {

using D = Disposition;

struct Args {
  uint64_t a[6] = {};
  Args(std::initializer_list<uint64_t> values) {
    size_t i = 0;
    for (uint64_t v : values) a[i++] = v;
  }
};

Disposition decide_args(std::string_view name, Args args, int64_t self_pid = 0) {
  int nr = syscall_number(name);
  EXPECT_GE(nr, 0) << name;
  return decide(nr, args.a, self_pid);
}

uint64_t reg(int64_t v) { return static_cast<uint64_t>(v); }

// ---- the table itself ----

TEST(SyscallTable, NumbersAscendAndAppearOnce) {
  auto all = all_syscalls();
  ASSERT_GT(all.size(), 380u);
  std::set<int> seen;
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_TRUE(seen.insert(all[i].nr).second) << "number " << all[i].nr << " twice";
    if (i > 0) {
      EXPECT_GT(all[i].nr, all[i - 1].nr) << all[i].name;
    }
  }
  EXPECT_EQ(all.front().nr, 0);
}

TEST(SyscallTable, NamesAreUniqueIdentifiers) {
  std::set<std::string> seen;
  for (const auto& s : all_syscalls()) {
    std::string name = s.name;
    EXPECT_TRUE(seen.insert(name).second) << name << " twice";
    ASSERT_FALSE(name.empty());
    for (char c : name) EXPECT_TRUE(c == '_' || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) << name;
  }
}

// The kernel's x86_64 table is dense from 0 to 336 and from 424 up: 337..423
// hold nothing (387..423 are reserved, and calls added for every architecture
// at once are numbered from 424).
TEST(SyscallTable, CoversEveryNumberOfTheKernelTable) {
  for (int nr = 0; nr <= 336; ++nr) EXPECT_NE(syscall_info(nr), nullptr) << nr;
  for (int nr = 337; nr < 424; ++nr) EXPECT_EQ(syscall_info(nr), nullptr) << nr;
  for (int nr = 424; nr <= 470; ++nr) EXPECT_NE(syscall_info(nr), nullptr) << nr;
}

TEST(SyscallTable, NewerCallsHaveTheirNumbers) {
  const std::pair<const char*, int> newer[] = {
      {"uretprobe", 335},        {"uprobe", 336},          {"cachestat", 451},      {"fchmodat2", 452},
      {"map_shadow_stack", 453}, {"futex_wake", 454},      {"futex_wait", 455},     {"futex_requeue", 456},
      {"statmount", 457},        {"listmount", 458},       {"lsm_get_self_attr", 459}, {"lsm_set_self_attr", 460},
      {"lsm_list_modules", 461}, {"mseal", 462},           {"setxattrat", 463},     {"getxattrat", 464},
      {"listxattrat", 465},      {"removexattrat", 466},   {"open_tree_attr", 467}, {"file_getattr", 468},
      {"file_setattr", 469},     {"listns", 470},
  };
  for (auto [name, nr] : newer) EXPECT_EQ(syscall_number(name), nr) << name;
}

TEST(SyscallTable, FamiliesAreTheDocumentedOnes) {
  const std::set<std::string> families = {
      "file_io", "fd",      "poll",    "fs",     "mount", "net",  "ipc",      "notify", "memory",
      "futex",   "signal",  "time",    "timer",  "sched", "process", "resource", "cred",  "system",
      "admin",   "ns",      "security", "trace", "aio",   "arch", "obsolete",
  };
  std::set<std::string> used;
  for (const auto& s : all_syscalls()) {
    EXPECT_TRUE(families.count(s.family)) << s.name << ": family " << s.family;
    used.insert(s.family);
  }
  EXPECT_EQ(used, families);
}

TEST(SyscallTable, LookupsRoundTrip) {
  for (const auto& s : all_syscalls()) {
    const SyscallInfo* info = syscall_info(s.nr);
    ASSERT_NE(info, nullptr) << s.name;
    EXPECT_EQ(info, &s);
    EXPECT_EQ(syscall_number(s.name), s.nr);
    EXPECT_EQ(disposition_of(s.nr), s.how);
  }
  EXPECT_EQ(syscall_number("no_such_call"), -1);
  EXPECT_EQ(syscall_number(""), -1);
  EXPECT_EQ(syscall_number("rea"), -1);
}

// ---- cross-checks against independent tables ----

// Every name the C library knows (<sys/syscall.h>, from the kernel headers it
// was built with) has the same number here.
TEST(SyscallTable, AgreesWithSysSyscallH) {
  struct Known {
    const char* name;
    long nr;
  };
#define X(n) {#n, SYS_##n},
  const Known known[] = {
    X(read) X(write) X(open) X(close) X(stat) X(fstat) X(lstat) X(poll) X(lseek) X(mmap) X(mprotect) X(munmap)
    X(brk) X(rt_sigaction) X(rt_sigprocmask) X(rt_sigreturn) X(ioctl) X(pread64) X(pwrite64) X(readv) X(writev)
    X(access) X(pipe) X(select) X(sched_yield) X(mremap) X(msync) X(mincore) X(madvise) X(shmget) X(shmat)
    X(shmctl) X(dup) X(dup2) X(pause) X(nanosleep) X(getitimer) X(alarm) X(setitimer) X(getpid) X(sendfile)
    X(socket) X(connect) X(accept) X(sendto) X(recvfrom) X(sendmsg) X(recvmsg) X(shutdown) X(bind) X(listen)
    X(getsockname) X(getpeername) X(socketpair) X(setsockopt) X(getsockopt) X(clone) X(fork) X(vfork) X(execve)
    X(exit) X(wait4) X(kill) X(uname) X(semget) X(semop) X(semctl) X(shmdt) X(msgget) X(msgsnd) X(msgrcv)
    X(msgctl) X(fcntl) X(flock) X(fsync) X(fdatasync) X(truncate) X(ftruncate) X(getdents) X(getcwd) X(chdir)
    X(fchdir) X(rename) X(mkdir) X(rmdir) X(creat) X(link) X(unlink) X(symlink) X(readlink) X(chmod) X(fchmod)
    X(chown) X(fchown) X(lchown) X(umask) X(gettimeofday) X(getrlimit) X(getrusage) X(sysinfo) X(times)
    X(ptrace) X(getuid) X(syslog) X(getgid) X(setuid) X(setgid) X(geteuid) X(getegid) X(setpgid) X(getppid)
    X(getpgrp) X(setsid) X(setreuid) X(setregid) X(getgroups) X(setgroups) X(setresuid) X(getresuid)
    X(setresgid) X(getresgid) X(getpgid) X(setfsuid) X(setfsgid) X(getsid) X(capget) X(capset) X(rt_sigpending)
    X(rt_sigtimedwait) X(rt_sigqueueinfo) X(rt_sigsuspend) X(sigaltstack) X(utime) X(mknod) X(uselib)
    X(personality) X(ustat) X(statfs) X(fstatfs) X(sysfs) X(getpriority) X(setpriority) X(sched_setparam)
    X(sched_getparam) X(sched_setscheduler) X(sched_getscheduler) X(sched_get_priority_max)
    X(sched_get_priority_min) X(sched_rr_get_interval) X(mlock) X(munlock) X(mlockall) X(munlockall) X(vhangup)
    X(modify_ldt) X(pivot_root) X(_sysctl) X(prctl) X(arch_prctl) X(adjtimex) X(setrlimit) X(chroot) X(sync)
    X(acct) X(settimeofday) X(mount) X(umount2) X(swapon) X(swapoff) X(reboot) X(sethostname) X(setdomainname)
    X(iopl) X(ioperm) X(create_module) X(init_module) X(delete_module) X(get_kernel_syms) X(query_module)
    X(quotactl) X(nfsservctl) X(getpmsg) X(putpmsg) X(afs_syscall) X(tuxcall) X(security) X(gettid) X(readahead)
    X(setxattr) X(lsetxattr) X(fsetxattr) X(getxattr) X(lgetxattr) X(fgetxattr) X(listxattr) X(llistxattr)
    X(flistxattr) X(removexattr) X(lremovexattr) X(fremovexattr) X(tkill) X(time) X(futex) X(sched_setaffinity)
    X(sched_getaffinity) X(set_thread_area) X(io_setup) X(io_destroy) X(io_getevents) X(io_submit) X(io_cancel)
    X(get_thread_area) X(lookup_dcookie) X(epoll_create) X(epoll_ctl_old) X(epoll_wait_old) X(remap_file_pages)
    X(getdents64) X(set_tid_address) X(restart_syscall) X(semtimedop) X(fadvise64) X(timer_create)
    X(timer_settime) X(timer_gettime) X(timer_getoverrun) X(timer_delete) X(clock_settime) X(clock_gettime)
    X(clock_getres) X(clock_nanosleep) X(exit_group) X(epoll_wait) X(epoll_ctl) X(tgkill) X(utimes) X(vserver)
    X(mbind) X(set_mempolicy) X(get_mempolicy) X(mq_open) X(mq_unlink) X(mq_timedsend) X(mq_timedreceive)
    X(mq_notify) X(mq_getsetattr) X(kexec_load) X(waitid) X(add_key) X(request_key) X(keyctl) X(ioprio_set)
    X(ioprio_get) X(inotify_init) X(inotify_add_watch) X(inotify_rm_watch) X(migrate_pages) X(openat) X(mkdirat)
    X(mknodat) X(fchownat) X(futimesat) X(newfstatat) X(unlinkat) X(renameat) X(linkat) X(symlinkat)
    X(readlinkat) X(fchmodat) X(faccessat) X(pselect6) X(ppoll) X(unshare) X(set_robust_list) X(get_robust_list)
    X(splice) X(tee) X(sync_file_range) X(vmsplice) X(move_pages) X(utimensat) X(epoll_pwait) X(signalfd)
    X(timerfd_create) X(eventfd) X(fallocate) X(timerfd_settime) X(timerfd_gettime) X(accept4) X(signalfd4)
    X(eventfd2) X(epoll_create1) X(dup3) X(pipe2) X(inotify_init1) X(preadv) X(pwritev) X(rt_tgsigqueueinfo)
    X(perf_event_open) X(recvmmsg) X(fanotify_init) X(fanotify_mark) X(prlimit64) X(name_to_handle_at)
    X(open_by_handle_at) X(clock_adjtime) X(syncfs) X(sendmmsg) X(setns) X(getcpu) X(process_vm_readv)
    X(process_vm_writev) X(kcmp) X(finit_module) X(sched_setattr) X(sched_getattr) X(renameat2) X(seccomp)
    X(getrandom) X(memfd_create) X(kexec_file_load) X(bpf) X(execveat) X(userfaultfd) X(membarrier) X(mlock2)
    X(copy_file_range) X(preadv2) X(pwritev2) X(pkey_mprotect) X(pkey_alloc) X(pkey_free) X(statx)
    X(io_pgetevents) X(rseq) X(pidfd_send_signal) X(io_uring_setup) X(io_uring_enter) X(io_uring_register)
    X(open_tree) X(move_mount) X(fsopen) X(fsconfig) X(fsmount) X(fspick) X(pidfd_open) X(clone3) X(close_range)
    X(openat2) X(pidfd_getfd) X(faccessat2) X(process_madvise) X(epoll_pwait2) X(mount_setattr) X(quotactl_fd)
    X(landlock_create_ruleset) X(landlock_add_rule) X(landlock_restrict_self) X(memfd_secret)
    X(process_mrelease) X(futex_waitv) X(set_mempolicy_home_node)
  };
#undef X
  for (const auto& k : known) EXPECT_EQ(syscall_number(k.name), k.nr) << k.name;
  EXPECT_GE(std::size(known), 362u);
}

// libseccomp carries its own x86_64 table. It is loaded at run time because
// the test links only the project's libraries; without it the check is skipped.
TEST(SyscallTable, AgreesWithLibseccomp) {
  void* lib = dlopen("libseccomp.so.2", RTLD_NOW | RTLD_LOCAL);
  if (!lib) GTEST_SKIP() << "libseccomp.so.2 not available: " << dlerror();
  using ResolveName = int (*)(uint32_t, const char*);
  using ResolveNum = char* (*)(uint32_t, int);
  auto resolve_name = reinterpret_cast<ResolveName>(dlsym(lib, "seccomp_syscall_resolve_name_arch"));
  auto resolve_num = reinterpret_cast<ResolveNum>(dlsym(lib, "seccomp_syscall_resolve_num_arch"));
  ASSERT_NE(resolve_name, nullptr);
  ASSERT_NE(resolve_num, nullptr);
  constexpr uint32_t kArch = AUDIT_ARCH_X86_64;  // SCMP_ARCH_X86_64

  size_t checked = 0;
  for (const auto& s : all_syscalls()) {
    int nr = resolve_name(kArch, s.name);
    if (nr >= 0) {  // negative: a name this libseccomp does not know for x86_64
      EXPECT_EQ(nr, s.nr) << s.name;
      ++checked;
    }
    if (char* name = resolve_num(kArch, s.nr)) {
      EXPECT_STREQ(name, s.name) << s.nr;
      std::free(name);
    }
  }
  // libseccomp 2.5.4 knows x86_64 up to 450; newer releases know more.
  EXPECT_GE(checked, 360u);
  dlclose(lib);
}

// ---- the policy ----

TEST(SyscallPolicy, SpotChecks) {
  EXPECT_EQ(disposition_of(SYS_read), D::forward);
  EXPECT_EQ(disposition_of(SYS_write), D::forward);
  EXPECT_EQ(disposition_of(SYS_openat), D::forward);
  EXPECT_EQ(disposition_of(SYS_close), D::forward);
  EXPECT_EQ(disposition_of(SYS_ioctl), D::forward);
  EXPECT_EQ(disposition_of(SYS_wait4), D::forward);
  EXPECT_EQ(disposition_of(SYS_kill), D::forward);
  EXPECT_EQ(disposition_of(SYS_uname), D::forward);
  EXPECT_EQ(disposition_of(SYS_futex), D::local);
  EXPECT_EQ(disposition_of(syscall_number("futex_wait")), D::local);
  EXPECT_EQ(disposition_of(SYS_brk), D::local);
  EXPECT_EQ(disposition_of(SYS_munmap), D::local);
  EXPECT_EQ(disposition_of(SYS_nanosleep), D::local);
  EXPECT_EQ(disposition_of(SYS_rt_sigreturn), D::local);
  EXPECT_EQ(disposition_of(SYS_rt_sigprocmask), D::local);
  EXPECT_EQ(disposition_of(SYS_rt_sigtimedwait), D::local);
  EXPECT_EQ(disposition_of(SYS_rseq), D::local);
  EXPECT_EQ(disposition_of(SYS_getrandom), D::local);
  EXPECT_EQ(disposition_of(SYS_fork), D::home);
  EXPECT_EQ(disposition_of(SYS_vfork), D::home);
  EXPECT_EQ(disposition_of(SYS_clone), D::home);
  EXPECT_EQ(disposition_of(SYS_clone3), D::home);
  EXPECT_EQ(disposition_of(SYS_execve), D::home);
  EXPECT_EQ(disposition_of(SYS_shmat), D::home);
  EXPECT_EQ(disposition_of(SYS_io_uring_setup), D::home);
  EXPECT_EQ(disposition_of(SYS_userfaultfd), D::home);
  EXPECT_EQ(disposition_of(SYS_ptrace), D::home);
  EXPECT_EQ(disposition_of(SYS_seccomp), D::home);
  EXPECT_EQ(disposition_of(SYS_signalfd4), D::home);
  EXPECT_EQ(disposition_of(SYS_getpid), D::virtual_);
  EXPECT_EQ(disposition_of(SYS_gettid), D::virtual_);
  EXPECT_EQ(disposition_of(SYS_getppid), D::virtual_);
  EXPECT_EQ(disposition_of(SYS_getuid), D::virtual_);
  EXPECT_EQ(disposition_of(SYS_getrusage), D::virtual_);
  EXPECT_EQ(disposition_of(SYS_exit), D::exit);
  EXPECT_EQ(disposition_of(SYS_exit_group), D::exit);
  EXPECT_EQ(disposition_of(SYS_mmap), D::inspect);
  EXPECT_EQ(disposition_of(SYS_prctl), D::inspect);
}

TEST(SyscallPolicy, UnknownNumbersGoHome) {
  for (int nr : {9999, -1, 337, 423, 471, 1000, 0x40000000 /* x32 read */, 0x40000000 | 512}) {
    EXPECT_EQ(syscall_info(nr), nullptr) << nr;
    EXPECT_EQ(disposition_of(nr), D::home) << nr;
    Args zero{};
    EXPECT_EQ(decide(nr, zero.a), D::home) << nr;
  }
}

TEST(SyscallPolicy, NumbersWithPartitionTheTable) {
  size_t total = 0;
  for (D how : {D::local, D::forward, D::virtual_, D::home, D::inspect, D::exit}) {
    auto nrs = numbers_with(how);
    total += nrs.size();
    for (size_t i = 0; i < nrs.size(); ++i) {
      EXPECT_EQ(disposition_of(nrs[i]), how) << nrs[i];
      if (i > 0) {
        EXPECT_LT(nrs[i - 1], nrs[i]);
      }
    }
    EXPECT_FALSE(nrs.empty()) << to_string(how);
  }
  EXPECT_EQ(total, all_syscalls().size());
  EXPECT_EQ(numbers_with(D::exit), (std::vector<int>{SYS_exit, SYS_exit_group}));
}

TEST(SyscallPolicy, DispositionNames) {
  EXPECT_EQ(to_string(D::local), "local");
  EXPECT_EQ(to_string(D::forward), "forward");
  EXPECT_EQ(to_string(D::virtual_), "virtual");
  EXPECT_EQ(to_string(D::home), "home");
  EXPECT_EQ(to_string(D::inspect), "inspect");
  EXPECT_EQ(to_string(D::exit), "exit");
}

// decide() is total: whatever the arguments, an `inspect` call gets a final
// answer, and every other call keeps its listed one.
TEST(SyscallDecide, NeverAnswersInspect) {
  const uint64_t patterns[] = {0, 1, 2, 3, 7, 17, 0x20, 0x22, 100, 101, 4242, ~0ull, 0xffffffffull, 1ull << 32,
                               reg(-2), reg(-6), reg(-8), reg(-14), 0x59616d61};
  for (const auto& s : all_syscalls()) {
    for (uint64_t p : patterns) {
      for (int k = 0; k < 6; ++k) {
        uint64_t a[6] = {};
        a[k] = p;
        a[(k + 1) % 6] = p;
        Disposition d = decide(s.nr, a, 4242);
        EXPECT_NE(d, D::inspect) << s.name;
        if (s.how != D::inspect) {
          EXPECT_EQ(d, s.how) << s.name;
        }
      }
    }
  }
}

TEST(SyscallDecide, Mmap) {
  const uint64_t none = reg(-1);
  // Anonymous private memory runs in the body.
  EXPECT_EQ(decide_args("mmap", {0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, none, 0}), D::local);
  EXPECT_EQ(decide_args("mmap", {0x7000'0000, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, none, 0}),
            D::local);
  EXPECT_EQ(decide_args("mmap", {0, 1 << 21, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, none, 0}),
            D::local);
  // The descriptor of an anonymous mapping is ignored by the kernel, so here too.
  EXPECT_EQ(decide_args("mmap", {0, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, 5, 0}), D::local);
  // Anything shared goes home: a file, or anonymous memory a child will share.
  EXPECT_EQ(decide_args("mmap", {0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, 5, 0}), D::home);
  EXPECT_EQ(decide_args("mmap", {0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, none, 0}), D::home);
  EXPECT_EQ(decide_args("mmap", {0, 4096, PROT_READ, MAP_SHARED_VALIDATE, 5, 0}), D::home);
  // A private file mapping is served by the agent: forward.
  EXPECT_EQ(decide_args("mmap", {0, 8192, PROT_READ | PROT_EXEC, MAP_PRIVATE, 3, 0}), D::forward);
  EXPECT_EQ(decide_args("mmap", {0x4000'0000, 8192, PROT_READ, MAP_PRIVATE | MAP_FIXED | MAP_DENYWRITE, 3, 4096}),
            D::forward);
}

TEST(SyscallDecide, Madvise) {
  EXPECT_EQ(decide_args("madvise", {0x1000, 4096, MADV_DONTNEED}), D::local);
  EXPECT_EQ(decide_args("madvise", {0x1000, 4096, MADV_DONTFORK}), D::local);
  EXPECT_EQ(decide_args("madvise", {0x1000, 4096, MADV_WIPEONFORK}), D::local);
  EXPECT_EQ(decide_args("madvise", {0x1000, 4096, MADV_HWPOISON}), D::home);
  EXPECT_EQ(decide_args("madvise", {0x1000, 4096, 101 /* MADV_SOFT_OFFLINE */}), D::home);
}

TEST(SyscallDecide, RtSigaction) {
  EXPECT_EQ(decide_args("rt_sigaction", {SIGINT, 0x1000, 0, 8}), D::local);
  EXPECT_EQ(decide_args("rt_sigaction", {SIGCHLD, 0, 0x2000, 8}), D::local);  // only reads
  EXPECT_EQ(decide_args("rt_sigaction", {SIGCHLD, 0x1000, 0, 8}), D::forward);
}

// A CPU-time clock id as glibc's clock_getcpuclockid()/pthread_getcpuclockid() build them.
uint64_t cpu_clock(int32_t pid, int32_t which, bool thread) {
  return static_cast<uint32_t>((~pid << 3) | (thread ? 4 : 0) | which);
}
uint64_t fd_clock(int32_t fd) { return static_cast<uint32_t>((~fd << 3) | 3); }

TEST(SyscallDecide, Clocks) {
  const int64_t self = 4242;
  for (clockid_t c : {CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_TAI, CLOCK_MONOTONIC_RAW}) {
    EXPECT_EQ(decide_args("clock_gettime", {static_cast<uint64_t>(c), 0x1000}, self), D::local) << c;
    EXPECT_EQ(decide_args("clock_getres", {static_cast<uint64_t>(c), 0x1000}, self), D::local) << c;
    EXPECT_EQ(decide_args("clock_nanosleep", {static_cast<uint64_t>(c), TIMER_ABSTIME, 0x1000, 0}, self), D::local);
    EXPECT_EQ(decide_args("timer_create", {static_cast<uint64_t>(c), 0, 0x1000}, self), D::local) << c;
  }
  // The caller's own CPU time: restarted in every body, so the agent adds the past.
  for (uint64_t c : {uint64_t{CLOCK_PROCESS_CPUTIME_ID}, uint64_t{CLOCK_THREAD_CPUTIME_ID}, cpu_clock(0, 2, false),
                     cpu_clock(self, 2, false), cpu_clock(0, 0, true)}) {
    EXPECT_EQ(decide_args("clock_gettime", {c, 0x1000}, self), D::virtual_) << c;
    EXPECT_EQ(decide_args("clock_getres", {c, 0x1000}, self), D::local) << c;
    EXPECT_EQ(decide_args("timer_create", {c, 0, 0x1000}, self), D::home) << c;
  }
  EXPECT_EQ(decide_args("clock_nanosleep", {CLOCK_PROCESS_CPUTIME_ID, 0, 0x1000, 0}, self), D::local);
  EXPECT_EQ(decide_args("clock_nanosleep", {CLOCK_PROCESS_CPUTIME_ID, TIMER_ABSTIME, 0x1000, 0}, self), D::home);
  // Another process's CPU clock, or a posix clock descriptor: at home.
  for (uint64_t c : {cpu_clock(777, 2, false), cpu_clock(777, 1, true), fd_clock(3), fd_clock(0)}) {
    EXPECT_EQ(decide_args("clock_gettime", {c, 0x1000}, self), D::forward) << c;
    EXPECT_EQ(decide_args("clock_getres", {c, 0x1000}, self), D::forward) << c;
    EXPECT_EQ(decide_args("clock_nanosleep", {c, 0, 0x1000, 0}, self), D::forward) << c;
    EXPECT_EQ(decide_args("timer_create", {c, 0, 0x1000}, self), D::home) << c;
  }
  // Without knowing its own PID, only 0 names the caller.
  EXPECT_EQ(decide_args("clock_gettime", {cpu_clock(self, 2, false), 0x1000}), D::forward);
  // The kernel reads a clockid from the low 32 bits only.
  EXPECT_EQ(decide_args("clock_gettime", {(1ull << 32) | CLOCK_MONOTONIC, 0x1000}, self), D::local);
}

TEST(SyscallDecide, Prctl) {
  EXPECT_EQ(decide_args("prctl", {PR_SET_NAME, 0x1000}), D::forward);
  EXPECT_EQ(decide_args("prctl", {PR_GET_NAME, 0x1000}), D::forward);
  EXPECT_EQ(decide_args("prctl", {PR_SET_PDEATHSIG, SIGTERM}), D::forward);
  EXPECT_EQ(decide_args("prctl", {PR_SET_NO_NEW_PRIVS, 1}), D::forward);
  EXPECT_EQ(decide_args("prctl", {PR_GET_NO_NEW_PRIVS}), D::forward);
  EXPECT_EQ(decide_args("prctl", {PR_GET_SECCOMP}), D::forward);
  EXPECT_EQ(decide_args("prctl", {PR_SET_CHILD_SUBREAPER, 1}), D::forward);
  EXPECT_EQ(decide_args("prctl", {PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, 0}), D::forward);
  EXPECT_EQ(decide_args("prctl", {PR_SET_PTRACER, 1}), D::forward);
  EXPECT_EQ(decide_args("prctl", {PR_SET_SECCOMP, 2, 0x1000}), D::home);
  EXPECT_EQ(decide_args("prctl", {PR_SET_MM, PR_SET_MM_MAP, 0x1000, 104}), D::home);
  EXPECT_EQ(decide_args("prctl", {59 /* PR_SET_SYSCALL_USER_DISPATCH */, 1}), D::home);
  EXPECT_EQ(decide_args("prctl", {65 /* PR_SET_MDWE */, 1}), D::home);
  EXPECT_EQ(decide_args("prctl", {PR_GET_TID_ADDRESS, 0x1000}), D::local);
  EXPECT_EQ(decide_args("prctl", {PR_SET_TIMERSLACK, 50000}), D::local);
  EXPECT_EQ(decide_args("prctl", {PR_SET_THP_DISABLE, 1}), D::local);
  EXPECT_EQ(decide_args("prctl", {0x53564d41 /* PR_SET_VMA */, 0, 0x1000, 4096, 0x2000}), D::local);
  EXPECT_EQ(decide_args("prctl", {0x41555856 /* PR_GET_AUXV */, 0x1000, 512}), D::local);
  EXPECT_EQ(decide_args("prctl", {PR_SET_SPECULATION_CTRL, PR_SPEC_STORE_BYPASS, PR_SPEC_DISABLE}), D::local);
  // An option this table does not know may be one the home kernel knows.
  EXPECT_EQ(decide_args("prctl", {79}), D::home);
  EXPECT_EQ(decide_args("prctl", {0}), D::home);
  EXPECT_EQ(decide_args("prctl", {0x12345678}), D::home);
}

TEST(SyscallDecide, CallsNamingAProcess) {
  const int64_t self = 4242;
  for (const char* name : {"sched_setaffinity", "sched_getaffinity", "sched_setparam", "sched_getparam",
                           "sched_setscheduler", "sched_getscheduler", "sched_setattr", "sched_getattr",
                           "sched_rr_get_interval", "get_robust_list", "migrate_pages", "move_pages",
                           "process_vm_readv", "process_vm_writev"}) {
    EXPECT_EQ(decide_args(name, {0, 128, 0x1000}, self), D::local) << name;
    EXPECT_EQ(decide_args(name, {reg(self), 128, 0x1000}, self), D::local) << name;
    EXPECT_EQ(decide_args(name, {777, 128, 0x1000}, self), D::forward) << name;
    EXPECT_EQ(decide_args(name, {reg(self), 128, 0x1000}), D::forward) << name;  // own PID not known
  }
  EXPECT_EQ(decide_args("getpgid", {0}, self), D::virtual_);
  EXPECT_EQ(decide_args("getpgid", {reg(self)}, self), D::virtual_);
  EXPECT_EQ(decide_args("getpgid", {777}, self), D::forward);
  EXPECT_EQ(decide_args("getsid", {0}, self), D::virtual_);
  EXPECT_EQ(decide_args("getsid", {777}, self), D::forward);
  EXPECT_EQ(decide_args("getpriority", {PRIO_PROCESS, 0}, self), D::local);
  EXPECT_EQ(decide_args("setpriority", {PRIO_PROCESS, reg(self), 5}, self), D::local);
  EXPECT_EQ(decide_args("setpriority", {PRIO_PROCESS, 777, 5}, self), D::forward);
  EXPECT_EQ(decide_args("getpriority", {PRIO_PGRP, 0}, self), D::forward);
  EXPECT_EQ(decide_args("setpriority", {PRIO_USER, 0, 5}, self), D::forward);
  // Signals always go through home, even to the caller itself.
  EXPECT_EQ(decide_args("kill", {reg(self), SIGSTOP}, self), D::forward);
  EXPECT_EQ(decide_args("tgkill", {reg(self), reg(self), SIGABRT}, self), D::forward);
}

}  // namespace
}  // namespace roam
