// The baselines every roam benchmark is measured against, as functions
// (bench/baselines prints them all; other benchmarks measure the ones they
// compare with in the same run): loopback TCP round trip and bandwidth, the
// seccomp user-notification round trip, memcpy bandwidth.
#pragma once

#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <fmt/format.h>
#include <thread>
#include <vector>

#include "roam/seccomp_compat.hpp"
#include "roam/error.hpp"
#include "roam/fd.hpp"



namespace roam::bench {

using Clock = std::chrono::steady_clock;


inline double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

inline void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof set, &set);
}

inline void write_all(int fd, const void* p, size_t n) {
  auto* c = static_cast<const char*>(p);
  while (n) {
    ssize_t w = ::write(fd, c, n);
    check_sys(w, "write");
    c += w;
    n -= static_cast<size_t>(w);
  }
}
inline void read_all(int fd, void* p, size_t n) {
  auto* c = static_cast<char*>(p);
  while (n) {
    ssize_t r = ::read(fd, c, n);
    check_sys(r, "read");
    if (r == 0) throw UserError("peer closed");
    c += r;
    n -= static_cast<size_t>(r);
  }
}

// A connected loopback TCP pair.
// A listening loopback TCP socket on a free port; `addr` gets its address.
inline FileDesc loopback_listener(sockaddr_in& addr) {
  FileDesc l(check_sys(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket"));
  addr = sockaddr_in{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  check_sys(::bind(l.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), "bind");
  check_sys(::listen(l.get(), 1), "listen");
  socklen_t al = sizeof addr;
  getsockname(l.get(), reinterpret_cast<sockaddr*>(&addr), &al);
  return l;
}

inline std::pair<FileDesc, FileDesc> tcp_pair() {
  sockaddr_in a{};
  FileDesc l = loopback_listener(a);
  FileDesc c(check_sys(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket"));
  check_sys(::connect(c.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), "connect");
  FileDesc s(check_sys(::accept4(l.get(), nullptr, nullptr, SOCK_CLOEXEC), "accept"));
  int one = 1;
  setsockopt(c.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(s.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return {std::move(c), std::move(s)};
}

// Microseconds per 64-byte request/response over loopback TCP.
inline double tcp_round_trip_us(int iters, int client_cpu, int server_cpu) {
  auto [c, s] = tcp_pair();
  std::thread echo([&, fd = s.get()] {
    pin(server_cpu);
    char buf[64];
    for (int i = 0; i < iters; ++i) {
      read_all(fd, buf, sizeof buf);
      write_all(fd, buf, sizeof buf);
    }
  });
  pin(client_cpu);
  char buf[64] = {};
  auto t = Clock::now();
  for (int i = 0; i < iters; ++i) {
    write_all(c.get(), buf, sizeof buf);
    read_all(c.get(), buf, sizeof buf);
  }
  double us = seconds_since(t) * 1e6 / iters;
  echo.join();
  return us;
}

// MB/s of a one-way loopback TCP stream of `bytes`.
inline double tcp_bandwidth_mbs(size_t bytes) {
  auto [c, s] = tcp_pair();
  std::vector<char> buf(1 << 20, 'x');
  std::thread sink([&, fd = s.get()] {
    std::vector<char> in(1 << 20);
    size_t got = 0;
    while (got < bytes) {
      ssize_t r = ::read(fd, in.data(), in.size());
      if (r <= 0) break;
      got += static_cast<size_t>(r);
    }
  });
  auto t = Clock::now();
  for (size_t sent = 0; sent < bytes; sent += buf.size()) write_all(c.get(), buf.data(), std::min(buf.size(), bytes - sent));
  sink.join();
  return static_cast<double>(bytes) / 1e6 / seconds_since(t);
}

// Milliseconds to move `bytes` of memory to other memory over a fresh
// loopback TCP pair: the sender writes from a resident source region of
// that size, the receiver reads straight into a resident destination region
// of that size. This is what moving a process image does with its bytes
// (read from the process, land in the new one); a stream that resends one
// cache-hot buffer (tcp_bandwidth_mbs) never touches that much memory.
inline double tcp_memory_transfer_ms(size_t bytes) {
  auto region = [bytes] {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED) throw SysError("mmap", errno);
    return static_cast<char*>(p);
  };
  char* src = region();
  char* dst = region();
  for (size_t i = 0; i < bytes; i += sizeof(uint64_t)) {
    uint64_t v = i * 0x9e3779b97f4a7c15ull;
    std::memcpy(src + i, &v, std::min(sizeof v, bytes - i));
  }
  auto [c, s] = tcp_pair();
  constexpr size_t kWrite = 1 << 20;
  std::thread sink([&, fd = s.get()] {
    size_t got = 0;
    while (got < bytes) {
      ssize_t r = ::read(fd, dst + got, std::min(kWrite, bytes - got));
      if (r <= 0) break;
      got += static_cast<size_t>(r);
    }
  });
  auto t = Clock::now();
  for (size_t sent = 0; sent < bytes; sent += kWrite) write_all(c.get(), src + sent, std::min(kWrite, bytes - sent));
  sink.join();
  double ms = seconds_since(t) * 1e3;
  bool same = std::memcmp(src, dst, bytes) == 0;
  ::munmap(src, bytes);
  ::munmap(dst, bytes);
  if (!same) throw UserError("loopback TCP baseline: the bytes did not arrive intact");
  return ms;
}

inline double memcpy_mbs(size_t bytes) {
  std::vector<char> a(bytes, 1), b(bytes, 2);
  std::memcpy(b.data(), a.data(), bytes);  // fault both in
  auto t = Clock::now();
  int reps = 4;
  for (int i = 0; i < reps; ++i) {
    a[static_cast<size_t>(i)] = static_cast<char>(i);
    std::memcpy(b.data(), a.data(), bytes);
  }
  double s = seconds_since(t);
  if (b[0] != a[0]) std::abort();
  return static_cast<double>(bytes) * reps / 1e6 / s;
}

// Microseconds per getppid() that a seccomp user-notification supervisor
// answers. The child sends its listener fd to the parent over a socketpair.
inline double seccomp_round_trip_us(int iters, int child_cpu, int supervisor_cpu, bool sync_wakeup) {
  int sp[2];
  check_sys(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), "socketpair");
  int timing[2];
  check_sys(pipe2(timing, O_CLOEXEC), "pipe");
  pid_t child = fork();
  if (child == 0) {
    pin(child_cpu);
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog prog{sizeof filter / sizeof filter[0], filter};
    int listener = static_cast<int>(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog));
    if (listener < 0) _exit(2);
    // Pass the listener to the supervisor.
    char dummy = 0;
    iovec iov{&dummy, 1};
    char ctl[CMSG_SPACE(sizeof(int))] = {};
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = ctl;
    m.msg_controllen = sizeof ctl;
    cmsghdr* cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cm), &listener, sizeof(int));
    if (sendmsg(sp[1], &m, 0) < 0) _exit(3);
    close(listener);
    read(sp[1], &dummy, 1);  // supervisor ready
    auto t = Clock::now();
    for (int i = 0; i < iters; ++i)
      if (syscall(SYS_getppid) != 4242) _exit(4);
    double us = seconds_since(t) * 1e6 / iters;
    write(timing[1], &us, sizeof us);
    _exit(0);
  }
  pin(supervisor_cpu);
  char dummy;
  iovec iov{&dummy, 1};
  char ctl[CMSG_SPACE(sizeof(int))] = {};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = ctl;
  m.msg_controllen = sizeof ctl;
  check_sys(recvmsg(sp[0], &m, 0), "recvmsg listener");
  int listener;
  std::memcpy(&listener, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof(int));
  if (sync_wakeup) ioctl(listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP);
  write(sp[0], "g", 1);
  seccomp_notif req{};
  seccomp_notif_resp resp{};
  for (int i = 0; i < iters; ++i) {
    std::memset(&req, 0, sizeof req);
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) break;
    resp.id = req.id;
    resp.val = 4242;
    resp.error = 0;
    resp.flags = 0;
    ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp);
  }
  double us = -1;
  read(timing[0], &us, sizeof us);
  int status;
  waitpid(child, &status, 0);
  close(listener);
  close(sp[0]);
  close(sp[1]);
  close(timing[0]);
  close(timing[1]);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw UserError(fmt::format("seccomp child failed: status {:#x}", status));
  return us;
}


}  // namespace roam::bench
