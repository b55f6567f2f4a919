#include "roam/image_migratable.hpp"

#include <optional>

#include <fmt/format.h>

#include "roam/error.hpp"
#include "roam/image_maps.hpp"
#include "roam/image_proc.hpp"

namespace roam::image {
namespace {

// PF_KTHREAD from include/linux/sched.h, as /proc/PID/stat field 9 shows it.
constexpr uint64_t kPfKthread = 0x00200000;

Migratability refuse(std::string why) { return {false, std::move(why)}; }

std::string where(const Vma& v) { return fmt::format("at {:#x}-{:#x}", v.start, v.end); }

std::string special_name(const Vma& v) {
  if (v.path == "anon_inode:[io_uring]") return "an io_uring ring";
  if (v.path == "anon_inode:[perf_event]") return "a perf_event buffer";
  if (v.path == "/[aio]") return "an AIO ring";
  return "a special mapping " + v.path;
}

// The first region the home must keep serving, if any.
std::optional<std::string> unmovable_region(const Vma& v) {
  if (v.kind == VmaKind::sysv_shm) return fmt::format("a SysV shared memory segment {} {}", v.path, where(v));
  if (v.kind == VmaKind::special_file) return fmt::format("{} {}", special_name(v), where(v));
  if (v.kind == VmaKind::other_special) return fmt::format("a kernel mapping {} {}", v.path, where(v));
  if (v.has(kVmUffdMissing | kVmUffdWp | kVmUffdMinor))
    return fmt::format("a userfaultfd-registered range {}", where(v));
  if (v.has(kVmShadowStack)) return fmt::format("a CET shadow stack {}", where(v));
  // Releasing the deputy's copy and restoring into it when the process
  // comes home both unmap it, which a seal forbids.
  if (v.has(kVmSealed) && !v.kernel_provided()) return fmt::format("a sealed region (mseal) {}", where(v));
  if (v.has(kVmHugetlb)) return fmt::format("a hugetlbfs mapping {}{}", v.path.empty() ? "" : v.path + " ", where(v));
  if (!v.kernel_provided() && v.has(kVmIo | kVmPfnMap))
    return fmt::format("a device mapping {}{}", v.path.empty() ? "" : v.path + " ", where(v));
  if (v.shared) {
    // MAP_SHARED pages are shared with other processes (or the file itself):
    // a copy on another node would silently stop being shared. Read-only
    // file mappings that can never become writable (no VM_MAYWRITE: the file
    // was opened read-only) are the exception; they behave like the file.
    if (v.kind == VmaKind::anon) return fmt::format("a shared anonymous mapping {}", where(v));
    if (v.kind == VmaKind::deleted_file) return fmt::format("a shared mapping of deleted {} {}", v.path, where(v));
    if ((v.prot & kProtWrite) || v.has(kVmMayWrite))
      return fmt::format("a shared mapping of {} {}", v.path, where(v));
  }
  return std::nullopt;
}

Migratability check(pid_t pid, pid_t own_tracer, const std::vector<Vma>* vmas) {
  std::vector<std::string> stat = proc::stat_fields(proc::read_file(pid, "stat"));
  if (stat.size() < 21) throw FormatError(fmt::format("short /proc/{}/stat", pid));
  const std::string& state = stat[3];
  if (state == "Z") return refuse("is a zombie");
  if (state == "X" || state == "x") return refuse("is exiting");
  if (proc::parse_u64(stat[9], 10, "stat flags") & kPfKthread) return refuse("is a kernel thread");

  std::string status = proc::read_file(pid, "status");
  uint64_t threads = proc::status_number(status, "Threads");
  if (threads != 1) return refuse(fmt::format("has {} threads", threads));
  uint64_t tracer = proc::status_number(status, "TracerPid");
  if (tracer != 0 && tracer != static_cast<uint64_t>(own_tracer))
    return refuse(fmt::format("is being traced by process {}", tracer));
  // Seccomp filters the program installed (or was started under) move with
  // it: the capture reads them, the body installs them. One that hands
  // calls to a supervisor (SECCOMP_RET_USER_NOTIF) cannot, which only the
  // frozen capture can see. Strict mode allows no call roam could forward.
  uint64_t seccomp = proc::status_number(status, "Seccomp");
  if (seccomp == 1) return refuse("runs in seccomp strict mode");

  std::vector<Vma> read;
  if (!vmas) vmas = &(read = read_maps(pid));
  for (const Vma& v : *vmas)
    if (auto why = unmovable_region(v)) return refuse("has " + *why);
  return {true, {}};
}

Migratability checked(pid_t pid, pid_t own_tracer, const std::vector<Vma>* vmas) {
  try {
    return check(pid, own_tracer, vmas);
  } catch (const SysError& e) {
    if (e.err() == ENOENT || e.err() == ESRCH) return refuse(fmt::format("process {} does not exist", pid));
    if (e.err() == EACCES || e.err() == EPERM) return refuse(fmt::format("process {} is not ours to inspect", pid));
    throw;
  }
}

}  // namespace

Migratability migratable(pid_t pid, pid_t own_tracer) { return checked(pid, own_tracer, nullptr); }

Migratability migratable(pid_t pid, pid_t own_tracer, const std::vector<Vma>& vmas) {
  return checked(pid, own_tracer, &vmas);
}

}  // namespace roam::image
