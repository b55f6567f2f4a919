#include "roam/syscall_regions.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cstring>
#include <string_view>

#include "roam/syscalls.hpp"

namespace roam::fwd {
namespace {

// Sizes of the kernel's x86_64 UAPI structures (what copy_{from,to}_user
// moves), not the C library's: glibc's struct termios, for one, is larger.
constexpr uint64_t kStat = 144;           // struct stat
constexpr uint64_t kStatfs = 120;         // struct statfs
constexpr uint64_t kStatx = 256;          // struct statx
constexpr uint64_t kRusage = 144;         // struct rusage
constexpr uint64_t kUtsname = 390;        // struct new_utsname
constexpr uint64_t kSysinfo = 112;        // struct sysinfo
constexpr uint64_t kUstat = 32;           // struct ustat
constexpr uint64_t kTimex = 208;          // struct __kernel_timex
constexpr uint64_t kTimespec = 16;        // struct __kernel_timespec
constexpr uint64_t kTimeval = 16;         // struct __kernel_old_timeval
constexpr uint64_t kItimerspec = 32;      // struct __kernel_itimerspec
constexpr uint64_t kTimezone = 8;         // struct timezone
constexpr uint64_t kUtimbuf = 16;         // struct utimbuf
constexpr uint64_t kRlimit = 16;          // struct rlimit
constexpr uint64_t kPollfd = 8;           // struct pollfd
constexpr uint64_t kEpollEvent = 12;      // struct epoll_event (packed on x86_64)
constexpr uint64_t kSembuf = 6;           // struct sembuf
constexpr uint64_t kSemidDs = 104;        // struct semid64_ds
constexpr uint64_t kSeminfo = 40;         // struct seminfo
constexpr uint64_t kShmidDs = 112;        // struct shmid64_ds
constexpr uint64_t kShminfo = 72;         // struct shminfo64
constexpr uint64_t kShmInfo = 48;         // struct shm_info
constexpr uint64_t kMsqidDs = 120;        // struct msqid64_ds
constexpr uint64_t kMsginfo = 32;         // struct msginfo
constexpr uint64_t kMsgType = 8;          // the long mtype before msgsnd/msgrcv's text
constexpr uint64_t kFlock = 32;           // struct flock
constexpr uint64_t kFOwnerEx = 8;         // struct f_owner_ex
constexpr uint64_t kSiginfo = 128;        // siginfo_t
constexpr uint64_t kSigactionHead = 24;   // struct sigaction less its mask: handler, flags, restorer
constexpr uint64_t kMqAttr = 64;          // struct mq_attr
constexpr uint64_t kSigevent = 64;        // struct sigevent
constexpr uint64_t kNotifyCookie = 32;    // NOTIFY_COOKIE_LEN: mq_notify's SIGEV_THREAD cookie
constexpr uint64_t kIovec = 16;           // struct iovec
constexpr uint64_t kMsghdr = 56;          // struct user_msghdr
constexpr uint64_t kMmsghdr = 64;         // struct mmsghdr
constexpr uint64_t kSockaddrMax = 128;    // sizeof(struct sockaddr_storage): the kernel clamps to it
constexpr uint64_t kSockaddrIn = 4;       // socklen_t
constexpr uint64_t kCapHeader = 8;        // struct __user_cap_header_struct
constexpr uint64_t kCapData = 12;         // struct __user_cap_data_struct
constexpr uint64_t kUserDesc = 16;        // struct user_desc
constexpr uint64_t kFileHandleHead = 8;   // struct file_handle before f_handle[]
constexpr uint64_t kMaxHandle = 128;      // MAX_HANDLE_SZ
constexpr uint64_t kKcmpEpollSlot = 12;   // struct kcmp_epoll_slot
constexpr uint64_t kCachestatRange = 16;  // struct cachestat_range
constexpr uint64_t kCachestat = 40;       // struct cachestat
constexpr uint64_t kSchedParam = 4;       // struct sched_param
constexpr uint64_t kSchedAttrVer0 = 48;   // SCHED_ATTR_SIZE_VER0
constexpr uint64_t kXattrArgs = 16;       // struct xattr_args
constexpr uint64_t kTermios = 36;         // struct termios (kernel)
constexpr uint64_t kTermios2 = 44;        // struct termios2
constexpr uint64_t kWinsize = 8;          // struct winsize
constexpr uint64_t kTaskComm = 16;        // TASK_COMM_LEN
constexpr uint64_t kSigset = 8;           // the kernel's sigset_t

constexpr uint64_t kPage = 4096;
constexpr uint64_t kUioMaxIov = 1024;      // UIO_MAXIOV
constexpr uint64_t kXattrSizeMax = 65536;  // XATTR_SIZE_MAX and XATTR_LIST_MAX

int32_t i32(uint64_t reg) { return static_cast<int32_t>(static_cast<uint32_t>(reg)); }
uint32_t u32(uint64_t reg) { return static_cast<uint32_t>(reg); }

struct Iovec {
  uint64_t base;
  uint64_t len;
};
static_assert(sizeof(Iovec) == kIovec);

struct Msghdr {
  uint64_t name;
  uint32_t namelen;
  uint32_t pad0;
  uint64_t iov;
  uint64_t iovlen;
  uint64_t control;
  uint64_t controllen;
  uint32_t flags;
  uint32_t pad1;
};
static_assert(sizeof(Msghdr) == kMsghdr);

struct Mmsghdr {
  Msghdr hdr;
  uint32_t len;
  uint32_t pad;
};
static_assert(sizeof(Mmsghdr) == kMmsghdr);

// Collects the regions of one call. The first refusal or fault wins; later
// additions are ignored, so handlers need not check after every step.
class Walk {
 public:
  Walk(std::string_view call, const ReadMem& read) : call_(call), read_(read) {}

  void in(uint64_t addr, uint64_t len) { add(addr, len, Dir::in); }
  void out(uint64_t addr, uint64_t len) { add(addr, len, Dir::out); }
  void inout(uint64_t addr, uint64_t len) { add(addr, len, Dir::inout); }

