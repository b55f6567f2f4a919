// The io_uring event loop every daemon runs on (liburing). Single-threaded:
// every completion handler runs on the loop's thread, one at a time. Buffers
// passed to recv/send must stay alive until the handler runs; owners keep
// themselves alive by capturing a shared_ptr in the handler.
#pragma once

#include <liburing.h>
#include <sys/socket.h>

#include <cstdint>
#include <functional>

namespace roam {

class Loop {
 public:
  using Completion = std::function<void(int res)>;  // res: the call's result or -errno

  explicit Loop(unsigned entries = 256);
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  void accept(int fd, Completion done);
  void recv(int fd, void* buf, size_t len, Completion done);
  void send(int fd, const void* buf, size_t len, Completion done);  // never raises SIGPIPE
  // Connects, giving up with -ECANCELED after timeout_ms.
  void connect(int fd, const sockaddr* addr, socklen_t len, uint32_t timeout_ms, Completion done);
  void poll(int fd, unsigned events, Completion done);
  void after(uint32_t ms, std::function<void()> fire);

  void run();  // until stop()
  void stop() { stopping_ = true; }
  uint64_t completions() const { return completions_; }

 private:
  struct Op;
  io_uring_sqe* next_sqe();
  Op* new_op(Completion done);

  io_uring ring_{};
  bool stopping_ = false;
  uint64_t completions_ = 0;
};

}  // namespace roam
