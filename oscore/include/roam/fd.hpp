// A move-only owner of one file descriptor. No raw int fd crosses a module
// boundary without one of these around it.
#pragma once

#include <utility>

namespace roam {

class FileDesc {
 public:
  FileDesc() = default;
  explicit FileDesc(int fd) noexcept : fd_(fd) {}
  FileDesc(const FileDesc&) = delete;
  FileDesc& operator=(const FileDesc&) = delete;
  FileDesc(FileDesc&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  FileDesc& operator=(FileDesc&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  ~FileDesc() { reset(); }

  int get() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ >= 0; }
  explicit operator bool() const noexcept { return valid(); }
  int release() noexcept { return std::exchange(fd_, -1); }
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

}  // namespace roam
