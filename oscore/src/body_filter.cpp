#include "roam/body_filter.hpp"

#include <linux/audit.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <fmt/format.h>

#include "roam/error.hpp"
#include "roam/seccomp_compat.hpp"
#include "roam/syscalls.hpp"


namespace roam {
namespace {

constexpr uint32_t kAllow = SECCOMP_RET_ALLOW;
constexpr uint32_t kNotify = SECCOMP_RET_USER_NOTIF;
constexpr uint32_t kX32Bit = 0x40000000;

uint32_t lo32(uint64_t v) { return static_cast<uint32_t>(v); }
uint32_t hi32(uint64_t v) { return static_cast<uint32_t>(v >> 32); }

// A half-open range of syscall numbers sharing one action.
struct Range {
  uint32_t begin, end;
  bool allow;
};

// Builds a program with symbolic jump targets, then resolves them: BPF jumps
// are relative and only forward, which the layout below respects.
class Assembler {
 public:
  size_t here() const { return code_.size(); }
  void stmt(uint16_t code, uint32_t k) { code_.push_back(BPF_STMT(code, k)); }
  // A conditional jump whose targets are labels fixed later.
  size_t jump(uint16_t code, uint32_t k) {
    code_.push_back(BPF_JUMP(code, k, 0, 0));
    return code_.size() - 1;
  }
  void set_true(size_t at, size_t target) { code_[at].jt = offset(at, target); }
  void set_false(size_t at, size_t target) { code_[at].jf = offset(at, target); }
  std::vector<sock_filter> take() { return std::move(code_); }

 private:
  static uint8_t offset(size_t from, size_t to) {
    ROAM_ASSERT(to > from && to - from - 1 <= 255, fmt::format("BPF jump {} -> {} out of range", from, to));
    return static_cast<uint8_t>(to - from - 1);
  }
  std::vector<sock_filter> code_;
};

std::vector<Range> local_ranges() {
  auto local = numbers_with(Disposition::local);
  std::sort(local.begin(), local.end());
  std::vector<Range> out;
  for (int nr : local) {
    auto n = static_cast<uint32_t>(nr);
    if (!out.empty() && out.back().end == n) out.back().end = n + 1;
    else out.push_back({n, n + 1, true});
  }
  return out;
}

// Emits a binary search over `ranges` (sorted, disjoint) for the number in
// the accumulator; every leaf is a jump to allow_at or notify_at, patched by
// the caller through `leaves`.
struct Leaf {
  size_t at;
  bool on_true;
  bool allow;
};

void emit_search(Assembler& a, const std::vector<Range>& r, size_t lo, size_t hi, std::vector<Leaf>& leaves) {
  ROAM_ASSERT(lo < hi, "empty range list in the body filter search");
  if (hi - lo == 1) {
    // nr >= begin && nr < end -> allow, else notify
    size_t j1 = a.jump(BPF_JMP | BPF_JGE | BPF_K, r[lo].begin);
    leaves.push_back({j1, false, false});
    size_t j2 = a.jump(BPF_JMP | BPF_JGE | BPF_K, r[lo].end);
    a.set_true(j1, j2);  // fall into the second test
    leaves.push_back({j2, true, false});
    leaves.push_back({j2, false, true});
    return;
  }
  size_t mid = lo + (hi - lo) / 2;
  size_t j = a.jump(BPF_JMP | BPF_JGE | BPF_K, r[mid].begin);
  // false branch (nr < r[mid].begin): search [lo, mid) right after; true: [mid, hi) later.
  a.set_false(j, a.here());
  emit_search(a, r, lo, mid, leaves);
  a.set_true(j, a.here());
  emit_search(a, r, mid, hi, leaves);
}

}  // namespace

std::vector<sock_filter> build_body_filter(const BodyFilterOptions& o) {
  Assembler a;
  std::vector<Leaf> leaves;
  // 1. Only the native ABI is served remotely; anything else goes to the agent
  //    (which sends the process home).
  a.stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch));
  size_t arch = a.jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64);
  a.set_true(arch, a.here());
  leaves.push_back({arch, false, false});
  // 2. The agent's trampoline may make any call, except those the vDSO
  //    itself makes from the same range as fallbacks (a CPU-time clock read
  //    through clock_gettime lands there): they take the normal path.
  if (o.trampoline_end > o.trampoline_begin && hi32(o.trampoline_begin) == hi32(o.trampoline_end - 1)) {
    std::vector<size_t> vdso_calls;
    a.stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr));
    for (long nr : {SYS_clock_gettime, SYS_clock_getres, SYS_gettimeofday, SYS_time, SYS_getcpu}) {
      vdso_calls.push_back(a.jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(nr)));
      a.set_false(vdso_calls.back(), a.here());
    }
    a.stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, instruction_pointer) + 4);
    size_t hi = a.jump(BPF_JMP | BPF_JEQ | BPF_K, hi32(o.trampoline_begin));
    a.set_true(hi, a.here());
    a.stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, instruction_pointer));
    size_t ge = a.jump(BPF_JMP | BPF_JGE | BPF_K, lo32(o.trampoline_begin));
    a.set_true(ge, a.here());
    size_t lt = a.jump(BPF_JMP | BPF_JGE | BPF_K, lo32(o.trampoline_end));
    leaves.push_back({lt, false, true});  // below end: allow
    size_t next = a.here();
    a.set_true(lt, next);
    a.set_false(hi, next);
    a.set_false(ge, next);
    for (size_t j : vdso_calls) a.set_true(j, next);
  }
  // 3. Anonymous private mmap is local: flags (arg 3) without MAP_SHARED
  //    bits and with MAP_ANONYMOUS.
  a.stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr));
  size_t is_mmap = a.jump(BPF_JMP | BPF_JEQ | BPF_K, SYS_mmap);
  size_t not_mmap_target_fix = is_mmap;
  a.set_true(is_mmap, a.here());
  a.stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args) + 3 * 8);
  size_t shared = a.jump(BPF_JMP | BPF_JSET | BPF_K, MAP_SHARED);  // MAP_SHARED_VALIDATE has this bit too
  leaves.push_back({shared, true, false});
  a.set_false(shared, a.here());
  size_t anon = a.jump(BPF_JMP | BPF_JSET | BPF_K, MAP_ANONYMOUS);
  leaves.push_back({anon, true, true});
  leaves.push_back({anon, false, false});
  // 3b. rt_sigaction is local (handlers live in the body) unless it sets
  //     SIGCHLD (decide_rt_sigaction): a signal (arg 0) other than SIGCHLD,
  //     or no new action (arg 1 NULL), is allowed here. The accumulator
  //     still holds the number.
  a.set_false(not_mmap_target_fix, a.here());
  size_t is_sigaction = a.jump(BPF_JMP | BPF_JEQ | BPF_K, SYS_rt_sigaction);
  a.set_true(is_sigaction, a.here());
  a.stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args));
  size_t chld = a.jump(BPF_JMP | BPF_JEQ | BPF_K, SIGCHLD);
  leaves.push_back({chld, false, true});
  a.set_true(chld, a.here());
  a.stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args) + 8);
  size_t act_lo = a.jump(BPF_JMP | BPF_JEQ | BPF_K, 0);
  leaves.push_back({act_lo, false, false});
  a.set_true(act_lo, a.here());
  a.stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args) + 12);
  size_t act_hi = a.jump(BPF_JMP | BPF_JEQ | BPF_K, 0);
  leaves.push_back({act_hi, true, true});
  leaves.push_back({act_hi, false, false});
  // 4. The number: x32 numbers to the agent, then the search over local ranges.
  size_t search_start = a.here();
  a.set_false(is_sigaction, search_start);
  a.stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr));
  size_t x32 = a.jump(BPF_JMP | BPF_JSET | BPF_K, kX32Bit);
  leaves.push_back({x32, true, false});
  a.set_false(x32, a.here());
  auto ranges = local_ranges();
  emit_search(a, ranges, 0, ranges.size(), leaves);
  // 5. The two returns every leaf jumps to.
  size_t allow_at = a.here();
  a.stmt(BPF_RET | BPF_K, kAllow);
  size_t notify_at = a.here();
  a.stmt(BPF_RET | BPF_K, kNotify);
  for (auto& l : leaves) {
    size_t target = l.allow ? allow_at : notify_at;
    if (l.on_true) a.set_true(l.at, target);
    else a.set_false(l.at, target);
  }
  auto prog = a.take();
  ROAM_ASSERT(prog.size() < BPF_MAXINSNS, fmt::format("body filter has {} instructions", prog.size()));
  return prog;
}

