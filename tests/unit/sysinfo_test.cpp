// What a node reports about itself: memory narrowed by its memory cgroup,
// CPUs from its affinity, runnable tasks.
#include "roam/sysinfo.hpp"

#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "roam/cgroup.hpp"

namespace roam {
namespace {

namespace fs = std::filesystem;

TEST(Sysinfo, MemoryIsNarrowedByTheMemoryCgroup) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to make a memory cgroup";
  auto mounts = cgroup::find_mounts();
  // Where a memory limit can be set: v1 memory hierarchy, or v2 with the controller.
  fs::path dir;
  std::string limit_file;
  if (!mounts.memory_v1.empty()) {
    dir = mounts.memory_v1 / ("roam-sysinfo-test-" + std::to_string(getpid()));
    limit_file = "memory.limit_in_bytes";
  } else if (!mounts.unified.empty() &&
             cgroup::read_file(mounts.unified / "cgroup.subtree_control").find("memory") != std::string::npos) {
    // Pure v2 (systemd enables memory for the root's children): nothing to change.
    dir = mounts.unified / ("roam-sysinfo-test-" + std::to_string(getpid()));
    limit_file = "memory.max";
  } else {
    GTEST_SKIP() << "no memory controller";
  }
  cgroup::make(dir);
  const uint64_t limit = 256ull << 20;
  cgroup::write_file(dir / limit_file, std::to_string(limit));
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  pid_t child = fork();
  if (child == 0) {
    close(p[0]);
    cgroup::attach(dir, 0);
    MemoryInfo m = memory_info();
    write(p[1], &m, sizeof m);
    _exit(0);
  }
  close(p[1]);
  MemoryInfo seen{};
  ASSERT_EQ(read(p[0], &seen, sizeof seen), static_cast<ssize_t>(sizeof seen));
  close(p[0]);
  int status;
  waitpid(child, &status, 0);
  cgroup::remove_tree(dir);
  EXPECT_EQ(seen.total, limit);
  EXPECT_GT(seen.free, 0u);
  EXPECT_LE(seen.free, limit);
  // Outside the cgroup the whole machine shows.
  EXPECT_GT(memory_info().total, limit);
}

TEST(Sysinfo, CpusFollowTheAffinityMask) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(0, &set);
  pid_t child = fork();
  if (child == 0) {
    sched_setaffinity(0, sizeof set, &set);
    _exit(usable_cpus() == 1 ? 0 : 1);
  }
  int status;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(usable_cpus(), static_cast<uint32_t>(std::thread::hardware_concurrency()));
}

TEST(Sysinfo, RunnableTasksCountASpinningThread) {
  std::atomic<bool> stop{false};
  std::thread spin([&] {
    while (!stop) {
    }
  });
  uint32_t most = 0;
  for (int i = 0; i < 50 && most == 0; ++i) most = std::max(most, count_runnable_tasks());
  stop = true;
  spin.join();
  EXPECT_GE(most, 1u);
}

TEST(Sysinfo, LoadMeterNormalizesBySpeedAndCpus) {
  LoadMeter reference(10000, 1.0);
  reference.sample(2, 2);
  EXPECT_EQ(reference.load(), 100u);  // one runnable per CPU
  LoadMeter slow(5000, 1.0);
  slow.sample(2, 2);
  EXPECT_EQ(slow.load(), 200u);  // a half-speed CPU is twice as loaded
  LoadMeter smooth(10000, 0.5);
  smooth.sample(0, 1);
  smooth.sample(4, 1);
  EXPECT_EQ(smooth.load(), 200u);
}

}  // namespace
}  // namespace roam
