// The process image: maps parsing, page classification, page reading,
// file identity, migratability, capture from /proc, and the image stream.
// Each live test forks a child that builds a known memory layout, reports
// the addresses it chose through a pipe, then waits to be inspected and
// killed (like zdtm: set up, signal ready, wait).
#include "roam/image.hpp"
#include "roam/image_codec.hpp"
#include "roam/image_migratable.hpp"
#include "roam/image_proc.hpp"

#include <fcntl.h>
#include <limits.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <liburing.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/shm.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "roam/error.hpp"

namespace roam::image {

void PrintTo(const PageRun& r, std::ostream* os) {
  *os << fmt::format("{{{:#x} +{} {}}}", r.start, r.npages,
                     r.kind == PageKind::anon ? "anon" : r.kind == PageKind::file_clean ? "file_clean" : "absent");
}

namespace {

using Bytes = std::vector<std::byte>;
using Clock = std::chrono::steady_clock;

// ---- helpers ----

void write_all(int fd, const void* p, size_t n) {
  auto* b = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t w = ::write(fd, b, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) _exit(3);
    b += w;
    n -= static_cast<size_t>(w);
  }
}

bool read_all(int fd, void* p, size_t n) {
  auto* b = static_cast<char*>(p);
  while (n > 0) {
    ssize_t r = ::read(fd, b, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    b += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

// A forked child that runs `setup`, sends back what it returns, then waits
// (blocked in pause) until the destructor kills and reaps it.
class Child {
 public:
  explicit Child(const std::function<std::string()>& setup) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) < 0) throw SysError("pipe2", errno);
    pid_ = ::fork();
    if (pid_ < 0) throw SysError("fork", errno);
    if (pid_ == 0) {
      ::close(fds[0]);
      std::string report;
      char status = 'K';
      try {
        report = setup();
      } catch (const std::exception& e) {
        status = 'E';
        report = e.what();
      }
      uint32_t n = static_cast<uint32_t>(report.size());
      write_all(fds[1], &status, 1);
      write_all(fds[1], &n, sizeof n);
      write_all(fds[1], report.data(), n);
      for (;;) ::pause();
    }
    ::close(fds[1]);
    char status = 0;
    uint32_t n = 0;
    bool ok = read_all(fds[0], &status, 1) && read_all(fds[0], &n, sizeof n);
    report_.resize(ok ? n : 0);
    ok = ok && read_all(fds[0], report_.data(), n);
    ::close(fds[0]);
    if (!ok) throw std::runtime_error("child died during setup");
    if (status != 'K') throw std::runtime_error("child setup failed: " + report_);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  pid_t pid() const { return pid_; }
  template <typename T>
  T report() const {
    T v{};
    EXPECT_EQ(report_.size(), sizeof v);
    std::memcpy(&v, report_.data(), std::min(sizeof v, report_.size()));
    return v;
  }

 private:
  pid_t pid_ = -1;
  std::string report_;
};

template <typename T>
std::string pack(const T& v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof v);
}

void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(fmt::format("{}: {}", what, std::strerror(errno)));
}

// A private scratch directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "roam-image-test.XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw SysError("mkdtemp", errno);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (std::filesystem::path(path_) / name).string(); }

 private:
  std::string path_;
};

void write_file(const std::string& path, const std::string& content) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw SysError("create " + path, errno);
  write_all(fd, content.data(), content.size());
  ::fsync(fd);
  ::close(fd);
}

const Vma* find_vma(const std::vector<Vma>& vmas, uint64_t addr) {
  for (const Vma& v : vmas)
    if (v.start <= addr && addr < v.end) return &v;
  return nullptr;
}

const Vma* find_kind(const std::vector<Vma>& vmas, VmaKind kind) {
  for (const Vma& v : vmas)
    if (v.kind == kind) return &v;
  return nullptr;
}

// Runs for a sorted list of page indices of a region starting at base.
std::vector<PageRun> runs_of(uint64_t base, const std::vector<uint64_t>& pages, PageKind kind) {
  std::vector<PageRun> out;
  for (uint64_t p : pages) {
    uint64_t addr = base + p * kPageSize;
    if (!out.empty() && out.back().end() == addr) out.back().npages++;
    else out.push_back({addr, 1, kind});
  }
  return out;
}

std::vector<PageRun> runs_in(const std::vector<PageRun>& runs, uint64_t start, uint64_t end) {
  std::vector<PageRun> out;
  for (const PageRun& r : runs)
    if (r.start >= start && r.end() <= end) out.push_back(r);
  return out;
}

uint64_t pattern_word(uint64_t addr) { return (addr * 0x9E3779B97F4A7C15ull) ^ 0x5eed5eed5eed5eedull; }

void fill_pattern(void* page, size_t len) {
  auto* w = static_cast<uint64_t*>(page);
  for (size_t i = 0; i < len / 8; ++i) w[i] = pattern_word(reinterpret_cast<uint64_t>(&w[i]));
}

std::string text_of(const Migratability& m) { return m.ok ? std::string("OK") : m.reason; }

// ---- maps parsing ----

// A maps line as show_map_vma() prints it: the header and a blank, padded to
// column 72 when a name follows, one more blank, the name.
std::string kline(const std::string& header, const std::string& name) {
  std::string s = header + " ";
  if (!name.empty()) {
    if (s.size() < 72) s.append(72 - s.size(), ' ');
    s += " " + name;
  }
  return s + "\n";
}

TEST(MapsParse, KindsProtsAndAwkwardNames) {
  std::string text =
      kline("00400000-00452000 r-xp 00000000 fe:00 1234", "/usr/bin/prog") +
      "Size:                328 kB\n"
      "VmFlags: rd ex mr mw me dw\n" +
      kline("7f0000000000-7f0000001000 rw-s 00001000 00:05 99", "/tmp/dir with spaces/a b.bin") +
      "VmFlags: rd wr sh mr mw me ms\n" +
      kline("7f0000001000-7f0000002000 rw-p 00000000 fe:00 77", "/tmp/gone (deleted)") +
      kline("7f0000002000-7f0000003000 rw-s 00000000 00:01 5", "/dev/zero (deleted)") +
      kline("7f0000003000-7f0000004000 rw-s 00000000 00:01 6", "/SYSV0000abcd (deleted)") +
      kline("7f0000004000-7f0000005000 rw-s 00000000 00:10 7", "anon_inode:[io_uring]") +
      kline("7f0000005000-7f0000006000 r--p 00000000 00:00 0", "[vvar]") +
      kline("7f0000006000-7f0000008000 r--p 00000000 00:00 0", "[vvar_vclock]") +
      kline("7f0000008000-7f000000a000 r-xp 00000000 00:00 0", "[vdso]") +
      kline("7f000000a000-7f000000b000 rw-p 00000000 00:00 0", "[anon:arena]") +
      kline("7f000000b000-7f000000c000 ---p 00000000 00:00 0", "") +
      kline("7f000000c000-7f000000d000 r--p 00000000 fe:00 8", "/tmp/new\\012line") +
      kline("7f000000d000-7f000000e000 r--p 00000000 fe:00 9", "  two leading blanks") +
      kline("7f000000e000-7f000000f000 r--p 00000000 fe:00 10", "[uprobes]") +
      kline("7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0", "[stack]") +
      "VmFlags: rd wr mr mw me gd ac dd\n" +
      kline("ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0", "[vsyscall]") +
      kline("ffffffffff601000-ffffffffff602000 r--p 123456789abc 103:1f 18446744073709551615", "/long/header");
  auto v = parse_maps(text);
  ASSERT_EQ(v.size(), 17u);
  EXPECT_EQ(v[0].kind, VmaKind::file);
  EXPECT_EQ(v[0].prot, kProtRead | kProtExec);
  EXPECT_EQ(v[0].path, "/usr/bin/prog");
  EXPECT_EQ(v[0].inode, 1234u);
  EXPECT_EQ(v[0].dev_major, 0xfeu);
  EXPECT_EQ(v[0].flags, kVmReadable | kVmExecutable | kVmMayRead | kVmMayWrite | kVmMayExec);
  EXPECT_EQ(v[1].path, "/tmp/dir with spaces/a b.bin");
  EXPECT_TRUE(v[1].shared);
  EXPECT_EQ(v[1].offset, 0x1000u);
  EXPECT_TRUE(v[1].has(kVmShared));
  EXPECT_TRUE(v[1].has(kVmMayShare));
  EXPECT_EQ(v[2].kind, VmaKind::deleted_file);
  EXPECT_EQ(v[2].path, "/tmp/gone");
  EXPECT_EQ(v[3].kind, VmaKind::anon);
  EXPECT_TRUE(v[3].shared);
  EXPECT_EQ(v[4].kind, VmaKind::sysv_shm);
  EXPECT_EQ(v[5].kind, VmaKind::special_file);
  EXPECT_EQ(v[6].kind, VmaKind::vvar);
  EXPECT_EQ(v[7].kind, VmaKind::vvar_vclock);
  EXPECT_EQ(v[8].kind, VmaKind::vdso);
  EXPECT_EQ(v[9].kind, VmaKind::anon);
  EXPECT_EQ(v[10].kind, VmaKind::anon);
  EXPECT_EQ(v[10].prot, 0);
  EXPECT_EQ(v[10].path, "");
  EXPECT_EQ(v[11].path, "/tmp/new\nline");
  EXPECT_EQ(v[12].path, "  two leading blanks");
  EXPECT_EQ(v[12].kind, VmaKind::special_file);  // not absolute: not a file we can reopen
  EXPECT_EQ(v[13].kind, VmaKind::other_special);
  EXPECT_EQ(v[14].kind, VmaKind::stack);
  EXPECT_TRUE(v[14].has(kVmGrowsDown));
  EXPECT_TRUE(v[14].has(kVmDontDump));
  EXPECT_EQ(v[15].kind, VmaKind::vsyscall);
  EXPECT_EQ(v[16].path, "/long/header");
  EXPECT_EQ(v[16].offset, 0x123456789abcu);
  EXPECT_EQ(v[16].dev_major, 0x103u);
  EXPECT_EQ(v[16].dev_minor, 0x1fu);
  EXPECT_EQ(v[16].inode, UINT64_MAX);
}