uint32_t evaluate_body_filter(const std::vector<sock_filter>& p, uint32_t arch, int nr, uint64_t ip, const uint64_t args[6]) {
  seccomp_data d{};
  d.nr = nr;
  d.arch = arch;
  d.instruction_pointer = ip;
  for (int i = 0; i < 6; ++i) d.args[i] = args[i];
  const auto* bytes = reinterpret_cast<const unsigned char*>(&d);
  uint32_t acc = 0;
  for (size_t pc = 0; pc < p.size();) {
    const sock_filter& f = p[pc];
    switch (f.code) {
      case BPF_LD | BPF_W | BPF_ABS:
        ROAM_ASSERT(f.k + 4 <= sizeof d, "load outside seccomp_data");
        std::memcpy(&acc, bytes + f.k, 4);
        ++pc;
        break;
      case BPF_JMP | BPF_JEQ | BPF_K: pc += 1 + (acc == f.k ? f.jt : f.jf); break;
      case BPF_JMP | BPF_JGE | BPF_K: pc += 1 + (acc >= f.k ? f.jt : f.jf); break;
      case BPF_JMP | BPF_JSET | BPF_K: pc += 1 + ((acc & f.k) ? f.jt : f.jf); break;
      case BPF_RET | BPF_K: return f.k;
      default: ROAM_ASSERT(false, fmt::format("unexpected BPF opcode {:#x} at {}", f.code, pc));
    }
  }
  ROAM_ASSERT(false, "BPF program fell off its end");
  return 0;
}

FileDesc install_body_filter(const BodyFilterOptions& o) {
  auto prog = build_body_filter(o);
  sock_fprog fprog{static_cast<unsigned short>(prog.size()), prog.data()};
  check_sys(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)");
  long fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                    SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, &fprog);
  if (fd < 0 && errno == EINVAL)  // a kernel without WAIT_KILLABLE_RECV (before 5.19)
    fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &fprog);
  check_sys(fd, "seccomp(SET_MODE_FILTER)");
  return FileDesc(static_cast<int>(fd));
}

}  // namespace roam
