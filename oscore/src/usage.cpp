#include "roam/usage.hpp"

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <tuple>
#include <utility>

#include "roam/error.hpp"
#include "roam/image_proc.hpp"

namespace roam {

namespace proc = image::proc;

CpuUsage& CpuUsage::operator+=(const CpuUsage& o) {
  user_ns += o.user_ns;
  sys_ns += o.sys_ns;
  child_user_ns += o.child_user_ns;
  child_sys_ns += o.child_sys_ns;
  minflt += o.minflt;
  majflt += o.majflt;
  nvcsw += o.nvcsw;
  nivcsw += o.nivcsw;
  maxrss_kib = std::max(maxrss_kib, o.maxrss_kib);
  return *this;
}

CpuUsage beyond(const CpuUsage& total, const CpuUsage& part) {
  auto d = [](uint64_t a, uint64_t b) { return a > b ? a - b : 0; };
  CpuUsage u;
  u.user_ns = d(total.user_ns, part.user_ns);
  u.sys_ns = d(total.sys_ns, part.sys_ns);
  u.child_user_ns = d(total.child_user_ns, part.child_user_ns);
  u.child_sys_ns = d(total.child_sys_ns, part.child_sys_ns);
  u.minflt = d(total.minflt, part.minflt);
  u.majflt = d(total.majflt, part.majflt);
  u.nvcsw = d(total.nvcsw, part.nvcsw);
  u.nivcsw = d(total.nivcsw, part.nivcsw);
  u.maxrss_kib = total.maxrss_kib > part.maxrss_kib ? total.maxrss_kib : 0;
  return u;
}

namespace {

uint64_t ns_per_tick() {
  static const uint64_t ns = 1'000'000'000 / static_cast<uint64_t>(std::max(1L, ::sysconf(_SC_CLK_TCK)));
  return ns;
}

uint64_t ticks_to_ns(uint64_t ticks) { return ticks * ns_per_tick(); }

// `total` split as `user_ticks : sys_ticks` (all user when both are 0).
std::pair<uint64_t, uint64_t> split(uint64_t total, uint64_t user_ticks, uint64_t sys_ticks) {
  if (user_ticks + sys_ticks == 0) return {total, 0};
  auto user = static_cast<uint64_t>(static_cast<unsigned __int128>(total) * user_ticks / (user_ticks + sys_ticks));
  return {user, total - user};
}

}  // namespace

std::optional<CpuUsage> usage_of(pid_t pid) {
  try {
    auto f = proc::stat_fields(proc::read_file(pid, "stat"));
    std::string status = proc::read_file(pid, "status");
    if (f.size() < 17) return std::nullopt;
    auto num = [&](size_t i) { return proc::parse_u64(f[i], 10, "a /proc/PID/stat field"); };
    CpuUsage u;
    uint64_t ut = num(14), st = num(15), cut = num(16), cst = num(17);
    u.minflt = num(10);
    u.majflt = num(12);
    uint64_t total = cpu_clock_ns(pid).value_or(ticks_to_ns(ut + st));
    std::tie(u.user_ns, u.sys_ns) = split(total, ut, st);
    u.child_user_ns = ticks_to_ns(cut);
    u.child_sys_ns = ticks_to_ns(cst);
    u.nvcsw = proc::status_number(status, "voluntary_ctxt_switches");
    u.nivcsw = proc::status_number(status, "nonvoluntary_ctxt_switches");
    if (auto hwm = proc::status_field(status, "VmHWM"))  // "1234 kB"
      u.maxrss_kib = proc::parse_u64(hwm->substr(0, hwm->find(' ')), 10, "VmHWM");
    return u;
  } catch (const std::exception&) {
    return std::nullopt;  // gone, or a zombie without status fields
  }
}

std::optional<uint64_t> cpu_clock_ns(pid_t pid) {
  clockid_t clock;
  timespec ts{};
  if (::clock_getcpuclockid(pid, &clock) != 0 || ::clock_gettime(clock, &ts) != 0) return std::nullopt;
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000 + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t run_wait_ns(pid_t pid) {
  std::ifstream in(proc::path(pid, "schedstat"));
  uint64_t run = 0, wait = 0;
  in >> run >> wait;
  return run + wait;
}

rusage to_rusage(const CpuUsage& u, bool children) {
  rusage r{};
  auto tv = [](uint64_t ns) {
    return timeval{static_cast<time_t>(ns / 1'000'000'000), static_cast<suseconds_t>(ns % 1'000'000'000 / 1000)};
  };
  if (children) {
    r.ru_utime = tv(u.child_user_ns);
    r.ru_stime = tv(u.child_sys_ns);
    return r;
  }
  r.ru_utime = tv(u.user_ns);
  r.ru_stime = tv(u.sys_ns);
  r.ru_maxrss = static_cast<long>(u.maxrss_kib);
  r.ru_minflt = static_cast<long>(u.minflt);
  r.ru_majflt = static_cast<long>(u.majflt);
  r.ru_nvcsw = static_cast<long>(u.nvcsw);
  r.ru_nivcsw = static_cast<long>(u.nivcsw);
  return r;
}

tms to_tms(const CpuUsage& u) {
  auto ticks = [](uint64_t ns) { return static_cast<clock_t>(ns / ns_per_tick()); };
  return tms{ticks(u.user_ns), ticks(u.sys_ns), ticks(u.child_user_ns), ticks(u.child_sys_ns)};
}

}  // namespace roam
