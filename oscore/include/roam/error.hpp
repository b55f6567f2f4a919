// Errors. User-caused failures carry one clear line (what failed and why);
// internal invariants use ROAM_ASSERT, which stays on in release builds.
#pragma once

#include <cerrno>
#include <stdexcept>
#include <string>

namespace roam {

// A failed system call: the message names the call and its object, then strerror.
class SysError : public std::runtime_error {
 public:
  SysError(const std::string& what, int err);
  int err() const noexcept { return err_; }

 private:
  int err_;
};

// A failure a user can cause and fix (bad flag, bad config line, unreachable
// daemon). Printed as-is, on one line.
class UserError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Returns rc, or throws SysError(what, errno) when rc < 0.
template <typename T>
T check_sys(T rc, const std::string& what) {
  if (rc < 0) throw SysError(what, errno);
  return rc;
}

[[noreturn]] void assert_fail(const char* expr, const char* file, int line, const std::string& ctx);

}  // namespace roam

#define ROAM_ASSERT(expr, ctx)                                         \
  do {                                                                 \
    if (!(expr)) ::roam::assert_fail(#expr, __FILE__, __LINE__, (ctx)); \
  } while (0)
