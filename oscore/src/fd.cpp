#include "roam/fd.hpp"

#include <unistd.h>

namespace roam {

void FileDesc::reset(int fd) noexcept {
  if (fd_ >= 0 && fd_ != fd) ::close(fd_);
  fd_ = fd;
}

}  // namespace roam