TEST(MapsParse, RejectsMalformedHeaders) {
  EXPECT_THROW(parse_maps("0040000-zz r-xp 00000000 fe:00 1 /x\n"), FormatError);
  EXPECT_THROW(parse_maps("00401000-00400000 r-xp 00000000 fe:00 1 /x\n"), FormatError);
  EXPECT_THROW(parse_maps("00400000-00401000 r-x 00000000 fe:00 1 /x\n"), FormatError);
  EXPECT_THROW(parse_maps("00400000-00401000 r-xp 00000000 fe00 1 /x\n"), FormatError);
  EXPECT_NO_THROW(parse_maps("Rss: 4 kB\nVmFlags: rd\n"));
}

struct LayoutReport {
  uint64_t anon, file, shared, prot_none, literal_deleted, deleted, memfd, dontdump;
};

TEST(MapsRead, LiveChildLayout) {
  TempDir dir;
  std::string spaced = dir.file("a file with spaces.bin");
  std::string literal = dir.file("weird (deleted)");
  std::string doomed = dir.file("doomed");
  std::string shared_path = dir.file("shared");
  for (const auto& p : {spaced, literal, doomed, shared_path}) write_file(p, std::string(8 * kPageSize, 'x'));
  Child child([&] {
    LayoutReport r{};
    auto map_file = [](const std::string& path, int prot, int flags) {
      int fd = ::open(path.c_str(), O_RDWR);
      check(fd >= 0, "open");
      void* p = ::mmap(nullptr, 8 * kPageSize, prot, flags, fd, 0);
      check(p != MAP_FAILED, "mmap");
      ::close(fd);
      return reinterpret_cast<uint64_t>(p);
    };
    r.anon = reinterpret_cast<uint64_t>(
        ::mmap(nullptr, 64 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    r.file = map_file(spaced, PROT_READ | PROT_EXEC, MAP_PRIVATE);
    r.shared = map_file(shared_path, PROT_READ | PROT_WRITE, MAP_SHARED);
    r.literal_deleted = map_file(literal, PROT_READ, MAP_PRIVATE);
    r.deleted = map_file(doomed, PROT_READ | PROT_WRITE, MAP_PRIVATE);
    ::unlink(doomed.c_str());
    r.prot_none = reinterpret_cast<uint64_t>(::mmap(nullptr, kPageSize, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    int mfd = ::memfd_create("roam-test", 0);
    check(mfd >= 0 && ::ftruncate(mfd, kPageSize) == 0, "memfd");
    r.memfd = reinterpret_cast<uint64_t>(::mmap(nullptr, kPageSize, PROT_READ, MAP_PRIVATE, mfd, 0));
    r.dontdump = reinterpret_cast<uint64_t>(
        ::mmap(nullptr, 4 * kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    check(::madvise(reinterpret_cast<void*>(r.dontdump), 4 * kPageSize, MADV_DONTDUMP) == 0, "madvise");
    check(::sbrk(static_cast<intptr_t>(kPageSize)) != reinterpret_cast<void*>(-1), "sbrk");  // a [heap] even when malloc avoids brk
    return pack(r);
  });
  auto r = child.report<LayoutReport>();
  auto vmas = read_maps(child.pid());

  const Vma* anon = find_vma(vmas, r.anon);
  ASSERT_NE(anon, nullptr);
  EXPECT_EQ(anon->kind, VmaKind::anon);
  EXPECT_EQ(anon->start, r.anon);
  EXPECT_EQ(anon->size(), 64u << 20);
  EXPECT_EQ(anon->prot, kProtRead | kProtWrite);
  EXPECT_FALSE(anon->shared);

  const Vma* file = find_vma(vmas, r.file);
  ASSERT_NE(file, nullptr);
  EXPECT_EQ(file->kind, VmaKind::file);
  EXPECT_EQ(file->path, spaced);
  EXPECT_EQ(file->prot, kProtRead | kProtExec);
  struct stat st {};
  ASSERT_EQ(::stat(spaced.c_str(), &st), 0);
  EXPECT_EQ(file->inode, st.st_ino);
  EXPECT_EQ(file->dev_major, major(st.st_dev));
  EXPECT_EQ(file->dev_minor, minor(st.st_dev));

  const Vma* shared = find_vma(vmas, r.shared);
  ASSERT_NE(shared, nullptr);
  EXPECT_TRUE(shared->shared);
  EXPECT_TRUE(shared->has(kVmShared));
  EXPECT_EQ(shared->path, shared_path);

  const Vma* literal_vma = find_vma(vmas, r.literal_deleted);
  ASSERT_NE(literal_vma, nullptr);
  EXPECT_EQ(literal_vma->kind, VmaKind::file);
  EXPECT_EQ(literal_vma->path, literal);

  const Vma* deleted = find_vma(vmas, r.deleted);
  ASSERT_NE(deleted, nullptr);
  EXPECT_EQ(deleted->kind, VmaKind::deleted_file);
  EXPECT_EQ(deleted->path, doomed);

  const Vma* memfd = find_vma(vmas, r.memfd);
  ASSERT_NE(memfd, nullptr);
  EXPECT_EQ(memfd->kind, VmaKind::deleted_file);
  EXPECT_EQ(memfd->path, "/memfd:roam-test");

  const Vma* none = find_vma(vmas, r.prot_none);
  ASSERT_NE(none, nullptr);
  EXPECT_EQ(none->prot, 0);

  const Vma* dd = find_vma(vmas, r.dontdump);
  ASSERT_NE(dd, nullptr);
  EXPECT_TRUE(dd->has(kVmDontDump));

  const Vma* stack = find_kind(vmas, VmaKind::stack);
  ASSERT_NE(stack, nullptr);
  EXPECT_TRUE(stack->has(kVmGrowsDown));
  EXPECT_NE(find_kind(vmas, VmaKind::heap), nullptr);
  for (VmaKind k : {VmaKind::vdso, VmaKind::vvar, VmaKind::vvar_vclock, VmaKind::vsyscall}) {
    const Vma* special = find_kind(vmas, k);
    ASSERT_NE(special, nullptr) << to_string(k);
    EXPECT_TRUE(special->kernel_provided());
  }
  for (size_t i = 1; i < vmas.size(); ++i) EXPECT_LE(vmas[i - 1].end, vmas[i].start);
}

// ---- page classification ----

struct AnonReport {
  uint64_t base;
};

const std::vector<uint64_t> kWrittenPages = {0, 1, 2, 100, 511, 512, 4095, 8000, 8001, 8002, 8003, 16383};
const std::vector<uint64_t> kReadOnlyPages = {300, 301, 9000};

Child anon_child() {
  return Child([] {
    auto* p = static_cast<char*>(::mmap(nullptr, 64 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    check(p != MAP_FAILED, "mmap");
    check(::madvise(p, 64 << 20, MADV_NOHUGEPAGE) == 0, "madvise");  // exactness: no 2 MiB pages
    for (uint64_t i : kWrittenPages) fill_pattern(p + i * kPageSize, kPageSize);
    for (uint64_t i : kReadOnlyPages) (void)*static_cast<volatile char*>(p + i * kPageSize);
    return pack(AnonReport{reinterpret_cast<uint64_t>(p)});
  });
}

TEST(Pages, AnonTouchedPagesAreExactlyTheAnonRuns) {
  Child child = anon_child();
  uint64_t base = child.report<AnonReport>().base;
  auto vmas = read_maps(child.pid());
  const Vma* v = find_vma(vmas, base);
  ASSERT_NE(v, nullptr);
  std::vector<PageRun> want = runs_of(base, kWrittenPages, PageKind::anon);
  for (ScanMethod m : {ScanMethod::pagemap_read, ScanMethod::pagemap_scan, ScanMethod::automatic}) {
    PageScanner scanner(child.pid(), m);
    // Read-only touches map the shared zero page: absent, like never touched.
    EXPECT_EQ(scanner.runs(*v), want) << "method " << static_cast<int>(m);
  }
}

TEST(Pages, BothScanMethodsAgreeOnTheWholeProcess) {
  Child child = anon_child();
  auto vmas = read_maps(child.pid());
  auto by_read = page_runs(child.pid(), vmas, ScanMethod::pagemap_read);
  auto by_scan = page_runs(child.pid(), vmas, ScanMethod::pagemap_scan);
  EXPECT_EQ(by_read, by_scan);
  EXPECT_FALSE(by_read.empty());
  for (const Vma& v : vmas)
    if (v.kernel_provided()) { EXPECT_TRUE(runs_in(by_read, v.start, v.end).empty()) << to_string(v.kind); }
}

struct FileReport {
  uint64_t base;
};

TEST(Pages, PrivateFileMappingWrittenIsAnonReadIsFileClean) {
  TempDir dir;
  std::string path = dir.file("private.bin");
  write_file(path, std::string(64 * kPageSize, 'f'));
  {
    // Out of the page cache, so a read fault maps only its own page (no
    // fault-around over cached neighbours).
    int fd = ::open(path.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
    ::close(fd);
  }
  // Touches 16 pages apart: each fault-around window holds one touched page.
  const std::vector<uint64_t> read_only = {0, 32};
  const std::vector<uint64_t> written = {16, 48};
  Child child([&] {
    int fd = ::open(path.c_str(), O_RDONLY);
    check(fd >= 0, "open");
    auto* p = static_cast<char*>(::mmap(nullptr, 64 * kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0));
    check(p != MAP_FAILED, "mmap");
    check(::madvise(p, 64 * kPageSize, MADV_RANDOM) == 0, "madvise");
    for (uint64_t i : written) p[i * kPageSize + 7] = 'w';
    for (uint64_t i : read_only) (void)*static_cast<volatile char*>(p + i * kPageSize);
    return pack(FileReport{reinterpret_cast<uint64_t>(p)});
  });
  uint64_t base = child.report<FileReport>().base;
  auto vmas = read_maps(child.pid());
  const Vma* v = find_vma(vmas, base);
  ASSERT_NE(v, nullptr);
  ASSERT_EQ(v->kind, VmaKind::file);
  for (ScanMethod m : {ScanMethod::pagemap_read, ScanMethod::pagemap_scan}) {
    PageScanner scanner(child.pid(), m);
    auto runs = scanner.runs(*v);
    std::vector<PageRun> want = {{base, 1, PageKind::file_clean},
                                 {base + 16 * kPageSize, 1, PageKind::anon},
                                 {base + 32 * kPageSize, 1, PageKind::file_clean},
                                 {base + 48 * kPageSize, 1, PageKind::anon}};
    EXPECT_EQ(runs, want) << "method " << static_cast<int>(m);
  }
}

struct ReadReport {
  uint64_t every_other;  // 64 MiB, every other page written: 8192 one-page runs
  uint64_t prot_none;    // 4 pages written, then PROT_NONE
  uint64_t readonly;     // 4 pages written, then PROT_READ
};

TEST(ReadPages, ExactBytesInBatchesWithProtNoneFallback) {
  Child child([] {
    ReadReport r{};
    const size_t big = 64 << 20;
    auto* p = static_cast<char*>(::mmap(nullptr, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    check(p != MAP_FAILED && ::madvise(p, big, MADV_NOHUGEPAGE) == 0, "mmap");
    for (size_t i = 0; i < big / kPageSize; i += 2) fill_pattern(p + i * kPageSize, kPageSize);
    r.every_other = reinterpret_cast<uint64_t>(p);
    for (uint64_t* at : {&r.prot_none, &r.readonly}) {
      auto* q = static_cast<char*>(
          ::mmap(nullptr, 4 * kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
      check(q != MAP_FAILED, "mmap");
      fill_pattern(q, 4 * kPageSize);
      *at = reinterpret_cast<uint64_t>(q);
    }
    check(::mprotect(reinterpret_cast<void*>(r.prot_none), 4 * kPageSize, PROT_NONE) == 0, "mprotect");
    check(::mprotect(reinterpret_cast<void*>(r.readonly), 4 * kPageSize, PROT_READ) == 0, "mprotect");
    return pack(r);
  });
  auto r = child.report<ReadReport>();
  auto vmas = read_maps(child.pid());
  PageScanner scanner(child.pid());
  const Vma* eo = find_vma(vmas, r.every_other);
  auto every_other = scanner.runs(*eo);
  // More runs than one PAGEMAP_SCAN call returns: both methods must agree.
  ASSERT_EQ(every_other, PageScanner(child.pid(), ScanMethod::pagemap_read).runs(*eo));
  ASSERT_EQ(every_other.size(), 8192u);
  for (size_t i = 0; i < every_other.size(); ++i)
    ASSERT_EQ(every_other[i], (PageRun{r.every_other + 2 * i * kPageSize, 1, PageKind::anon}));
  auto prot_none = scanner.runs(*find_vma(vmas, r.prot_none));
  ASSERT_EQ(prot_none, (std::vector<PageRun>{{r.prot_none, 4, PageKind::anon}}));
  auto readonly = scanner.runs(*find_vma(vmas, r.readonly));
  ASSERT_EQ(readonly, (std::vector<PageRun>{{r.readonly, 4, PageKind::anon}}));

  // The unreadable region sits between readable ones, so one batch holds all three kinds.
  std::vector<PageRun> runs(every_other.begin(), every_other.begin() + 3);
  runs.insert(runs.end(), prot_none.begin(), prot_none.end());
  runs.insert(runs.end(), readonly.begin(), readonly.end());
  runs.insert(runs.end(), every_other.begin() + 3, every_other.end());

  for (size_t batch : {size_t{3} * kPageSize, kDefaultReadBatch}) {
    uint64_t mismatches = 0, pages = 0;
    size_t next_run = 0;
    uint64_t next_addr = runs[0].start;
    auto stats = read_pages(
        child.pid(), runs,
        [&](uint64_t addr, std::span<const std::byte> data) {
          // In order, page-aligned, exactly the runs.
          EXPECT_EQ(addr, next_addr);
          EXPECT_EQ(data.size() % kPageSize, 0u);
          next_addr = addr + data.size();
          if (next_run < runs.size() && next_addr == runs[next_run].end()) {
            ++next_run;
            if (next_run < runs.size()) next_addr = runs[next_run].start;
          }
          const auto* w = reinterpret_cast<const uint64_t*>(data.data());
          for (size_t i = 0; i < data.size() / 8; ++i) mismatches += w[i] != pattern_word(addr + i * 8);
          pages += data.size() / kPageSize;
        },
        batch);
    EXPECT_EQ(next_run, runs.size());
    EXPECT_EQ(mismatches, 0u) << "batch " << batch;
    EXPECT_EQ(pages, 8192u + 8u);
    EXPECT_EQ(stats.bytes, pages * kPageSize);
    EXPECT_EQ(stats.mem_fallback_bytes, 4 * kPageSize) << "PROT_NONE pages come through /proc/PID/mem";
    // Calls: one per batch (by bytes or by IOV_MAX runs), plus one after each
    // refused page (the unreadable region splits its batch).
    EXPECT_LE(stats.vm_readv_calls, pages * kPageSize / batch + runs.size() / IOV_MAX + 3) << "batch " << batch;
  }
}

TEST(ReadPages, UnmappedAddressIsAnError) {
  Child child([] {
    void* hole = ::mmap(nullptr, kPageSize, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    check(hole != MAP_FAILED && ::munmap(hole, kPageSize) == 0, "mmap");
    return pack(AnonReport{reinterpret_cast<uint64_t>(hole)});
  });
  std::vector<PageRun> runs = {{child.report<AnonReport>().base, 1, PageKind::anon}};
  EXPECT_THROW(read_pages(child.pid(), runs, [](uint64_t, std::span<const std::byte>) {}), SysError);
}

// ---- file identity ----

TEST(FileIdentityTest, ContentHashMatchesAndNoticesModification) {
  TempDir dir;
  std::string path = dir.file("data.bin");
  write_file(path, std::string(3 * 1000 * 1000, 'a'));
  FileIdentity id = identify(path);
  EXPECT_EQ(id.kind, DigestKind::blake2b);
  EXPECT_EQ(id.size, 3000000u);
  EXPECT_EQ(id.digest.size(), 32u);
  EXPECT_TRUE(matches(id, path));
  EXPECT_EQ(identify(path), id);

  std::string changed(3 * 1000 * 1000, 'a');
  changed[1500000] = 'b';
  write_file(path, changed);
  EXPECT_FALSE(matches(id, path)) << "same size, one byte differs";
  write_file(path, std::string(3 * 1000 * 1000, 'a'));
  EXPECT_TRUE(matches(id, path)) << "a whole-content hash proves the bytes whatever the mtime";
  EXPECT_FALSE(matches(id, dir.file("missing")));
}

TEST(FileIdentityTest, ElfUsesBuildIdAndMtime) {
  TempDir dir;
  std::string path = dir.file("copy-of-self");
  std::filesystem::copy_file("/proc/self/exe", path);
  FileIdentity id = identify(path);
  ASSERT_EQ(id.kind, DigestKind::elf_build_id) << "the test binary is linked with --build-id";
  EXPECT_GE(id.digest.size(), 16u);
  EXPECT_TRUE(matches(id, path));
  EXPECT_EQ(identify("/proc/self/exe").digest, id.digest);

  struct timespec times[2] = {{0, UTIME_OMIT}, {1000000000, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
  EXPECT_FALSE(matches(id, path)) << "a build id alone does not prove the bytes";
}

TEST(FileIdentityTest, BigFilesAreSampled) {
  TempDir dir;
  std::string path = dir.file("big.bin");
  {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(kFullHashLimit + (8 << 20))), 0);
    ::close(fd);
  }
  FileIdentity id = identify(path);
  EXPECT_EQ(id.kind, DigestKind::blake2b_sampled);
  EXPECT_TRUE(matches(id, path));
  {
    int fd = ::open(path.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, "z", 1, static_cast<off_t>(id.size - 10)), 1);  // inside the last MiB
    ::close(fd);
  }
  EXPECT_FALSE(matches(id, path));
}

// ---- migratable ----

TEST(Migratable, PlainChildIsOk) {
  TempDir dir;
  std::string ro = dir.file("readonly-shared");
  write_file(ro, std::string(kPageSize, 'r'));
  Child child([&] {
    int fd = ::open(ro.c_str(), O_RDONLY);  // no VM_MAYWRITE: behaves like the file itself
    check(fd >= 0 && ::mmap(nullptr, kPageSize, PROT_READ, MAP_SHARED, fd, 0) != MAP_FAILED, "mmap");
    return std::string();
  });
  EXPECT_EQ(text_of(migratable(child.pid())), "OK");
}

TEST(Migratable, ThreadsAreRefused) {
  Child child([] {
    pthread_t t;
    auto sleeper = [](void*) -> void* {
      for (;;) ::pause();
    };
    if (pthread_create(&t, nullptr, sleeper, nullptr) != 0) throw std::runtime_error("pthread_create");
    while (proc::status_number(proc::read_file(::getpid(), "status"), "Threads") != 2) ::usleep(1000);
    return std::string();
  });
  EXPECT_EQ(text_of(migratable(child.pid())), "has 2 threads");
}

TEST(Migratable, WritableSharedMappingsAreRefused) {
  TempDir dir;
  std::string path = dir.file("shared file");
  write_file(path, std::string(2 * kPageSize, 's'));
  Child file_child([&] {
    int fd = ::open(path.c_str(), O_RDWR);
    void* p = ::mmap(nullptr, 2 * kPageSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    check(fd >= 0 && p != MAP_FAILED, "mmap");
    return pack(AnonReport{reinterpret_cast<uint64_t>(p)});
  });
  uint64_t at = file_child.report<AnonReport>().base;
  EXPECT_EQ(text_of(migratable(file_child.pid())),
            fmt::format("has a shared mapping of {} at {:#x}-{:#x}", path, at, at + 2 * kPageSize));

  Child maywrite_child([&] {
    int fd = ::open(path.c_str(), O_RDWR);  // read-only now, but mprotect could make it writable
    check(fd >= 0 && ::mmap(nullptr, kPageSize, PROT_READ, MAP_SHARED, fd, 0) != MAP_FAILED, "mmap");
    return std::string();
  });
  EXPECT_NE(text_of(migratable(maywrite_child.pid())).find("has a shared mapping of " + path), std::string::npos);

  Child anon_child([] {
    check(::mmap(nullptr, kPageSize, PROT_READ, MAP_SHARED | MAP_ANONYMOUS, -1, 0) != MAP_FAILED, "mmap");
    return std::string();
  });
  EXPECT_NE(text_of(migratable(anon_child.pid())).find("has a shared anonymous mapping at 0x"), std::string::npos);
}

TEST(Migratable, SysvShmAndIoUringAreRefused) {
  Child shm_child([] {
    int id = ::shmget(IPC_PRIVATE, kPageSize, IPC_CREAT | 0600);
    check(id >= 0, "shmget");
    void* p = ::shmat(id, nullptr, 0);
    ::shmctl(id, IPC_RMID, nullptr);  // gone once the child is
    check(p != reinterpret_cast<void*>(-1), "shmat");
    return std::string();
  });
  EXPECT_NE(text_of(migratable(shm_child.pid())).find("has a SysV shared memory segment /SYSV"), std::string::npos)
      << text_of(migratable(shm_child.pid()));

  Child uring_child([] {
    static io_uring ring;
    int rc = io_uring_queue_init(4, &ring, 0);
    if (rc < 0) throw std::runtime_error(fmt::format("io_uring_queue_init: {}", std::strerror(-rc)));
    return std::string();
  });
  EXPECT_NE(text_of(migratable(uring_child.pid())).find("has an io_uring ring at 0x"), std::string::npos)
      << text_of(migratable(uring_child.pid()));
}

TEST(Migratable, SealedRegionsAreRefused) {
  // Neither releasing the deputy's memory nor restoring into it when the
  // process comes home could unmap a sealed region.
  Child child([] {
    void* p = ::mmap(nullptr, kPageSize, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    check(p != MAP_FAILED, "mmap");
    constexpr long kSysMseal = 462;
    if (::syscall(kSysMseal, p, kPageSize, 0) != 0) return pack(AnonReport{0});  // Linux < 6.10
    return pack(AnonReport{reinterpret_cast<uint64_t>(p)});
  });
  uint64_t at = child.report<AnonReport>().base;
  if (at == 0) GTEST_SKIP() << "this kernel has no mseal";
  EXPECT_EQ(text_of(migratable(child.pid())), fmt::format("has a sealed region (mseal) at {:#x}-{:#x}", at, at + kPageSize));
}

TEST(Migratable, SeccompFilteredProcessesMove) {
  // Filters move with the process (the capture reads them: Capture.* in
  // restore_test, migrate_test:seccomp_sandbox).
  Child filtered([] {
    sock_filter allow{BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ALLOW};
    sock_fprog prog{1, &allow};
    check(::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "prctl");
    check(::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0, "seccomp");
    return std::string();
  });
  EXPECT_EQ(text_of(migratable(filtered.pid())), "OK");
  EXPECT_EQ(text_of(migratable(filtered.pid(), 0, read_maps(filtered.pid()))), "OK");
}

TEST(Migratable, TracedZombieKernelThreadAndMissing) {
  {
    Child child([] { return std::string(); });
    ASSERT_EQ(::ptrace(PTRACE_SEIZE, child.pid(), nullptr, nullptr), 0) << std::strerror(errno);
    EXPECT_EQ(text_of(migratable(child.pid())), fmt::format("is being traced by process {}", ::getpid()));
    EXPECT_EQ(text_of(migratable(child.pid(), ::getpid())), "OK") << "our own tracer is tolerated";
  }
  pid_t z = ::fork();
  ASSERT_GE(z, 0);
  if (z == 0) _exit(0);
  siginfo_t si{};
  ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(z), &si, WEXITED | WNOWAIT), 0);
  EXPECT_EQ(text_of(migratable(z)), "is a zombie");
  ::waitpid(z, nullptr, 0);
  EXPECT_EQ(text_of(migratable(z)), fmt::format("process {} does not exist", z));

  auto kthreadd = proc::stat_fields(proc::read_file(2, "stat"));
  if (kthreadd.size() > 2 && kthreadd[2] == "kthreadd") { EXPECT_EQ(text_of(migratable(2)), "is a kernel thread"); }
}

// ---- capture from /proc ----

struct CaptureReport {
  uint64_t robust_head, robust_len;
  uint64_t argv0, environ0, code, brk_now;
  uint64_t at_entry, at_sysinfo_ehdr, at_random;
  int32_t timer_signal, timer_thread;
  int32_t tid;
};

void noop_handler(int) {}

TEST(Capture, FromProcMatchesWhatTheChildSet) {
  Child child([] {
    CaptureReport r{};
    check(::prctl(PR_SET_NAME, "roam-capture") == 0, "PR_SET_NAME");
    struct rlimit lim = {123, 456};
    check(::setrlimit(RLIMIT_NOFILE, &lim) == 0, "setrlimit");
    check(::personality(ADDR_NO_RANDOMIZE | READ_IMPLIES_EXEC) != -1, "personality");
    ::umask(027);
    struct itimerval it = {{0, 0}, {1000, 0}};
    check(::setitimer(ITIMER_REAL, &it, nullptr) == 0, "setitimer");

    sigevent ev{};
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGUSR1;
    ev.sigev_value.sival_ptr = reinterpret_cast<void*>(0x1234abcdull);
    timer_t t1, t2;
    check(::timer_create(CLOCK_MONOTONIC, &ev, &t1) == 0, "timer_create");
    itimerspec spec = {{5, 0}, {500, 0}};
    check(::timer_settime(t1, 0, &spec, nullptr) == 0, "timer_settime");
    sigevent ev2{};
    ev2.sigev_notify = SIGEV_THREAD_ID;
    ev2.sigev_signo = SIGRTMIN + 1;
    ev2._sigev_un._tid = static_cast<pid_t>(::syscall(SYS_gettid));
    check(::timer_create(CLOCK_REALTIME, &ev2, &t2) == 0, "timer_create thread");
    r.timer_signal = static_cast<int32_t>(reinterpret_cast<intptr_t>(t1));
    r.timer_thread = static_cast<int32_t>(reinterpret_cast<intptr_t>(t2));
    r.tid = static_cast<int32_t>(::syscall(SYS_gettid));

    struct sigaction sa {};
    sa.sa_handler = noop_handler;
    check(::sigaction(SIGUSR1, &sa, nullptr) == 0, "sigaction");
    ::signal(SIGTERM, SIG_IGN);
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR2);
    sigaddset(&block, SIGURG);
    check(::sigprocmask(SIG_BLOCK, &block, nullptr) == 0, "sigprocmask");
    check(::syscall(SYS_tgkill, ::getpid(), ::syscall(SYS_gettid), SIGUSR2) == 0, "tgkill");  // private queue
    check(::kill(::getpid(), SIGURG) == 0, "kill");                                            // shared queue
    check(::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "no_new_privs");
    check(::prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0, "thp_disable");

    void* head = nullptr;
    size_t len = 0;
    check(::syscall(SYS_get_robust_list, 0, &head, &len) == 0, "get_robust_list");
    r.robust_head = reinterpret_cast<uint64_t>(head);
    r.robust_len = len;
    r.argv0 = reinterpret_cast<uint64_t>(program_invocation_name);
    r.environ0 = environ && environ[0] ? reinterpret_cast<uint64_t>(environ[0]) : 0;
    r.code = reinterpret_cast<uint64_t>(&noop_handler);
    r.brk_now = reinterpret_cast<uint64_t>(::sbrk(0));
    r.at_entry = getauxval(AT_ENTRY);
    r.at_sysinfo_ehdr = getauxval(AT_SYSINFO_EHDR);
    r.at_random = getauxval(AT_RANDOM);
    return pack(r);
  });
  auto r = child.report<CaptureReport>();
  ProcessImage img = capture_from_proc(child.pid());

  EXPECT_EQ(img.pid, child.pid());
  EXPECT_EQ(img.comm, "roam-capture");
  char self[4096] = {};
  ASSERT_GT(::readlink("/proc/self/exe", self, sizeof self - 1), 0);
  EXPECT_EQ(img.exe, self);
  EXPECT_EQ(img.personality, static_cast<uint32_t>(ADDR_NO_RANDOMIZE | READ_IMPLIES_EXEC));
  EXPECT_EQ(img.umask, 027u);

  ASSERT_EQ(img.rlimits.size(), static_cast<size_t>(RLIMIT_NLIMITS));
  EXPECT_EQ(img.rlimits[RLIMIT_NOFILE], (Rlimit{RLIMIT_NOFILE, 123, 456}));
  struct rlimit stack {};
  ::getrlimit(RLIMIT_STACK, &stack);
  EXPECT_EQ(img.rlimits[RLIMIT_STACK].cur, stack.rlim_cur) << "inherited limits come through too";

  const MmFields& mm = img.mm;
  EXPECT_LE(mm.start_code, r.code);
  EXPECT_LT(r.code, mm.end_code);
  EXPECT_LE(mm.arg_start, r.argv0);
  EXPECT_LT(r.argv0, mm.arg_end);
  if (r.environ0) {
    EXPECT_LE(mm.env_start, r.environ0);
    EXPECT_LT(r.environ0, mm.env_end);
  }
  EXPECT_LE(mm.start_brk, r.brk_now);
  EXPECT_LT(mm.start_data, mm.end_data);
  EXPECT_NE(mm.start_stack, 0u);
  EXPECT_FALSE(mm.brk.has_value()) << "brk(0) needs injection";
  auto aux = [&](uint64_t type) -> std::optional<uint64_t> {
    for (const AuxvEntry& e : mm.auxv)
      if (e.type == type) return e.value;
    return std::nullopt;
  };
  EXPECT_EQ(aux(AT_ENTRY), r.at_entry);
  EXPECT_EQ(aux(AT_SYSINFO_EHDR), r.at_sysinfo_ehdr);
  EXPECT_EQ(aux(AT_RANDOM), r.at_random);
  EXPECT_EQ(aux(AT_PAGESZ), kPageSize);
  const ImageVma* vdso = nullptr;
  for (const ImageVma& v : img.vmas)
    if (v.vma.kind == VmaKind::vdso) vdso = &v;
  ASSERT_NE(vdso, nullptr);
  EXPECT_EQ(vdso->vma.start, r.at_sysinfo_ehdr);

  ASSERT_EQ(img.posix_timers.size(), 2u);
  const PosixTimer* sig = nullptr;
  const PosixTimer* thr = nullptr;
  for (const PosixTimer& t : img.posix_timers) (t.id == r.timer_signal ? sig : thr) = &t;
  ASSERT_NE(sig, nullptr);
  ASSERT_NE(thr, nullptr);
  EXPECT_EQ(sig->clock, CLOCK_MONOTONIC);
  EXPECT_EQ(sig->signo, SIGUSR1);
  EXPECT_EQ(sig->sigev_value, 0x1234abcdu);
  EXPECT_EQ(sig->sigev_notify, SIGEV_SIGNAL);
  EXPECT_EQ(sig->notify_pid, child.pid());
  EXPECT_FALSE(sig->time.has_value()) << "timer_gettime needs injection";
  EXPECT_EQ(thr->id, r.timer_thread);
  EXPECT_EQ(thr->clock, CLOCK_REALTIME);
  EXPECT_EQ(thr->signo, SIGRTMIN + 1);
  EXPECT_EQ(thr->sigev_notify, SIGEV_SIGNAL | SIGEV_THREAD_ID);
  EXPECT_EQ(thr->notify_pid, r.tid);
  EXPECT_FALSE(img.itimers.has_value()) << "no /proc view of itimers: getitimer needs injection";

  auto bit = [](int sig_no) { return 1ull << (sig_no - 1); };
  EXPECT_EQ(img.signals.blocked, bit(SIGUSR2) | bit(SIGURG));
  EXPECT_EQ(img.signals.pending_private, bit(SIGUSR2));
  EXPECT_EQ(img.signals.pending_shared, bit(SIGURG));
  EXPECT_TRUE(img.signals.ignored & bit(SIGTERM));
  EXPECT_TRUE(img.signals.caught & bit(SIGUSR1));

  ASSERT_TRUE(img.robust_list.has_value());
  EXPECT_EQ(img.robust_list->head, r.robust_head);
  EXPECT_EQ(img.robust_list->len, r.robust_len);
  EXPECT_TRUE(img.misc.no_new_privs);
  EXPECT_TRUE(img.misc.thp_disabled);

  // Left for the injection module.
  EXPECT_FALSE(img.regs || img.sigactions || img.sigaltstack || img.rseq || img.clear_child_tid ||
               img.pending_siginfo);

  // Mapped files carry identities; the test binary's is its build id.
  bool saw_exe = false;
  for (const ImageVma& v : img.vmas) {
    if (v.vma.kind == VmaKind::file) { EXPECT_TRUE(v.file.has_value()) << v.vma.path; }
    if (v.vma.path == img.exe) {
      saw_exe = true;
      ASSERT_TRUE(v.file.has_value());
      EXPECT_EQ(v.file->kind, DigestKind::elf_build_id);
    }
  }
  EXPECT_TRUE(saw_exe);
  EXPECT_FALSE(img.page_map.empty());
  // What must travel: no file_clean page of an identified file.
  for (const PageRun& run : runs_to_send(img)) {
    if (run.kind != PageKind::file_clean) continue;
    for (const ImageVma& v : img.vmas)
      if (v.vma.start <= run.start && run.end() <= v.vma.end) { EXPECT_FALSE(v.file.has_value()) << v.vma.path; }
  }
  size_t all_file_clean = 0;
  for (const PageRun& run : img.page_map) all_file_clean += run.kind == PageKind::file_clean;
  EXPECT_GT(all_file_clean, 0u) << "libc and the test binary have pages mapped from their files";
}

struct DeletedReport {
  uint64_t base;
};

TEST(RunsToSend, UnmatchedFileSendsItsWholeRange) {
  TempDir dir;
  std::string path = dir.file("deleted-later.bin");
  std::string content(8 * kPageSize + 100, '\0');
  for (size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>('a' + (i / kPageSize) + i % 7);
  write_file(path, content);
  Child child([&] {
    int fd = ::open(path.c_str(), O_RDONLY);
    check(fd >= 0, "open");
    // 12 pages over a file of 8 pages and 100 bytes: pages 9-11 lie past its end.
    auto* p = static_cast<char*>(::mmap(nullptr, 12 * kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0));
    check(p != MAP_FAILED, "mmap");
    ::close(fd);
    ::unlink(path.c_str());
    p[2 * kPageSize] = 'W';
    (void)*static_cast<volatile char*>(p + 5 * kPageSize);
    return pack(DeletedReport{reinterpret_cast<uint64_t>(p)});
  });
  uint64_t base = child.report<DeletedReport>().base;
  ProcessImage img = capture_from_proc(child.pid());
  const ImageVma* iv = nullptr;
  for (const ImageVma& v : img.vmas)
    if (v.vma.start == base) iv = &v;
  ASSERT_NE(iv, nullptr);
  EXPECT_EQ(iv->vma.kind, VmaKind::deleted_file);
  ASSERT_TRUE(iv->file.has_value()) << "identified through map_files";
  EXPECT_EQ(iv->file->size, content.size());

  auto in_region = [&](const std::vector<PageRun>& runs) { return runs_in(runs, base, base + 12 * kPageSize); };
  // The target has a matching copy: only the written page travels.
  EXPECT_EQ(in_region(runs_to_send(img)), (std::vector<PageRun>{{base + 2 * kPageSize, 1, PageKind::anon}}));
  // It has not: every page the file backs travels, touched or not.
  uint64_t mismatched[] = {base};
  auto runs = in_region(runs_to_send(img, mismatched));
  EXPECT_EQ(runs, (std::vector<PageRun>{{base, 2, PageKind::file_clean},
                                        {base + 2 * kPageSize, 1, PageKind::anon},
                                        {base + 3 * kPageSize, 6, PageKind::file_clean}}));
  std::string got(9 * kPageSize, '?');
  read_pages(child.pid(), runs, [&](uint64_t addr, std::span<const std::byte> data) {
    std::memcpy(got.data() + (addr - base), data.data(), data.size());
  });
  std::string want = content;
  want.resize(9 * kPageSize, '\0');
  want[2 * kPageSize] = 'W';
  EXPECT_TRUE(got == want) << "the bytes of the deleted file, with the process's own write";
}

// ---- the image stream ----

ProcessImage sample_image() {
  ProcessImage img;
  img.pid = 4242;
  img.comm = "worker";
  img.exe = "/opt/app/bin/worker (deleted)";
  img.personality = 0x0040000;
  img.umask = 022;
  img.mm = {0x400000, 0x452000, 0x652000, 0x653000, 0x1000000, 0x7ffd0000, 0x7ffd1000, 0x7ffd1100,
            0x7ffd1100, 0x7ffd1f00, 0x1021000, {{AT_PAGESZ, 4096}, {AT_ENTRY, 0x401000}, {AT_RANDOM, 0x7ffd2000}}};
  Vma text{0x400000, 0x452000, kProtRead | kProtExec, false, 0, 0xfe, 0, 1234, "/opt/app/bin/worker",
           VmaKind::file, kVmReadable | kVmExecutable};
  Vma heap{0x1000000, 0x1021000, kProtRead | kProtWrite, false, 0, 0, 0, 0, "[heap]", VmaKind::heap, kVmAccount};
  Vma stack{0x7ffd0000, 0x7ffd4000, kProtRead | kProtWrite, false, 0, 0, 0, 0, "[stack]", VmaKind::stack,
            kVmGrowsDown};
  img.vmas = {{text, FileIdentity{0x52000, 1700000000123456789, DigestKind::elf_build_id, {0xde, 0xad, 0xbe, 0xef}}},
              {heap, std::nullopt},
              {stack, std::nullopt}};
  img.page_map = {{0x400000, 0x10, PageKind::file_clean},
                  {0x410000, 0x2, PageKind::anon},
                  {0x1000000, 0x3, PageKind::anon},
                  {0x7ffd3000, 0x1, PageKind::anon}};
  img.signals = {1ull << 9, 1ull << 11, 1ull << 63, 1ull << 12, 1ull << 1};
  std::array<SigAction, kSignals> acts{};
  for (size_t i = 0; i < acts.size(); ++i) acts[i] = {0x401000 + i, 0x04000000 | i, 0x402000, 1ull << i};
  img.sigactions = acts;
  img.sigaltstack = SigAltStack{0x7f0000000000, 0, 65536};
  img.pending_siginfo = std::vector<PendingSiginfo>{{true, Bytes(128, std::byte{0x11})}, {false, Bytes(128)}};
  img.regs = Registers{Bytes(216, std::byte{0x22}), Bytes(2432, std::byte{0x33})};
  img.robust_list = RobustList{0x7f00000010a0, 24};
  img.rseq = Rseq{0x7f0000002000, 32, 0x53053053, 0};
  img.clear_child_tid = 0x7f00000010d0;
  for (uint32_t i = 0; i < 16; ++i) img.rlimits.push_back({i, i * 100, i == 7 ? ~0ull : i * 200});
  img.itimers = std::array<TimerValue, 3>{TimerValue{0, 5000000000}, TimerValue{}, TimerValue{1000, 2000}};
  img.posix_timers = {{0, CLOCK_MONOTONIC, SIGUSR1, 0x1234, SIGEV_SIGNAL, 4242, TimerValue{1, 2}},
                      {1, CLOCK_REALTIME, SIGRTMIN, 0, SIGEV_SIGNAL | SIGEV_THREAD_ID, 4243, std::nullopt}};
  img.misc = {true, true, MCL_FUTURE | MCL_ONFAULT, true};
  img.seccomp_filters = {{SECCOMP_FILTER_FLAG_LOG, {0x20 | uint64_t{4} << 32, 0x6 | uint64_t{SECCOMP_RET_ALLOW} << 32}},
                         {0, {0x6 | uint64_t{SECCOMP_RET_KILL_PROCESS} << 32}}};
  Bytes page(2 * kPageSize);
  for (size_t i = 0; i < page.size(); ++i) page[i] = static_cast<std::byte>(i * 7);
  img.pages = {{0x410000, page}, {0x1000000, Bytes(kPageSize, std::byte{0x44})}, {0x7ffd3000, Bytes(kPageSize)}};
  return img;
}

Bytes record_bytes(uint16_t tag, const Bytes& body) {
  wire::Writer w;
  w.u16(tag);
  w.u32(static_cast<uint32_t>(body.size()));
  w.bytes(body);
  return w.take();
}

// The offset of the header_end record in an encoded stream.
size_t header_end_offset(const Bytes& s) {
  size_t at = kPreambleBytes;
  for (;;) {
    wire::Reader r(std::span<const std::byte>(s).subspan(at));
    uint16_t tag = r.u16();
    uint32_t len = r.u32();
    if (tag == static_cast<uint16_t>(Tag::header_end)) return at;
    at += kRecordHead + len;
  }
}

Bytes splice(const Bytes& s, size_t at, const Bytes& insert) {
  Bytes out(s.begin(), s.begin() + static_cast<ptrdiff_t>(at));
  out.insert(out.end(), insert.begin(), insert.end());
  out.insert(out.end(), s.begin() + static_cast<ptrdiff_t>(at), s.end());
  return out;
}

void expect_decode_error(const Bytes& s, const std::string& needle) {
  try {
    decode(s);
    ADD_FAILURE() << "decoded without error; wanted one containing '" << needle << "'";
  } catch (const wire::DecodeError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Codec, RoundTripsEveryField) {
  ProcessImage img = sample_image();
  Bytes s = encode(img);
  EXPECT_EQ(decode(s), img);
  ProcessImage minimal;
  EXPECT_EQ(decode(encode(minimal)), minimal);
}

TEST(Codec, StreamsInArbitraryPieces) {
  ProcessImage img = sample_image();
  ImageEncoder enc;
  Bytes s = enc.header(img);
  // As a sender would: the record head, then the page bytes from the read buffer.
  for (const PageData& p : img.pages) {
    auto prefix = enc.pages_prefix(p.addr, p.bytes.size());
    s.insert(s.end(), prefix.begin(), prefix.end());
    s.insert(s.end(), p.bytes.begin(), p.bytes.end());
  }
  EXPECT_EQ(enc.pages_encoded(), 4u);
  Bytes t = enc.trailer();
  s.insert(s.end(), t.begin(), t.end());
  EXPECT_EQ(s, encode(img));

  std::mt19937 rng(7);
  for (int round = 0; round < 20; ++round) {
    ImageDecoder dec;
    std::vector<PageData> got;
    bool header = false, end = false;
    for (size_t at = 0; at < s.size();) {
      size_t n = std::min<size_t>(s.size() - at, round == 0 ? 1 : 1 + rng() % 3000);
      dec.feed(std::span<const std::byte>(s).subspan(at, n));
      at += n;
      while (auto ev = dec.next()) {
        if (ev->type == ImageDecoder::Event::Type::header) {
          EXPECT_FALSE(header);
          header = true;
        } else if (ev->type == ImageDecoder::Event::Type::pages) {
          EXPECT_TRUE(header);
          got.push_back({ev->addr, Bytes(ev->data.begin(), ev->data.end())});
        } else {
          end = true;
        }
      }
    }
    EXPECT_TRUE(header && end && dec.finished());
    ProcessImage whole = dec.take_header();
    whole.pages = got;
    EXPECT_EQ(whole, img);
  }
}

TEST(Codec, StreamsFromLentBuffersThatAreReusedAtOnce) {
  // As the receiver of a migration feeds it: feed_view() on the channel's
  // buffer, which the next frame overwrites as soon as next() wants more.
  Bytes s = encode(sample_image());
  std::mt19937 rng(11);
  for (int round = 0; round < 20; ++round) {
    ImageDecoder dec;
    std::vector<PageData> got;
    bool header = false, end = false;
    Bytes lent;
    for (size_t at = 0; at < s.size();) {
      size_t n = std::min<size_t>(s.size() - at, round == 0 ? 1 : 1 + rng() % 5000);
      lent.assign(s.begin() + static_cast<ptrdiff_t>(at), s.begin() + static_cast<ptrdiff_t>(at + n));
      dec.feed_view(lent);
      at += n;
      while (auto ev = dec.next()) {
        if (ev->type == ImageDecoder::Event::Type::header) {
          header = true;
        } else if (ev->type == ImageDecoder::Event::Type::pages) {
          got.push_back({ev->addr, Bytes(ev->data.begin(), ev->data.end())});
        } else {
          end = true;
        }
      }
      std::fill(lent.begin(), lent.end(), std::byte{0xEE});  // the buffer is reused
    }
    EXPECT_TRUE(header && end && dec.finished()) << "round " << round;
    ProcessImage whole = dec.take_header();
    whole.pages = got;
    EXPECT_EQ(whole, sample_image()) << "round " << round;
  }
}

TEST(Codec, RejectsEveryTruncation) {
  Bytes s = encode(sample_image());
  for (size_t n = 0; n < s.size(); ++n) {
    Bytes prefix(s.begin(), s.begin() + static_cast<ptrdiff_t>(n));
    EXPECT_THROW(decode(prefix), wire::DecodeError) << "prefix of " << n << " bytes";
  }
}

TEST(Codec, RejectsWrongMagicAndUnsupportedVersions) {
  Bytes s = encode(sample_image());
  Bytes bad = s;
  bad[0] = std::byte{'X'};
  expect_decode_error(bad, "not a process image");
  Bytes newer = s;
  newer[4] = static_cast<std::byte>(kImageVersion + 1);
  expect_decode_error(newer, fmt::format("version {} is newer than this node reads", kImageVersion + 1));
  Bytes older = s;
  older[4] = std::byte{0};
  older[5] = std::byte{0};
  expect_decode_error(older, "older than this node reads");
}

TEST(Codec, SkipsUnknownRecordsAndAppendedFields) {
  ProcessImage img = sample_image();
  Bytes s = encode(img);
  // An unknown section in the header and an unknown record among the pages.
  Bytes with_unknown = splice(s, header_end_offset(s), record_bytes(0x7777, Bytes(13, std::byte{9})));
  size_t pages_at = header_end_offset(with_unknown) + kRecordHead;
  with_unknown = splice(with_unknown, pages_at, record_bytes(0x7778, Bytes(3)));
  EXPECT_EQ(decode(with_unknown), img);

  // The process section is the first record: give it two more fields.
  Bytes grown = s;
  wire::Reader r(std::span<const std::byte>(grown).subspan(kPreambleBytes));
  ASSERT_EQ(r.u16(), static_cast<uint16_t>(Tag::process));
  uint32_t len = r.u32();
  grown = splice(grown, kPreambleBytes + kRecordHead + len, Bytes{std::byte{1}, std::byte{2}, std::byte{3}});
  wire::Writer w;
  w.u32(len + 3);
  std::copy(w.buffer().begin(), w.buffer().end(), grown.begin() + kPreambleBytes + 2);
  EXPECT_EQ(decode(grown), img);
}

TEST(Codec, RejectsInconsistentStreams) {
  ProcessImage img = sample_image();
  Bytes s = encode(img);

  {
    // A duplicated section.
    wire::Reader r(std::span<const std::byte>(s).subspan(kPreambleBytes));
    r.u16();
    uint32_t len = r.u32();
    Bytes first(s.begin() + kPreambleBytes, s.begin() + static_cast<ptrdiff_t>(kPreambleBytes + kRecordHead + len));
    expect_decode_error(splice(s, kPreambleBytes, first), "appears twice");
  }
  {
    // Page data outside every region.
    ProcessImage stray = img;
    stray.pages.push_back({0x7ffe0000, Bytes(kPageSize)});
    expect_decode_error(encode(stray), "outside the regions the image may fill");
    // Page data for a page the map calls absent but inside a region: allowed
    // (a file the target cannot match sends all its pages).
    ProcessImage untouched = img;
    untouched.pages.push_back({0x7ffd0000, Bytes(kPageSize)});
    EXPECT_EQ(decode(encode(untouched)), untouched);
  }
  {
    // A page run outside every region.
    ProcessImage outside = img;
    outside.page_map.insert(outside.page_map.begin() + 2, {0x500000, 1, PageKind::anon});
    expect_decode_error(encode(outside), "outside every region");
  }
  {
    // A trailer that vouches for pages that never came: drop the last page record.
    ProcessImage fewer = img;
    ImageEncoder enc;
    Bytes cut = enc.header(fewer);
    for (const PageData& p : fewer.pages) enc.pages(p.addr, p.bytes);
    Bytes t = enc.trailer();
    for (size_t i = 0; i + 1 < fewer.pages.size(); ++i) {
      ImageEncoder scratch;
      Bytes rec = scratch.pages(fewer.pages[i].addr, fewer.pages[i].bytes);
      cut.insert(cut.end(), rec.begin(), rec.end());
    }
    cut.insert(cut.end(), t.begin(), t.end());
    expect_decode_error(cut, "trailer counts 4 pages");
  }
  {
    Bytes extra = s;
    extra.push_back(std::byte{0});
    expect_decode_error(extra, "after the end of the process image");
  }
  {
    // A page record before the header is complete.
    Bytes early = splice(s, kPreambleBytes, ImageEncoder().pages(0x410000, Bytes(kPageSize)));
    expect_decode_error(early, "before the end of the image header");
  }
  {
    ImageDecoder small(1024);
    small.feed(s);
    EXPECT_THROW(while (small.next()) {}, wire::DecodeError) << "a record above the limit";
  }
}

TEST(Codec, CapturedChildRoundTrips) {
  Child child = anon_child();
  ProcessImage img = capture_from_proc(child.pid());
  auto runs = runs_to_send(img);
  read_pages(child.pid(), runs, [&](uint64_t addr, std::span<const std::byte> data) {
    img.pages.push_back({addr, Bytes(data.begin(), data.end())});
  });
  EXPECT_FALSE(img.pages.empty());
  EXPECT_EQ(decode(encode(img)), img);
}

// ---- measurement ----

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

TEST(Measure, OneGiBClassifyAndRead) {
  const size_t size = 1ull << 30;
  const int rounds = 3;  // best of: the machine is shared
  std::optional<Child> holder;
  holder.emplace([size] {
    auto* p = static_cast<char*>(::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    check(p != MAP_FAILED, "mmap");
    for (size_t i = 0; i < size; i += kPageSize) *reinterpret_cast<uint64_t*>(p + i) = i;
    return pack(AnonReport{reinterpret_cast<uint64_t>(p)});
  });
  const Child& child = *holder;
  uint64_t base = child.report<AnonReport>().base;
  ::kill(child.pid(), SIGSTOP);  // a frozen process, as during a real capture

  double t_maps = 1e9, t_scan = 1e9, t_pagemap = 1e9, t_read = 1e9;
  ReadStats stats;
  std::vector<PageRun> scanned;
  for (int round = 0; round < rounds; ++round) {
    auto t0 = Clock::now();
    auto vmas = read_maps(child.pid());
    t_maps = std::min(t_maps, seconds_since(t0));
    const Vma* v = find_vma(vmas, base);
    ASSERT_NE(v, nullptr);

    t0 = Clock::now();
    scanned = PageScanner(child.pid(), ScanMethod::pagemap_scan).runs(*v);
    t_scan = std::min(t_scan, seconds_since(t0));
    t0 = Clock::now();
    auto by_read = PageScanner(child.pid(), ScanMethod::pagemap_read).runs(*v);
    t_pagemap = std::min(t_pagemap, seconds_since(t0));
    ASSERT_EQ(scanned, by_read);
    ASSERT_EQ(scanned, (std::vector<PageRun>{{base, size / kPageSize, PageKind::anon}}));

    uint64_t bad = 0;
    t0 = Clock::now();
    stats = read_pages(child.pid(), scanned, [&](uint64_t addr, std::span<const std::byte> data) {
      for (size_t off = 0; off < data.size(); off += kPageSize)
        bad += *reinterpret_cast<const uint64_t*>(data.data() + off) != addr - base + off;
    });
    t_read = std::min(t_read, seconds_since(t0));
    EXPECT_EQ(bad, 0u);
    EXPECT_EQ(stats.bytes, size);
  }
  // Gone before the baselines: its memory is then reused (on a VM, memory
  // touched for the first time costs far more than the copy being timed).
  holder.reset();

  // Baselines in the same run: a plain memcpy of 1 GiB into 1 GiB, and the
  // same 1 GiB through one reused buffer of read_pages' batch size (the
  // access pattern read_pages has). Both buffers are faulted in first (4 KiB
  // pages, like the child's); only the copy is timed.
  const int populate = MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE;
  auto* src = static_cast<char*>(::mmap(nullptr, size, PROT_READ | PROT_WRITE, populate, -1, 0));
  auto* dst = static_cast<char*>(::mmap(nullptr, size, PROT_READ | PROT_WRITE, populate, -1, 0));
  ASSERT_NE(src, MAP_FAILED);
  ASSERT_NE(dst, MAP_FAILED);
  std::memset(src, 1, size);
  std::memset(dst, 2, size);
  std::vector<char> batch(kDefaultReadBatch, 3);
  double t_memcpy = 1e9, t_memcpy_batched = 1e9;
  for (int round = 0; round < rounds; ++round) {
    auto t0 = Clock::now();
    std::memcpy(dst, src, size);
    t_memcpy = std::min(t_memcpy, seconds_since(t0));
    t0 = Clock::now();
    for (size_t off = 0; off < size; off += batch.size()) {
      std::memcpy(batch.data(), src + off, batch.size());
      asm volatile("" : : "r"(batch.data()) : "memory");
    }
    t_memcpy_batched = std::min(t_memcpy_batched, seconds_since(t0));
  }
  EXPECT_EQ(dst[size - 1], 1);
  ::munmap(src, size);
  ::munmap(dst, size);

  auto rate = [&](double t) { return static_cast<double>(size) / t / 1e6; };
  std::printf("[ measure  ] 1 GiB fully touched, stopped child (%zu pages); best of %d\n", size / kPageSize, rounds);
  std::printf("[ measure  ] read_maps (smaps):                 %8.2f ms\n", t_maps * 1e3);
  std::printf("[ measure  ] classify, PAGEMAP_SCAN:            %8.2f ms\n", t_scan * 1e3);
  std::printf("[ measure  ] classify, pagemap read:            %8.2f ms\n", t_pagemap * 1e3);
  std::printf("[ measure  ] read_pages (%zu MiB batches, %llu process_vm_readv calls): %8.2f ms = %6.0f MB/s\n",
              kDefaultReadBatch >> 20, static_cast<unsigned long long>(stats.vm_readv_calls), t_read * 1e3,
              rate(t_read));
  std::printf("[ measure  ] memcpy 1 GiB -> 1 GiB:             %8.2f ms = %6.0f MB/s\n", t_memcpy * 1e3,
              rate(t_memcpy));
  std::printf("[ measure  ] memcpy 1 GiB -> %zu MiB buffer:      %8.2f ms = %6.0f MB/s\n", kDefaultReadBatch >> 20,
              t_memcpy_batched * 1e3, rate(t_memcpy_batched));
  std::printf("[ measure  ] ratio read_pages / memcpy: %.2f (1 GiB dst), %.2f (batch-sized dst); "
              "classify+read takes %.2fx a 1 GiB memcpy\n",
              rate(t_read) / rate(t_memcpy), rate(t_read) / rate(t_memcpy_batched), (t_scan + t_read) / t_memcpy);
}

}  // namespace
}  // namespace roam::image
