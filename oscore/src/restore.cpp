// restore_into and restore (see restore.hpp): the order of the steps.
#include "roam/restore.hpp"

#include <signal.h>
#include <sys/syscall.h>

#include <chrono>

#include "restore_detail.hpp"
#include "roam/remote_syscall.hpp"

namespace roam::restore {
namespace {

using Clock = std::chrono::steady_clock;

std::chrono::microseconds since(Clock::time_point& mark) {
  auto now = Clock::now();
  auto d = std::chrono::duration_cast<std::chrono::microseconds>(now - mark);
  mark = now;
  return d;
}

// Single-stepping forces a SIGTRAP per call, and forcing an ignored signal
// resets it to SIG_DFL: once the image's dispositions are in, a SIGTRAP the
// image ignores rules single-stepping out.
ptrace::StepMode step_mode_for(const image::ProcessImage& image) {
  constexpr uint64_t kSigIgn = 1;
  if (image.sigactions && (*image.sigactions)[SIGTRAP - 1].handler == kSigIgn) return ptrace::StepMode::syscall_stops;
  return ptrace::StepMode::single_step;
}

}  // namespace

void restore_into(ptrace::Tracee& stub, const image::ProcessImage& image, RestoreTimes* times) {
  restore_into(stub, image, PageSource{}, times);
}

void restore_into(ptrace::Tracee& stub, const image::ProcessImage& image, const PageSource& more,
                  RestoreTimes* times) {
  RestoreTimes t;
  auto mark = Clock::now();
  detail::Layout layout = detail::clear_stub(stub, image);
  t.layout = since(mark);
  detail::set_rlimits(stub.tid(), image);  // before PR_SET_MM_MAP, which checks RLIMIT_DATA
  {
    ptrace::RemoteSyscalls rs(stub, layout.insn, step_mode_for(image));
    detail::map_regions(rs, image, layout.scratch);
    t.mapping = since(mark);
    t.page_bytes = detail::write_pages(rs, image);
    if (more) {
      while (auto run = more()) {
        detail::write_run(rs, image, run->first, run->second);
        t.page_bytes += run->second.size();
      }
    }
    t.pages = since(mark);
    detail::set_mm_map(rs, image);
    detail::set_sigactions(rs, image);
    detail::set_task_state(rs, image);
    detail::set_timers(rs, image);
    rs.checked_syscall("munmap (scratch)", SYS_munmap, layout.scratch.start, layout.scratch.size());
  }
  detail::register_rseq(stub, layout.insn, image);
  detail::set_registers(stub, image);
  t.state = since(mark);
  if (times) *times = t;
}

pid_t restore(const image::ProcessImage& image, const StubOptions& options, RestoreTimes* times) {
  ptrace::Tracee stub = spawn_stub(options);
  try {
    restore_into(stub, image, times);
  } catch (...) {
    // Half a process must never run: kill the stub and collect it.
    ::kill(stub.tid(), SIGKILL);
    try {
      stub.resume_as(ptrace::Resume::cont);
      for (;;) stub.wait_stop();
    } catch (const std::exception&) {
    }
    throw;
  }
  stub.detach();
  return stub.tid();
}

}  // namespace roam::restore
