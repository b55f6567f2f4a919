// Workload: ends in a chosen way once SIGUSR1 arrives, so a test can check
// that the exit status seen at home is the right one.
//   exit_with MODE
// MODE: code:N   exit(N)
//       segv     store through a null pointer (SIGSEGV; shell status 139)
//       abort    abort() (SIGABRT; shell status 134)
//       sig:N    raise(N) with the default disposition
// Prints "READY <pid>" and waits (pause loop) for SIGUSR1 first. A bad MODE,
// or surviving the chosen end, prints "FAIL: why" and exits 1 (a code:1 test
// should therefore also check for the FAIL line).
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "workload.hpp"

namespace {

bool parse_int(const char* text, int& out) {
  char* end = nullptr;
  long v = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || v < 0 || v > 255) return false;
  out = static_cast<int>(v);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace roam::workload;
  if (argc != 2) fail("usage: exit_with code:N|segv|abort|sig:N");
  const char* mode = argv[1];
  enum { kCode, kSegv, kAbort, kSig } kind;
  int value = 0;
  if (std::strncmp(mode, "code:", 5) == 0 && parse_int(mode + 5, value))
    kind = kCode;
  else if (std::strcmp(mode, "segv") == 0)
    kind = kSegv;
  else if (std::strcmp(mode, "abort") == 0)
    kind = kAbort;
  else if (std::strncmp(mode, "sig:", 4) == 0 && parse_int(mode + 4, value) && value >= 1 && value < NSIG)
    kind = kSig;
  else
    fail("bad MODE (code:N, segv, abort or sig:N)");

  ready();
  while (!go()) pause();

  switch (kind) {
    case kCode:
      std::exit(value);
    case kSegv: {
      int* target = nullptr;
      asm volatile("" : "+r"(target));  // hide the null from the optimizer
      *static_cast<volatile int*>(target) = 42;  // a volatile store is kept
      fail("survived a store through a null pointer");
    }
    case kAbort:
      std::abort();
    case kSig: {
      signal(value, SIG_DFL);
      sigset_t set;
      sigemptyset(&set);
      sigaddset(&set, value);
      sigprocmask(SIG_UNBLOCK, &set, nullptr);
      raise(value);
      char why[64];
      std::snprintf(why, sizeof why, "survived signal %d", value);
      fail(why);
    }
  }
  fail("unreachable");
}
