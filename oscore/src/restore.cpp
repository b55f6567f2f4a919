// restore_into and restore (see restore.hpp): the order of the steps.
#include "roam/restore.hpp"

#include <signal.h>
#include <sys/syscall.h>

#include <algorithm>
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

namespace {

std::vector<image::Vma> kernel_pieces(const std::vector<image::Vma>& vmas) {
  std::vector<image::Vma> out;
  for (const image::Vma& v : vmas)
    if (v.kernel_provided()) out.push_back(v);
  return out;
}

std::vector<image::Vma> regions_of(const image::ProcessImage& image) {
  std::vector<image::Vma> out;
  for (const image::ImageVma& iv : image.vmas) out.push_back(iv.vma);
  return out;
}

void restore_laid_out(ptrace::Tracee& stub, const image::ProcessImage& image, const PageSource& more,
                      const detail::Layout& layout, const std::vector<image::Vma>* mapped,
                      const std::vector<uint64_t>& sent_whole, RestoreTimes& t, Clock::time_point& mark) {
  detail::set_rlimits(stub.tid(), image);  // before PR_SET_MM_MAP, which checks RLIMIT_DATA
  {
    ptrace::RemoteSyscalls rs(stub, layout.insn, step_mode_for(image));
    detail::map_regions(rs, image, layout.scratch, mapped, &sent_whole);
    t.mapping = since(mark);
    t.page_bytes = detail::write_pages(rs, image);
    if (more) {
      while (auto run = more()) {
        detail::write_run(rs, image, run->first, run->second);
        t.page_bytes += run->second.size();
      }
    }
    t.pages = since(mark);
    detail::set_advice(rs, image);
    detail::set_mm_map(rs, image);
    detail::set_sigactions(rs, image);
    detail::set_task_state(rs, image);
    detail::set_timers(rs, image);
    rs.checked_syscall("munmap (scratch)", SYS_munmap, layout.scratch.start, layout.scratch.size());
  }
  detail::register_rseq(stub, layout.insn, image);
  detail::set_registers(stub, image);
  t.state = since(mark);
}

}  // namespace

void restore_into(ptrace::Tracee& stub, const image::ProcessImage& image, const PageSource& more,
                  RestoreTimes* times) {
  restore_into(stub, image, more, std::vector<uint64_t>{}, times);
}

void restore_into(ptrace::Tracee& stub, const image::ProcessImage& image, const PageSource& more,
                  const std::vector<uint64_t>& sent_whole, RestoreTimes* times) {
  RestoreTimes t;
  auto mark = Clock::now();
  detail::Layout layout = detail::clear_stub(stub, image);
  t.layout = since(mark);
  restore_laid_out(stub, image, more, layout, nullptr, sent_whole, t, mark);
  if (times) *times = t;
}

Prepared prepare(ptrace::Tracee& stub, const image::ProcessImage& plan) {
  detail::Layout layout = detail::clear_stub(stub, plan);
  Prepared p;
  p.insn = layout.insn.addr();
  p.scratch_start = layout.scratch.start;
  p.scratch_end = layout.scratch.end;
  ptrace::RemoteSyscalls rs(stub, layout.insn, ptrace::StepMode::single_step);
  p.mismatched = differing_files(plan);
  detail::map_regions(rs, plan, layout.scratch, nullptr, &p.mismatched);
  p.regions = regions_of(plan);
  p.populated_bytes = detail::populate(rs, plan, p.mismatched);
  return p;
}

void restore_into(ptrace::Tracee& stub, const image::ProcessImage& image, const PageSource& more,
                  const Prepared& prepared, RestoreTimes* times) {
  RestoreTimes t;
  auto mark = Clock::now();
  std::vector<image::Vma> now = regions_of(image);
  detail::Range scratch{prepared.scratch_start, prepared.scratch_end};
  bool scratch_clear = std::none_of(now.begin(), now.end(), [&](const image::Vma& v) {
    return v.start < scratch.end && scratch.start < v.end;
  });
  if (kernel_pieces(now) != kernel_pieces(prepared.regions) || !scratch_clear) {
    detail::Layout layout = detail::clear_stub(stub, image);
    t.layout = since(mark);
    restore_laid_out(stub, image, more, layout, nullptr, prepared.mismatched, t, mark);
  } else {
    detail::Layout layout{ptrace::RemotePtr<void>(prepared.insn), scratch};
    restore_laid_out(stub, image, more, layout, &prepared.regions, prepared.mismatched, t, mark);
  }
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
