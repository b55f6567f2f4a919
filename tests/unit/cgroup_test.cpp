// The memory limit of a local cluster's nodes: which controller is used and
// which files get written, on plain files standing in for a cgroup (so both
// layouts are checked on any host).
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "roam/cgroup.hpp"

namespace fs = std::filesystem;
using namespace roam;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "roam-cgroup-test.XXXXXX").string();
    EXPECT_NE(::mkdtemp(tmpl.data()), nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// Cgroup files exist before anyone writes them, and a write replaces the
// value without truncating: empty regular files behave the same.
void put(const fs::path& file, const std::string& text) { std::ofstream(file) << text; }

std::string get(const fs::path& file) {
  std::ifstream in(file);
  std::string s;
  std::getline(in, s);
  return s;
}

}  // namespace

TEST(MemorySource, V2WhenTheUnifiedRootOffersMemory) {
  TempDir root;
  put(root.path / "cgroup.controllers", "cpuset cpu io memory pids\n");
  cgroup::Mounts m;
  m.unified = root.path;
  m.memory_v1 = "/sys/fs/cgroup/memory";
  EXPECT_EQ(cgroup::memory_source(m), cgroup::MemorySource::v2);
}

TEST(MemorySource, V1OnAHybridHost) {
  TempDir root;
  put(root.path / "cgroup.controllers", "\n");  // the controller-less v2 tree
  cgroup::Mounts m;
  m.unified = root.path;
  m.memory_v1 = "/sys/fs/cgroup/memory";
  EXPECT_EQ(cgroup::memory_source(m), cgroup::MemorySource::v1);
  m.memory_v1.clear();
  EXPECT_EQ(cgroup::memory_source(m), cgroup::MemorySource::none);
}

TEST(MemorySource, FoundInMountinfo) {
  auto m = cgroup::parse_mountinfo(
      "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
      "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n");
  EXPECT_EQ(m.memory_v1, "/sys/fs/cgroup/memory");
  EXPECT_EQ(m.unified, "/sys/fs/cgroup/unified");
}

TEST(LimitMemory, V2SetsMaxAndNoSwap) {
  TempDir cg;
  put(cg.path / "memory.max", "");
  put(cg.path / "memory.swap.max", "");
  cgroup::limit_memory(cg.path, cgroup::MemorySource::v2, 256ull << 20);
  EXPECT_EQ(get(cg.path / "memory.max"), "268435456");
  EXPECT_EQ(get(cg.path / "memory.swap.max"), "0");
}

TEST(LimitMemory, V2WithoutSwapAccounting) {
  TempDir cg;
  put(cg.path / "memory.max", "");
  cgroup::limit_memory(cg.path, cgroup::MemorySource::v2, 512ull << 20);
  EXPECT_EQ(get(cg.path / "memory.max"), "536870912");
  EXPECT_FALSE(fs::exists(cg.path / "memory.swap.max"));
}

TEST(LimitMemory, V1SetsMemoryAndMemsw) {
  TempDir cg;
  put(cg.path / "memory.limit_in_bytes", "");
  put(cg.path / "memory.memsw.limit_in_bytes", "");
  cgroup::limit_memory(cg.path, cgroup::MemorySource::v1, 256ull << 20);
  EXPECT_EQ(get(cg.path / "memory.limit_in_bytes"), "268435456");
  EXPECT_EQ(get(cg.path / "memory.memsw.limit_in_bytes"), "268435456");
}

TEST(LimitMemory, V1WithoutMemswIsQuiet) {
  TempDir cg;
  put(cg.path / "memory.limit_in_bytes", "");
  EXPECT_NO_THROW(cgroup::limit_memory(cg.path, cgroup::MemorySource::v1, 256ull << 20));
  EXPECT_EQ(get(cg.path / "memory.limit_in_bytes"), "268435456");
  EXPECT_FALSE(fs::exists(cg.path / "memory.memsw.limit_in_bytes"));
}
