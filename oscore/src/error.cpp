#include "roam/error.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace roam {

SysError::SysError(const std::string& what, int err)
    : std::runtime_error(what + ": " + std::strerror(err)), err_(err) {}

void assert_fail(const char* expr, const char* file, int line, const std::string& ctx) {
  std::fprintf(stderr, "roam: assertion failed: %s at %s:%d (%s)\n", expr, file, line, ctx.c_str());
  std::abort();
}

}  // namespace roam
