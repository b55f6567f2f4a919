// The memory map of a process: /proc/PID/maps lines (plus the VmFlags line
// that only smaps carries) parsed into Vma records with a kind that says how
// a restore must recreate the region.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace roam::image {

inline constexpr uint64_t kPageSize = 4096;

enum Prot : uint8_t { kProtRead = 1, kProtWrite = 2, kProtExec = 4 };

// How the region came to be, hence how a restore recreates it. The numeric
// values are part of the image schema: append only, never reuse.
enum class VmaKind : uint8_t {
  anon = 0,           // MAP_ANONYMOUS (private, or shared: see Vma::shared), incl. [anon:name]
  heap = 1,           // [heap]: brk area
  stack = 2,          // [stack]: the main thread's grows-down stack
  file = 3,           // a mapped file that still has a name
  deleted_file = 4,   // a mapped file whose name is gone (unlinked, memfd): content must travel
  vdso = 5,           // [vdso], [vvar], [vvar_vclock], [vsyscall]: the target
  vvar = 6,           //   kernel supplies its own; restore moves them to the saved
  vvar_vclock = 7,    //   addresses and never copies their pages
  vsyscall = 8,
  sysv_shm = 9,       // /SYSVkkkkkkkk: System V shared memory
  special_file = 10,  // anon_inode:[io_uring], [perf_event], aio ring, socket rings...
  other_special = 11, // any other [name] the kernel made ([uprobes], ...)
};
std::string_view to_string(VmaKind k);

// The two-letter VmFlags of smaps (proc(5)) that matter to migration. Bit
// positions are part of the image schema: append only.
enum VmFlag : uint64_t {
  kVmReadable = 1ull << 0,      // rd
  kVmWritable = 1ull << 1,      // wr
  kVmExecutable = 1ull << 2,    // ex
  kVmShared = 1ull << 3,        // sh
  kVmMayRead = 1ull << 4,       // mr
  kVmMayWrite = 1ull << 5,      // mw
  kVmMayExec = 1ull << 6,       // me
  kVmMayShare = 1ull << 7,      // ms
  kVmGrowsDown = 1ull << 8,     // gd
  kVmPfnMap = 1ull << 9,        // pf
  kVmLocked = 1ull << 10,       // lo
  kVmIo = 1ull << 11,           // io
  kVmSeqRead = 1ull << 12,      // sr
  kVmRandRead = 1ull << 13,     // rr
  kVmDontCopy = 1ull << 14,     // dc
  kVmDontExpand = 1ull << 15,   // de
  kVmLockOnFault = 1ull << 16,  // lf
  kVmAccount = 1ull << 17,      // ac
  kVmNoReserve = 1ull << 18,    // nr
  kVmHugetlb = 1ull << 19,      // ht
  kVmSync = 1ull << 20,         // sf
  kVmWipeOnFork = 1ull << 21,   // wf
  kVmDontDump = 1ull << 22,     // dd
  kVmSoftDirty = 1ull << 23,    // sd (always clear here: this kernel has no soft-dirty)
  kVmMixedMap = 1ull << 24,     // mm
  kVmHugePage = 1ull << 25,     // hg
  kVmNoHugePage = 1ull << 26,   // nh
  kVmMergeable = 1ull << 27,    // mg
  kVmUffdMissing = 1ull << 28,  // um
  kVmUffdWp = 1ull << 29,       // uw
  kVmUffdMinor = 1ull << 30,    // ui
  kVmShadowStack = 1ull << 31,  // ss (x86 CET user shadow stack)
  kVmSealed = 1ull << 32,       // sl (mseal)
};
// Bits for the codes in one VmFlags line; unknown codes are ignored.
uint64_t parse_vm_flags(std::string_view codes);

struct Vma {
  uint64_t start = 0;
  uint64_t end = 0;
  uint8_t prot = 0;      // Prot bits
  bool shared = false;   // 's' in maps: MAP_SHARED
  uint64_t offset = 0;   // file offset of start, in bytes
  uint32_t dev_major = 0;
  uint32_t dev_minor = 0;
  uint64_t inode = 0;
  std::string path;      // as maps shows it, minus " (deleted)", "\012" turned back into '\n'
  VmaKind kind = VmaKind::anon;
  uint64_t flags = 0;    // VmFlag bits; 0 when parsed from maps rather than smaps

  uint64_t size() const { return end - start; }
  uint64_t pages() const { return size() / kPageSize; }
  bool has(uint64_t flag) const { return (flags & flag) != 0; }
  // A region whose pages come from a file when never written (file,
  // deleted_file, sysv_shm, special files): pagemap's file bit means "same as
  // the backing object" only here.
  bool file_backed() const;
  // Regions the target kernel provides itself: no pages are ever captured.
  bool kernel_provided() const;
  bool operator==(const Vma&) const = default;
};

// Parses maps- or smaps-format text. Lines that are not a region header or
// a VmFlags line (smaps' "Size:", "Rss:" ...) are skipped; a header that does
// not parse is a FormatError naming the line.
std::vector<Vma> parse_maps(std::string_view text);

// The regions of a live process, with VmFlags, from one read of
// /proc/PID/smaps. A path ending in " (deleted)" is checked against the
// mapped file itself (/proc/PID/map_files) so a file really named
// "x (deleted)" is not mistaken for an unlinked one. SysError when the
// process is gone or not ours to read.
std::vector<Vma> read_maps(pid_t pid);

// "/proc/PID/map_files/START-END": opens exactly the mapped file (even when
// renamed or unlinked). Needs CAP_SYS_ADMIN in the process's user namespace.
std::string map_files_path(pid_t pid, const Vma& vma);

}  // namespace roam::image