  void add(uint64_t addr, uint64_t len, Dir dir) {
    if (stopped() || addr == 0 || len == 0) return;
    if (len > kMaxRegionBytes) return refuse(fmt::format("a region of {} bytes at {:#x} (over 64 MiB)", len, addr));
    if (addr + len < addr) return fault_at(addr);  // access_ok() fails at home too
    if (d_.regions.size() == kMaxRegions) return refuse("more than 1024 regions");
    d_.regions.push_back({addr, len, dir});
  }

  // Reads what the kernel would read to follow a pointer. NULL: false, and
  // nothing to describe (the deputy sees the same NULL and fails as the
  // kernel would); any other unreadable address is a fault.
  bool load(uint64_t addr, void* out, uint64_t n) {
    if (stopped() || addr == 0) return false;
    if (addr + n < addr || !read_(addr, out, n)) {
      fault_at(addr);
      return false;
    }
    return true;
  }
  template <class T>
  bool load(uint64_t addr, T& v) {
    return load(addr, &v, sizeof v);
  }

  // A NUL-terminated string as an `in` region, NUL included. Read one page
  // at a time: a string may end right before an unmapped page. With
  // `truncated`, the kernel reads at most `max` bytes and ignores the rest;
  // without, a longer string is refused.
  void string(uint64_t addr, uint64_t max = kMaxPathBytes, bool truncated = false) {
    if (stopped() || addr == 0) return;
    std::array<char, kPage> buf;
    uint64_t len = 0;
    while (len < max) {
      uint64_t at = addr + len;
      uint64_t chunk = std::min(kPage - at % kPage, max - len);
      if (!load(at, buf.data(), chunk)) return;
      if (const void* nul = std::memchr(buf.data(), 0, chunk)) {
        len += static_cast<uint64_t>(static_cast<const char*>(nul) - buf.data()) + 1;
        return in(addr, len);
      }
      len += chunk;
    }
    if (truncated) return in(addr, max);
    refuse(fmt::format("a string at {:#x} longer than {} bytes", addr, max));
  }

  // An iovec array (`in`) and the buffers it names (`bufs`). Counts the
  // kernel rejects before reading (over UIO_MAXIOV) add nothing.
  void iovecs(uint64_t addr, uint64_t count, Dir bufs) {
    if (stopped() || count == 0 || count > kUioMaxIov) return;
    std::vector<Iovec> v(count);
    if (!load(addr, v.data(), count * kIovec)) return;
    in(addr, count * kIovec);
    for (const auto& iov : v)
      if (static_cast<int64_t>(iov.len) < 0) return;  // EINVAL before any copy
    for (const auto& iov : v) add(iov.base, iov.len, bufs);
  }

  // A sockaddr the kernel fills through a socklen_t pointer: *lenp is read,
  // at most min(*lenp, 128) bytes are written at addr, the true length back.
  void sockaddr_out(uint64_t addr, uint64_t lenp) {
    int32_t len = 0;
    if (!load(lenp, len)) return;
    inout(lenp, kSockaddrIn);
    if (len > 0) out(addr, std::min<uint64_t>(static_cast<uint64_t>(len), kSockaddrMax));
  }

  // A sockaddr the kernel reads: clamped as move_addr_to_kernel() does (a
  // length over 128 or negative is refused at home before reading).
  void sockaddr_in(uint64_t addr, uint64_t len_reg) {
    int32_t len = i32(len_reg);
    if (len > 0 && static_cast<uint64_t>(len) <= kSockaddrMax) in(addr, static_cast<uint64_t>(len));
  }

  // The parts a msghdr points to; the msghdr itself is the caller's.
  void message_parts(const Msghdr& m, bool receiving) {
    Dir dir = receiving ? Dir::out : Dir::in;
    auto namelen = static_cast<int32_t>(m.namelen);
    if (namelen > 0) add(m.name, std::min<uint64_t>(static_cast<uint64_t>(namelen), kSockaddrMax), dir);
    if (m.iovlen > kUioMaxIov) return;  // EMSGSIZE
    iovecs(m.iov, m.iovlen, dir);
    add(m.control, m.controllen, dir);
  }

  void msghdr(uint64_t addr, bool receiving) {
    Msghdr m{};
    if (!load(addr, m)) return;
    add(addr, kMsghdr, receiving ? Dir::inout : Dir::in);  // recvmsg writes namelen, controllen, flags
    message_parts(m, receiving);
  }

  void mmsghdrs(uint64_t addr, uint64_t vlen, bool receiving) {
    vlen = std::min(vlen & 0xffffffffu, kUioMaxIov);  // the kernel clamps to UIO_MAXIOV
    if (stopped() || vlen == 0) return;
    std::vector<Mmsghdr> v(vlen);
    if (!load(addr, v.data(), vlen * kMmsghdr)) return;
    inout(addr, vlen * kMmsghdr);  // msg_len is written either way
    for (const auto& m : v) message_parts(m.hdr, receiving);
  }

  // An extensible struct read with copy_struct_from_user(): its size is an
  // argument; over a page the kernel answers E2BIG without reading.
  void extensible(uint64_t addr, uint64_t size, Dir dir) {
    if (size <= kPage) add(addr, size, dir);
  }

  // A sigset_t with its size argument: any size but 8 is EINVAL unread.
  void sigmask(uint64_t addr, uint64_t size) {
    if (size == kSigset) in(addr, kSigset);
  }

  void refuse(std::string reason) {
    if (stopped()) return;
    d_.why = fmt::format("{}: {}", call_, reason);
    stopped_ = true;
  }

  void fault_at(uint64_t addr) {
    if (stopped()) return;
    d_.fault = true;
    d_.why = fmt::format("{}: unreadable pointer {:#x}", call_, addr);
    stopped_ = true;
  }

  bool stopped() const { return stopped_; }

  Description finish() && {
    d_.ok = !stopped_;
    if (!d_.ok) d_.regions.clear();
    return std::move(d_);
  }

