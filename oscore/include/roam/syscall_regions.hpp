// The memory a forwarded system call touches in its caller, so that the home
// agent can replay the call in the deputy with the very same registers.
//
// Why no pointer is ever rewritten: the deputy's address space is empty except
// for pages the home agent maps at the same virtual addresses as the body's
// buffers. Every pointer in the registers, and every pointer stored inside a
// buffer (iov_base in an iovec array, msg_name/msg_iov/msg_control in a
// msghdr, the sigset pointer of pselect6's sixth argument, the value pointer
// of struct xattr_args...), therefore names the same bytes in the deputy as in
// the body, as long as the region holding the pointer is copied in unchanged
// and the region it points to is mirrored too. describe() lists both, in the
// order the kernel follows them (the holder before what it points to).
//
// Directions: `in` bytes the kernel may read (copied body -> deputy before the
// call), `out` bytes it may write (copied back after), `inout` both. An `out`
// length is an upper bound (read() of 4096 bytes may write 10): the transfer
// must not clobber the bytes the call left alone, so either pre-fill the
// mirror with the body's bytes or copy back only the prefix the result names.
// Where the kernel both reads a structure and writes part of it back
// (recvmsg's msghdr, poll's pollfd array, select's fd sets and timeout, a
// socklen_t), the whole structure is `inout`.
//
// NULL pointers and zero lengths produce no region: the deputy then sees the
// same NULL and fails (or not) exactly as the kernel would at home. Lengths
// the kernel rejects before reading (a negative socklen, an iovec count over
// UIO_MAXIOV, an extensible struct over a page) produce no region for the same
// reason. Nested pointers are followed with `read` over the caller's memory;
// an unreadable one sets `fault` (the caller answers EFAULT, as the kernel
// would) instead of sending the process home.
//
// A call whose layout cannot be known from the registers and the caller's
// memory alone (an unknown ioctl, semctl GETALL whose size is the set's,
// bpf-like multiplexers) is described as !ok: the process goes home to run it,
// which is always correct.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace roam::fwd {

enum class Dir : uint8_t { in = 1, out = 2, inout = 3 };

struct Region {
  uint64_t addr;
  uint64_t len;
  Dir dir;
};

// Reads n bytes of the caller's memory at addr into out; false on a fault.
using ReadMem = std::function<bool(uint64_t addr, void* out, std::size_t n)>;

struct Description {
  bool ok = false;              // false: cannot be described; the process goes home (or EFAULT, see fault)
  std::string why;              // when !ok: one line naming the call and the reason
  std::vector<Region> regions;  // in the order the kernel follows them; not merged
  bool fault = false;           // a pointer the call follows is unreadable: answer EFAULT (ok is false)
};

inline constexpr uint64_t kMaxRegionBytes = 64ull << 20;
inline constexpr std::size_t kMaxRegions = 1024;
inline constexpr std::size_t kMaxPathBytes = 4096;  // PATH_MAX, NUL included

// The regions of call `nr` (x86_64 number) with its six argument registers.
// Covers every `forward` call of syscalls.def and the `inspect` ones decide()
// can forward; any other number is !ok.
Description describe(int nr, const uint64_t args[6], const ReadMem& read);

}  // namespace roam::fwd
