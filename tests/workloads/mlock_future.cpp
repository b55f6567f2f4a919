// Workload: mlockall(MCL_FUTURE) (argument "onfault": with MCL_ONFAULT too),
// then one 64 KiB mapping kept (locked by it). Until SIGUSR1 it keeps
// mapping and unmapping another; then it maps one more and checks, without
// touching it, that its pages came in as the locking says: every page
// resident (MCL_FUTURE faults locked mappings in at mmap) or, with
// MCL_ONFAULT, none. MCL_CURRENT is left out so that the locked memory
// stays far below a default RLIMIT_MEMLOCK without CAP_IPC_LOCK.
#include <sys/mman.h>

#include <cstring>

#include "workload.hpp"

namespace {

constexpr size_t kLen = 64 << 10;

// A fresh, untouched 64 KiB mapping and how many of its pages are resident.
int resident_of_new_mapping(void** keep = nullptr) {
  void* p = mmap(nullptr, kLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) roam::workload::fail("mmap");
  unsigned char vec[kLen / 4096];
  if (mincore(p, kLen, vec) != 0) roam::workload::fail("mincore");
  int n = 0;
  for (unsigned char v : vec) n += v & 1;
  if (keep) *keep = p;
  else munmap(p, kLen);
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace roam::workload;
  bool onfault = argc > 1 && std::strcmp(argv[1], "onfault") == 0;
  if (mlockall(MCL_FUTURE | (onfault ? MCL_ONFAULT : 0)) != 0) fail("mlockall");
  int want = onfault ? 0 : static_cast<int>(kLen / 4096);
  void* kept = nullptr;
  if (resident_of_new_mapping(&kept) != want) fail("a new mapping is not as mlockall says, before any move");
  static_cast<volatile char*>(kept)[0] = 1;
  ready();
  while (!go()) {
    resident_of_new_mapping();
    usleep(10000);
  }
  if (resident_of_new_mapping() != want) fail("a new mapping is not as mlockall says");
  if (static_cast<volatile char*>(kept)[0] != 1) fail("the kept mapping changed");
  pass();
}