 private:
  std::string_view call_;
  const ReadMem& read_;
  Description d_;
  bool stopped_ = false;
};

using A = const uint64_t*;
using Handler = void (*)(Walk&, A);

void integers_only(Walk&, A) {}

// ---- calls with a layout of their own ----

struct IoctlRule {
  uint32_t request;
  Dir dir;
  uint64_t len;  // 0: the argument is an integer
};

constexpr IoctlRule kIoctlRules[] = {
    {0x5401, Dir::out, kTermios},     // TCGETS
    {0x5402, Dir::in, kTermios},      // TCSETS
    {0x5403, Dir::in, kTermios},      // TCSETSW
    {0x5404, Dir::in, kTermios},      // TCSETSF
    {0x802c542a, Dir::out, kTermios2},  // TCGETS2
    {0x402c542b, Dir::in, kTermios2},   // TCSETS2
    {0x402c542c, Dir::in, kTermios2},   // TCSETSW2
    {0x402c542d, Dir::in, kTermios2},   // TCSETSF2
    {0x5409, Dir::in, 0},             // TCSBRK
    {0x540A, Dir::in, 0},             // TCXONC
    {0x540B, Dir::in, 0},             // TCFLSH
    {0x540E, Dir::in, 0},             // TIOCSCTTY
    {0x540F, Dir::out, 4},            // TIOCGPGRP
    {0x5410, Dir::in, 4},             // TIOCSPGRP
    {0x5411, Dir::out, 4},            // TIOCOUTQ
    {0x5413, Dir::out, kWinsize},     // TIOCGWINSZ
    {0x5414, Dir::in, kWinsize},      // TIOCSWINSZ
    {0x541B, Dir::out, 4},            // FIONREAD
    {0x5421, Dir::in, 4},             // FIONBIO
    {0x5422, Dir::in, 0},             // TIOCNOTTY
    {0x5429, Dir::out, 4},            // TIOCGSID
    {0x5450, Dir::in, 0},             // FIONCLEX
    {0x5451, Dir::in, 0},             // FIOCLEX
    {0x5452, Dir::in, 4},             // FIOASYNC
    {0x80045430, Dir::out, 4},        // TIOCGPTN
    {0x40045431, Dir::in, 4},         // TIOCSPTLCK
};

void ioctl(Walk& w, A a) {
  uint32_t request = u32(a[1]);
  for (const auto& r : kIoctlRules)
    if (r.request == request) return w.add(a[2], r.len, r.dir);
  w.refuse(fmt::format("request {:#x} with an unknown argument layout", request));
}

void fcntl(Walk& w, A a) {
  switch (i32(a[1])) {
    case 5: case 6: case 7:     // F_GETLK, F_SETLK, F_SETLKW
    case 36: case 37: case 38:  // F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW (GETLK writes back)
      return w.inout(a[2], kFlock);
    case 15: return w.in(a[2], kFOwnerEx);   // F_SETOWN_EX
    case 16: return w.out(a[2], kFOwnerEx);  // F_GETOWN_EX
    case 1035: case 1037: return w.out(a[2], 8);  // F_GET_RW_HINT, F_GET_FILE_RW_HINT
    case 1036: case 1038: return w.in(a[2], 8);   // F_SET_RW_HINT, F_SET_FILE_RW_HINT
    case 0: case 1: case 2: case 3: case 4:       // F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL
    case 8: case 9: case 10: case 11:             // F_SETOWN, F_GETOWN, F_SETSIG, F_GETSIG
    case 1024: case 1025: case 1026: case 1027:   // F_SETLEASE, F_GETLEASE, F_NOTIFY, F_DUPFD_QUERY
    case 1028: case 1030: case 1031: case 1032:   // F_CREATED_QUERY, F_DUPFD_CLOEXEC, F_SETPIPE_SZ, F_GETPIPE_SZ
    case 1033: case 1034:                         // F_ADD_SEALS, F_GET_SEALS
      return;
    default: w.refuse(fmt::format("command {} with an unknown argument layout", i32(a[1])));
  }
}

void poll(Walk& w, A a) { w.inout(a[0], uint64_t{u32(a[1])} * kPollfd); }

void ppoll(Walk& w, A a) {
  poll(w, a);
  w.inout(a[2], kTimespec);  // the remaining time is written back
  w.sigmask(a[3], a[4]);
}

uint64_t fd_set_bytes(uint64_t n_reg) {
  int32_t n = i32(n_reg);
  return n <= 0 ? 0 : (static_cast<uint64_t>(n) + 63) / 64 * 8;
}

void fd_sets(Walk& w, A a) {
  uint64_t bytes = fd_set_bytes(a[0]);
  for (int i = 1; i <= 3; ++i) w.inout(a[i], bytes);
}

void select(Walk& w, A a) {
  fd_sets(w, a);
  w.inout(a[4], kTimeval);
}

void pselect6(Walk& w, A a) {
  fd_sets(w, a);
  w.inout(a[4], kTimespec);
  if (a[5] == 0) return;
  struct {
    uint64_t set;
    uint64_t size;
  } mask{};
  if (!w.load(a[5], mask)) return;
  w.in(a[5], sizeof mask);
  w.sigmask(mask.set, mask.size);
}

void epoll_events(Walk& w, uint64_t addr, uint64_t max_reg) {
  int32_t max = i32(max_reg);
  if (max > 0) w.out(addr, static_cast<uint64_t>(max) * kEpollEvent);
}

void semctl(Walk& w, A a) {
  switch (i32(a[2]) & ~0x100) {  // IPC_64
    case 2: case 18: case 21: return w.out(a[3], kSemidDs);  // IPC_STAT, SEM_STAT, SEM_STAT_ANY
    case 1: return w.in(a[3], kSemidDs);                     // IPC_SET
    case 3: case 19: return w.out(a[3], kSeminfo);           // IPC_INFO, SEM_INFO
    case 13: case 17: return w.refuse("GETALL/SETALL: the array's size is the set's, known only at home");
    default: return;  // IPC_RMID, GETVAL, SETVAL, GETPID, GETNCNT, GETZCNT: integers
  }
}

void shmctl(Walk& w, A a) {
  switch (i32(a[1]) & ~0x100) {
    case 2: case 13: case 15: return w.out(a[2], kShmidDs);  // IPC_STAT, SHM_STAT, SHM_STAT_ANY
    case 1: return w.in(a[2], kShmidDs);                     // IPC_SET
    case 3: return w.out(a[2], kShminfo);                    // IPC_INFO
    case 14: return w.out(a[2], kShmInfo);                   // SHM_INFO
    default: return;  // IPC_RMID, SHM_LOCK, SHM_UNLOCK
  }
}

void msgctl(Walk& w, A a) {
  switch (i32(a[1]) & ~0x100) {
    case 2: case 11: case 13: return w.out(a[2], kMsqidDs);  // IPC_STAT, MSG_STAT, MSG_STAT_ANY
    case 1: return w.in(a[2], kMsqidDs);                     // IPC_SET
    case 3: case 12: return w.out(a[2], kMsginfo);           // IPC_INFO, MSG_INFO
    default: return;
  }
}

void capget(Walk& w, A a, Dir data) {
  uint32_t version = 0;
  if (!w.load(a[0], version)) return;
  w.inout(a[0], kCapHeader);  // a bad version is answered by writing the kernel's
  if (version == 0x19980330) return w.add(a[1], kCapData, data);                      // _V1
  if (version == 0x20071026 || version == 0x20080522) return w.add(a[1], 2 * kCapData, data);  // _V2, _V3
}

void syslog(Walk& w, A a) {
  int32_t type = i32(a[0]);
  if (type >= 2 && type <= 4) w.out(a[1], static_cast<uint64_t>(std::max(i32(a[2]), 0)));  // READ, READ_ALL, READ_CLEAR
}

void sysfs(Walk& w, A a) {
  switch (i32(a[0])) {
    case 1: return w.string(a[1]);
    case 2: return w.refuse("option 2 writes a name of a length known only at home");
    default: return;
  }
}

void mq_notify(Walk& w, A a) {
  if (a[1] == 0) return;
  struct {
    uint64_t value;
    int32_t signo;
    int32_t notify;
  } ev{};
  if (!w.load(a[1], ev)) return;
  w.in(a[1], kSigevent);
  if (ev.notify == 2) w.in(ev.value, kNotifyCookie);  // SIGEV_THREAD: the netlink cookie
}

void keyctl(Walk& w, A a) {
  switch (i32(a[0])) {
    case 0: case 3: case 4: case 5: case 7: case 8: case 9: case 13: case 14: case 15:
    case 16: case 18: case 19: case 21: case 22: case 30: case 32:
      return;  // integers only
    case 1: return w.string(a[1]);                                // JOIN_SESSION_KEYRING
    case 2: case 12: return w.in(a[2], a[3]);                    // UPDATE, INSTANTIATE
    case 6: case 11: case 17: return w.out(a[2], a[3]);          // DESCRIBE, READ, GET_SECURITY
    case 10: case 29: w.string(a[2]); return w.string(a[3]);     // SEARCH, RESTRICT_KEYRING
    case 20: return w.iovecs(a[2], u32(a[3]), Dir::in);          // INSTANTIATE_IOV
    case 31: return w.out(a[1], a[2]);                           // CAPABILITIES
    default: w.refuse(fmt::format("operation {} with an unknown argument layout", i32(a[0])));
  }
}

void name_to_handle_at(Walk& w, A a) {
  w.string(a[1]);
  uint32_t bytes = 0;
  if (!w.load(a[2], bytes)) return;
  w.inout(a[2], kFileHandleHead + (bytes <= kMaxHandle ? bytes : 0));
  w.out(a[3], (i32(a[4]) & 1) ? 8 : 4);  // AT_HANDLE_MNT_ID_UNIQUE: a u64
}

void open_by_handle_at(Walk& w, A a) {
  uint32_t bytes = 0;
  if (!w.load(a[1], bytes)) return;
  w.in(a[1], kFileHandleHead + (bytes <= kMaxHandle ? bytes : 0));
}

void sched_setattr(Walk& w, A a) {
  uint32_t size = 0;
  if (!w.load(a[1], size)) return;
  if (size == 0) size = kSchedAttrVer0;
  // E2BIG writes the kernel's size into the first field: inout.
  w.inout(a[1], (size < kSchedAttrVer0 || size > kPage) ? 4 : size);
}

void migrate_pages(Walk& w, A a) {
  uint64_t maxnode = a[1];
  if (maxnode <= 1 || maxnode - 1 > kPage * 8) return;
  uint64_t bytes = (maxnode - 1 + 63) / 64 * 8;
  w.in(a[2], bytes);
  w.in(a[3], bytes);
}

void move_pages(Walk& w, A a) {
  uint64_t count = a[1];
  if (count > kMaxRegionBytes) return w.refuse(fmt::format("{} pages", count));
  w.in(a[2], count * 8);
  w.in(a[3], count * 4);
  w.out(a[4], count * 4);
}

void process_vm(Walk& w, A a, Dir local) {
  w.iovecs(a[1], a[2], local);
  if (a[4] == 0 || a[4] > kUioMaxIov) return;
  std::vector<Iovec> remote(a[4]);
  if (!w.load(a[3], remote.data(), a[4] * kIovec)) return;
  w.in(a[3], a[4] * kIovec);  // the buffers it names are in another process
}

// Only the options decide() forwards; the others run in the body or go home.
void prctl(Walk& w, A a) {
  switch (u32(a[0])) {
    case 2: case 37: return w.out(a[1], 4);                // PR_GET_PDEATHSIG, PR_GET_CHILD_SUBREAPER
    case 15: return w.string(a[1], kTaskComm - 1, true);  // PR_SET_NAME reads at most 15 bytes
    case 16: return w.out(a[1], kTaskComm);                // PR_GET_NAME
    case 1: case 3: case 4: case 7: case 8: case 21: case 23: case 24: case 27: case 28: case 31:
    case 32: case 36: case 38: case 39: case 47: case 57: case 58: case 0x59616d61:
      return;
    default: w.refuse(fmt::format("option {:#x} is not forwarded", u32(a[0])));
  }
}

void xattrat_value(Walk& w, A a, bool set) {
  if (a[5] < kXattrArgs || a[5] > kPage) return;  // EINVAL, E2BIG
  struct {
    uint64_t value;
    uint32_t size;
    uint32_t flags;
  } args{};
  if (!w.load(a[4], args)) return;
  w.in(a[4], a[5]);
  if (set) {
    if (args.size <= kXattrSizeMax) w.in(args.value, args.size);
  } else {
    w.out(args.value, std::min<uint64_t>(args.size, kXattrSizeMax));
  }
}

constexpr uint64_t kMaxListmountIds = 1000000;  // more: EOVERFLOW before writing
constexpr uint32_t kMntIdReqVer0 = 24;          // MNT_ID_REQ_SIZE_VER0
constexpr uint32_t kNsIdReqVer0 = 32;           // NS_ID_REQ_SIZE_VER0

// A request struct whose first u32 is its own size (struct mnt_id_req,
// struct ns_id_req): the kernel reads the size, then that many bytes.
void size_prefixed_in(Walk& w, uint64_t addr, uint32_t min_size) {
  uint32_t size = 0;
  if (!w.load(addr, size)) return;
  w.in(addr, (size >= min_size && size <= kPage) ? size : 4);
}

// An array of u64 ids the kernel fills, `count` long.
void ids_out(Walk& w, uint64_t addr, uint64_t count) {
  if (count > kMaxRegionBytes / 8) return w.refuse(fmt::format("{} ids", count));
  w.out(addr, count * 8);
}

void listmount(Walk& w, A a) {
  size_prefixed_in(w, a[0], kMntIdReqVer0);
  if (a[2] <= kMaxListmountIds) ids_out(w, a[1], a[2]);
}

// A u32 size the kernel reads and writes back, and the buffer it sizes.
void sized_out(Walk& w, uint64_t buf, uint64_t sizep) {
  uint32_t size = 0;
  if (!w.load(sizep, size)) return;
  w.inout(sizep, 4);
  w.out(buf, size);
}

void landlock_add_rule(Walk& w, A a) {
  switch (i32(a[1])) {
    case 1: return w.in(a[2], 12);  // LANDLOCK_RULE_PATH_BENEATH (packed)
    case 2: return w.in(a[2], 16);  // LANDLOCK_RULE_NET_PORT
    default: w.refuse(fmt::format("rule type {} with an unknown layout", i32(a[1])));
  }
}

// ---- the table ----

struct Entry {
  const char* name;
  Handler describe;
};

// clang-format off
constexpr Entry kEntries[] = {
    // file I/O
    {"read", [](Walk& w, A a) { w.out(a[1], a[2]); }},
    {"write", [](Walk& w, A a) { w.in(a[1], a[2]); }},
    {"pread64", [](Walk& w, A a) { w.out(a[1], a[2]); }},
    {"pwrite64", [](Walk& w, A a) { w.in(a[1], a[2]); }},
    {"readv", [](Walk& w, A a) { w.iovecs(a[1], a[2], Dir::out); }},
    {"writev", [](Walk& w, A a) { w.iovecs(a[1], a[2], Dir::in); }},
    {"preadv", [](Walk& w, A a) { w.iovecs(a[1], a[2], Dir::out); }},
    {"pwritev", [](Walk& w, A a) { w.iovecs(a[1], a[2], Dir::in); }},
    {"preadv2", [](Walk& w, A a) { w.iovecs(a[1], a[2], Dir::out); }},
    {"pwritev2", [](Walk& w, A a) { w.iovecs(a[1], a[2], Dir::in); }},
    {"lseek", integers_only},
    {"sendfile", [](Walk& w, A a) { w.inout(a[2], 8); }},
    {"fsync", integers_only},
    {"fdatasync", integers_only},
    {"ftruncate", integers_only},
    {"getdents", [](Walk& w, A a) { w.out(a[1], u32(a[2])); }},
    {"getdents64", [](Walk& w, A a) { w.out(a[1], u32(a[2])); }},
    {"readahead", integers_only},
    {"fadvise64", integers_only},
    {"splice", [](Walk& w, A a) { w.inout(a[1], 8); w.inout(a[3], 8); }},
    {"tee", integers_only},
    {"sync_file_range", integers_only},
    // Whether the pipe end reads or writes the pages is known only at home.
    {"vmsplice", [](Walk& w, A a) { w.iovecs(a[1], a[2], Dir::inout); }},
    {"fallocate", integers_only},
    {"copy_file_range", [](Walk& w, A a) { w.inout(a[1], 8); w.inout(a[3], 8); }},
    {"cachestat", [](Walk& w, A a) { w.in(a[1], kCachestatRange); w.out(a[2], kCachestat); }},

    // descriptors
    {"close", integers_only},
    {"ioctl", ioctl},
    {"dup", integers_only},
    {"dup2", integers_only},
    {"dup3", integers_only},
    {"fcntl", fcntl},
    {"flock", integers_only},
    {"close_range", integers_only},

    // file system: paths
    {"open", [](Walk& w, A a) { w.string(a[0]); }},
    {"creat", [](Walk& w, A a) { w.string(a[0]); }},
    {"openat", [](Walk& w, A a) { w.string(a[1]); }},
    {"openat2", [](Walk& w, A a) { w.string(a[1]); w.extensible(a[2], a[3], Dir::in); }},
    {"stat", [](Walk& w, A a) { w.string(a[0]); w.out(a[1], kStat); }},
    {"lstat", [](Walk& w, A a) { w.string(a[0]); w.out(a[1], kStat); }},
    {"fstat", [](Walk& w, A a) { w.out(a[1], kStat); }},
    {"newfstatat", [](Walk& w, A a) { w.string(a[1]); w.out(a[2], kStat); }},
    {"statx", [](Walk& w, A a) { w.string(a[1]); w.out(a[4], kStatx); }},
    {"access", [](Walk& w, A a) { w.string(a[0]); }},
    {"faccessat", [](Walk& w, A a) { w.string(a[1]); }},
    {"faccessat2", [](Walk& w, A a) { w.string(a[1]); }},
    {"truncate", [](Walk& w, A a) { w.string(a[0]); }},
    {"getcwd", [](Walk& w, A a) { w.out(a[0], std::min(a[1], kMaxPathBytes)); }},
    {"chdir", [](Walk& w, A a) { w.string(a[0]); }},
    {"fchdir", integers_only},
    {"chroot", [](Walk& w, A a) { w.string(a[0]); }},
    {"rename", [](Walk& w, A a) { w.string(a[0]); w.string(a[1]); }},
    {"renameat", [](Walk& w, A a) { w.string(a[1]); w.string(a[3]); }},
    {"renameat2", [](Walk& w, A a) { w.string(a[1]); w.string(a[3]); }},
    {"mkdir", [](Walk& w, A a) { w.string(a[0]); }},
    {"mkdirat", [](Walk& w, A a) { w.string(a[1]); }},
    {"rmdir", [](Walk& w, A a) { w.string(a[0]); }},
    {"link", [](Walk& w, A a) { w.string(a[0]); w.string(a[1]); }},
    {"linkat", [](Walk& w, A a) { w.string(a[1]); w.string(a[3]); }},
    {"unlink", [](Walk& w, A a) { w.string(a[0]); }},
    {"unlinkat", [](Walk& w, A a) { w.string(a[1]); }},
    {"symlink", [](Walk& w, A a) { w.string(a[0]); w.string(a[1]); }},
    {"symlinkat", [](Walk& w, A a) { w.string(a[0]); w.string(a[2]); }},
    {"readlink", [](Walk& w, A a) { w.string(a[0]); w.out(a[1], static_cast<uint64_t>(std::max(i32(a[2]), 0))); }},
    {"readlinkat", [](Walk& w, A a) { w.string(a[1]); w.out(a[2], static_cast<uint64_t>(std::max(i32(a[3]), 0))); }},
    {"chmod", [](Walk& w, A a) { w.string(a[0]); }},
    {"fchmod", integers_only},
    {"fchmodat", [](Walk& w, A a) { w.string(a[1]); }},
    {"fchmodat2", [](Walk& w, A a) { w.string(a[1]); }},
    {"chown", [](Walk& w, A a) { w.string(a[0]); }},
    {"lchown", [](Walk& w, A a) { w.string(a[0]); }},
    {"fchown", integers_only},
    {"fchownat", [](Walk& w, A a) { w.string(a[1]); }},
    {"umask", integers_only},
    {"mknod", [](Walk& w, A a) { w.string(a[0]); }},
    {"mknodat", [](Walk& w, A a) { w.string(a[1]); }},
    {"utime", [](Walk& w, A a) { w.string(a[0]); w.in(a[1], kUtimbuf); }},
    {"utimes", [](Walk& w, A a) { w.string(a[0]); w.in(a[1], 2 * kTimeval); }},
    {"futimesat", [](Walk& w, A a) { w.string(a[1]); w.in(a[2], 2 * kTimeval); }},
    {"utimensat", [](Walk& w, A a) { w.string(a[1]); w.in(a[2], 2 * kTimespec); }},
    {"ustat", [](Walk& w, A a) { w.out(a[1], kUstat); }},
    {"statfs", [](Walk& w, A a) { w.string(a[0]); w.out(a[1], kStatfs); }},
    {"fstatfs", [](Walk& w, A a) { w.out(a[1], kStatfs); }},
    {"sysfs", sysfs},
    {"sync", integers_only},
    {"syncfs", integers_only},
    {"name_to_handle_at", name_to_handle_at},
    {"open_by_handle_at", open_by_handle_at},
    {"file_getattr", [](Walk& w, A a) { w.string(a[1]); w.extensible(a[2], a[3], Dir::out); }},
    {"file_setattr", [](Walk& w, A a) { w.string(a[1]); w.extensible(a[2], a[3], Dir::in); }},
    {"listmount", listmount},
    {"statmount", [](Walk& w, A a) { size_prefixed_in(w, a[0], kMntIdReqVer0); w.out(a[1], a[2]); }},
    {"listns", [](Walk& w, A a) { size_prefixed_in(w, a[0], kNsIdReqVer0); ids_out(w, a[1], a[2]); }},

    // extended attributes
    {"setxattr", [](Walk& w, A a) { w.string(a[0]); w.string(a[1]); w.in(a[2], a[3]); }},
    {"lsetxattr", [](Walk& w, A a) { w.string(a[0]); w.string(a[1]); w.in(a[2], a[3]); }},
    {"fsetxattr", [](Walk& w, A a) { w.string(a[1]); w.in(a[2], a[3]); }},
    {"getxattr", [](Walk& w, A a) { w.string(a[0]); w.string(a[1]); w.out(a[2], std::min(a[3], kXattrSizeMax)); }},
    {"lgetxattr", [](Walk& w, A a) { w.string(a[0]); w.string(a[1]); w.out(a[2], std::min(a[3], kXattrSizeMax)); }},
    {"fgetxattr", [](Walk& w, A a) { w.string(a[1]); w.out(a[2], std::min(a[3], kXattrSizeMax)); }},
    {"listxattr", [](Walk& w, A a) { w.string(a[0]); w.out(a[1], std::min(a[2], kXattrSizeMax)); }},
    {"llistxattr", [](Walk& w, A a) { w.string(a[0]); w.out(a[1], std::min(a[2], kXattrSizeMax)); }},
    {"flistxattr", [](Walk& w, A a) { w.out(a[1], std::min(a[2], kXattrSizeMax)); }},
    {"removexattr", [](Walk& w, A a) { w.string(a[0]); w.string(a[1]); }},
    {"lremovexattr", [](Walk& w, A a) { w.string(a[0]); w.string(a[1]); }},
    {"fremovexattr", [](Walk& w, A a) { w.string(a[1]); }},
    {"setxattrat", [](Walk& w, A a) { w.string(a[1]); w.string(a[3]); xattrat_value(w, a, true); }},
    {"getxattrat", [](Walk& w, A a) { w.string(a[1]); w.string(a[3]); xattrat_value(w, a, false); }},
    {"listxattrat", [](Walk& w, A a) { w.string(a[1]); w.out(a[3], std::min(a[4], kXattrSizeMax)); }},
    {"removexattrat", [](Walk& w, A a) { w.string(a[1]); w.string(a[3]); }},

    // polling
    {"poll", poll},
    {"ppoll", ppoll},
    {"select", select},
    {"pselect6", pselect6},
    {"epoll_create", integers_only},
    {"epoll_create1", integers_only},
    {"epoll_ctl", [](Walk& w, A a) { if (i32(a[1]) != 2) w.in(a[3], kEpollEvent); }},  // EPOLL_CTL_DEL reads nothing
    {"epoll_wait", [](Walk& w, A a) { epoll_events(w, a[1], a[2]); }},
    {"epoll_pwait", [](Walk& w, A a) { epoll_events(w, a[1], a[2]); w.sigmask(a[4], a[5]); }},
    {"epoll_pwait2", [](Walk& w, A a) { epoll_events(w, a[1], a[2]); w.in(a[3], kTimespec); w.sigmask(a[4], a[5]); }},
    {"epoll_ctl_old", integers_only},   // ENOSYS
    {"epoll_wait_old", integers_only},  // ENOSYS

    // sockets
    {"socket", integers_only},
    {"socketpair", [](Walk& w, A a) { w.out(a[3], 8); }},
    {"connect", [](Walk& w, A a) { w.sockaddr_in(a[1], a[2]); }},
    {"bind", [](Walk& w, A a) { w.sockaddr_in(a[1], a[2]); }},
    {"listen", integers_only},
    {"shutdown", integers_only},
    {"accept", [](Walk& w, A a) { if (a[1]) w.sockaddr_out(a[1], a[2]); }},
    {"accept4", [](Walk& w, A a) { if (a[1]) w.sockaddr_out(a[1], a[2]); }},
    {"getsockname", [](Walk& w, A a) { w.sockaddr_out(a[1], a[2]); }},
    {"getpeername", [](Walk& w, A a) { w.sockaddr_out(a[1], a[2]); }},
    {"sendto", [](Walk& w, A a) { w.in(a[1], a[2]); if (a[4]) w.sockaddr_in(a[4], a[5]); }},
    {"recvfrom", [](Walk& w, A a) { w.out(a[1], a[2]); if (a[4]) w.sockaddr_out(a[4], a[5]); }},
    {"sendmsg", [](Walk& w, A a) { w.msghdr(a[1], false); }},
    {"recvmsg", [](Walk& w, A a) { w.msghdr(a[1], true); }},
    {"sendmmsg", [](Walk& w, A a) { w.mmsghdrs(a[1], a[2], false); }},
    {"recvmmsg", [](Walk& w, A a) { w.mmsghdrs(a[1], a[2], true); w.inout(a[4], kTimespec); }},
    {"setsockopt", [](Walk& w, A a) { if (i32(a[4]) > 0) w.in(a[3], u32(a[4])); }},
    // Some options read optval as well (netfilter's get ops): inout.
    {"getsockopt", [](Walk& w, A a) {
       int32_t len = 0;
       if (!w.load(a[4], len)) return;
       w.inout(a[4], kSockaddrIn);
       if (len > 0) w.inout(a[3], static_cast<uint64_t>(len));
     }},

    // IPC
    {"pipe", [](Walk& w, A a) { w.out(a[0], 8); }},
    {"pipe2", [](Walk& w, A a) { w.out(a[0], 8); }},
    {"eventfd", integers_only},
    {"memfd_create", [](Walk& w, A a) { w.string(a[0]); }},
    {"shmget", integers_only},
    {"eventfd2", integers_only},
    {"shmctl", shmctl},
    {"semget", integers_only},
    {"semop", [](Walk& w, A a) { w.in(a[1], u32(a[2]) * kSembuf); }},
    {"semtimedop", [](Walk& w, A a) { w.in(a[1], u32(a[2]) * kSembuf); w.in(a[3], kTimespec); }},
    {"semctl", semctl},
    {"msgget", integers_only},
    {"msgsnd", [](Walk& w, A a) { if (static_cast<int64_t>(a[2]) >= 0) w.in(a[1], kMsgType + a[2]); }},
    {"msgrcv", [](Walk& w, A a) { if (static_cast<int64_t>(a[2]) >= 0) w.out(a[1], kMsgType + a[2]); }},
    {"msgctl", msgctl},
    {"mq_open", [](Walk& w, A a) { w.string(a[0]); w.in(a[3], kMqAttr); }},
    {"mq_unlink", [](Walk& w, A a) { w.string(a[0]); }},
    {"mq_timedsend", [](Walk& w, A a) { w.in(a[1], a[2]); w.in(a[4], kTimespec); }},
    {"mq_timedreceive", [](Walk& w, A a) { w.out(a[1], a[2]); w.out(a[3], 4); w.in(a[4], kTimespec); }},
    {"mq_notify", mq_notify},
    {"mq_getsetattr", [](Walk& w, A a) { w.in(a[1], kMqAttr); w.out(a[2], kMqAttr); }},

    // processes, signals
    {"wait4", [](Walk& w, A a) { w.out(a[1], 4); w.out(a[3], kRusage); }},
    {"waitid", [](Walk& w, A a) { w.out(a[2], kSiginfo); w.out(a[4], kRusage); }},
    {"kcmp", [](Walk& w, A a) { if (i32(a[2]) == 7) w.in(a[4], kKcmpEpollSlot); }},  // KCMP_EPOLL_TFD
    {"pidfd_open", integers_only},
    {"kill", integers_only},
    {"setpgid", integers_only},
    {"setsid", integers_only},
    {"pidfd_getfd", integers_only},
    {"process_mrelease", integers_only},
    {"tkill", integers_only},
    {"tgkill", integers_only},
    {"rt_sigqueueinfo", [](Walk& w, A a) { w.in(a[2], kSiginfo); }},
    {"rt_tgsigqueueinfo", [](Walk& w, A a) { w.in(a[3], kSiginfo); }},
    {"pidfd_send_signal", [](Walk& w, A a) { w.in(a[2], kSiginfo); }},
    {"rt_sigaction", [](Walk& w, A a) {
       if (a[3] != kSigset) return;  // EINVAL before reading
       w.in(a[1], kSigactionHead + kSigset);
       w.out(a[2], kSigactionHead + kSigset);
     }},
    {"prctl", prctl},
    {"getpgid", integers_only},
    {"getsid", integers_only},
    {"process_vm_readv", [](Walk& w, A a) { process_vm(w, a, Dir::out); }},
    {"process_vm_writev", [](Walk& w, A a) { process_vm(w, a, Dir::in); }},

    // scheduling, memory of another process
    {"getpriority", integers_only},
    {"setpriority", integers_only},
    {"sched_setparam", [](Walk& w, A a) { w.in(a[1], kSchedParam); }},
    {"sched_getparam", [](Walk& w, A a) { w.out(a[1], kSchedParam); }},
    {"sched_setscheduler", [](Walk& w, A a) { w.in(a[2], kSchedParam); }},
    {"sched_getscheduler", integers_only},
    {"sched_rr_get_interval", [](Walk& w, A a) { w.out(a[1], kTimespec); }},
    {"sched_setaffinity", [](Walk& w, A a) { w.in(a[2], u32(a[1])); }},
    {"sched_getaffinity", [](Walk& w, A a) { w.out(a[2], u32(a[1])); }},
    {"sched_setattr", sched_setattr},
    {"sched_getattr", [](Walk& w, A a) { if (u32(a[2]) <= kPage) w.out(a[1], u32(a[2])); }},
    {"get_robust_list", [](Walk& w, A a) { w.out(a[1], 8); w.out(a[2], 8); }},
    {"migrate_pages", migrate_pages},
    {"move_pages", move_pages},
    {"ioprio_set", integers_only},
    {"ioprio_get", integers_only},
    // The remote agent serves a forwarded (private file) mapping itself.
    {"mmap", integers_only},

    // credentials
    {"setuid", integers_only},
    {"setgid", integers_only},
    {"setreuid", integers_only},
    {"setregid", integers_only},
    {"setresuid", integers_only},
    {"setresgid", integers_only},
    {"setfsuid", integers_only},
    {"setfsgid", integers_only},
    {"setgroups", [](Walk& w, A a) { if (i32(a[0]) > 0) w.in(a[1], u32(a[0]) * 4ull); }},
    {"capget", [](Walk& w, A a) { capget(w, a, Dir::out); }},
    {"capset", [](Walk& w, A a) { capget(w, a, Dir::in); }},

    // time
    {"clock_gettime", [](Walk& w, A a) { w.out(a[1], kTimespec); }},
    {"clock_getres", [](Walk& w, A a) { w.out(a[1], kTimespec); }},
    {"clock_nanosleep", [](Walk& w, A a) { w.in(a[2], kTimespec); w.out(a[3], kTimespec); }},
    {"clock_settime", [](Walk& w, A a) { w.in(a[1], kTimespec); }},
    {"clock_adjtime", [](Walk& w, A a) { w.inout(a[1], kTimex); }},
    {"adjtimex", [](Walk& w, A a) { w.inout(a[0], kTimex); }},
    {"settimeofday", [](Walk& w, A a) { w.in(a[0], kTimeval); w.in(a[1], kTimezone); }},
    {"timerfd_create", integers_only},
    {"timerfd_settime", [](Walk& w, A a) { w.in(a[2], kItimerspec); w.out(a[3], kItimerspec); }},
    {"timerfd_gettime", [](Walk& w, A a) { w.out(a[1], kItimerspec); }},

    // system
    {"uname", [](Walk& w, A a) { w.out(a[0], kUtsname); }},
    {"sysinfo", [](Walk& w, A a) { w.out(a[0], kSysinfo); }},
    {"syslog", syslog},
    {"vhangup", integers_only},
    {"setrlimit", [](Walk& w, A a) { w.in(a[1], kRlimit); }},
    {"getrlimit", [](Walk& w, A a) { w.out(a[1], kRlimit); }},
    {"prlimit64", [](Walk& w, A a) { w.in(a[2], kRlimit); w.out(a[3], kRlimit); }},
    {"sethostname", [](Walk& w, A a) { if (i32(a[1]) > 0) w.in(a[0], u32(a[1])); }},
    {"setdomainname", [](Walk& w, A a) { if (i32(a[1]) > 0) w.in(a[0], u32(a[1])); }},
    {"set_thread_area", [](Walk& w, A a) { w.inout(a[0], kUserDesc); }},
    {"get_thread_area", [](Walk& w, A a) { w.inout(a[0], kUserDesc); }},

    // security, notification
    {"add_key", [](Walk& w, A a) { w.string(a[0]); w.string(a[1]); w.in(a[2], a[3]); }},
    {"request_key", [](Walk& w, A a) { w.string(a[0]); w.string(a[1]); w.string(a[2]); }},
    {"keyctl", keyctl},
    {"landlock_create_ruleset", [](Walk& w, A a) { w.extensible(a[0], a[1], Dir::in); }},
    {"landlock_add_rule", landlock_add_rule},
    {"landlock_restrict_self", integers_only},
    {"lsm_get_self_attr", [](Walk& w, A a) { sized_out(w, a[1], a[2]); }},
    {"lsm_set_self_attr", [](Walk& w, A a) { w.in(a[1], u32(a[2])); }},
    {"lsm_list_modules", [](Walk& w, A a) { sized_out(w, a[0], a[1]); }},
    {"inotify_init", integers_only},
    {"inotify_init1", integers_only},
    {"inotify_add_watch", [](Walk& w, A a) { w.string(a[1]); }},
    {"inotify_rm_watch", integers_only},
    {"fanotify_init", integers_only},
    {"fanotify_mark", [](Walk& w, A a) { w.string(a[4]); }},

    // gone from the kernel: ENOSYS without touching memory
    {"create_module", integers_only},
    {"get_kernel_syms", integers_only},
    {"query_module", integers_only},
    {"nfsservctl", integers_only},
    {"getpmsg", integers_only},
    {"putpmsg", integers_only},
    {"afs_syscall", integers_only},
    {"tuxcall", integers_only},
    {"security", integers_only},
    {"vserver", integers_only},
    {"lookup_dcookie", integers_only},
    {"_sysctl", integers_only},
};
// clang-format on

struct Index {
  std::vector<const Entry*> by_nr;
};

const Index& index() {
  static const Index built = [] {
    Index idx;
    for (const auto& e : kEntries) {
      int nr = syscall_number(e.name);
      Disposition how = disposition_of(nr);
      assert(nr >= 0 && (how == Disposition::forward || how == Disposition::inspect) &&
             "a described call must be forwarded or inspected in syscalls.def");
      (void)how;
      if (static_cast<size_t>(nr) >= idx.by_nr.size()) idx.by_nr.resize(static_cast<size_t>(nr) + 1, nullptr);
      idx.by_nr[static_cast<size_t>(nr)] = &e;
    }
    return idx;
  }();
  return built;
}

}  // namespace

Description describe(int nr, const uint64_t args[6], const ReadMem& read) {
  const auto& by_nr = index().by_nr;
  const Entry* entry = (nr >= 0 && static_cast<size_t>(nr) < by_nr.size()) ? by_nr[static_cast<size_t>(nr)] : nullptr;
  if (!entry) {
    Description d;
    const SyscallInfo* info = syscall_info(nr);
    d.why = info ? fmt::format("{}: not a forwarded call", info->name)
                 : fmt::format("system call {}: not a forwarded call", nr);
    return d;
  }
  Walk w(entry->name, read);
  entry->describe(w, args);
  return std::move(w).finish();
}

}  // namespace roam::fwd
