#include "roam/loop.hpp"

#include <fmt/format.h>

#include <cstring>

#include "roam/error.hpp"

namespace roam {

struct Loop::Op {
  Completion done;
  __kernel_timespec ts{};
  sockaddr_storage addr{};
  bool ignore = false;  // the linked timeout of a connect: no handler
};

Loop::Loop(unsigned entries) {
  int rc = io_uring_queue_init(entries, &ring_, 0);
  if (rc < 0) throw SysError("io_uring_queue_init", -rc);
}

Loop::~Loop() { io_uring_queue_exit(&ring_); }

io_uring_sqe* Loop::next_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (!sqe) {
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  ROAM_ASSERT(sqe != nullptr, "io_uring submission queue full after submit");
  return sqe;
}

Loop::Op* Loop::new_op(Completion done) { return new Op{std::move(done)}; }

void Loop::accept(int fd, Completion done) {
  auto* sqe = next_sqe();
  io_uring_prep_accept(sqe, fd, nullptr, nullptr, SOCK_CLOEXEC);
  io_uring_sqe_set_data(sqe, new_op(std::move(done)));
}

void Loop::recv(int fd, void* buf, size_t len, Completion done) {
  auto* sqe = next_sqe();
  io_uring_prep_recv(sqe, fd, buf, len, 0);
  io_uring_sqe_set_data(sqe, new_op(std::move(done)));
}

void Loop::send(int fd, const void* buf, size_t len, Completion done) {
  auto* sqe = next_sqe();
  io_uring_prep_send(sqe, fd, buf, len, MSG_NOSIGNAL);
  io_uring_sqe_set_data(sqe, new_op(std::move(done)));
}

void Loop::connect(int fd, const sockaddr* addr, socklen_t len, uint32_t timeout_ms, Completion done) {
  // Two SQEs linked: the connect and its timeout. Make room for both first.
  if (io_uring_sq_space_left(&ring_) < 2) io_uring_submit(&ring_);
  auto* op = new_op(std::move(done));
  std::memcpy(&op->addr, addr, len);
  auto* sqe = next_sqe();
  io_uring_prep_connect(sqe, fd, reinterpret_cast<sockaddr*>(&op->addr), len);
  sqe->flags |= IOSQE_IO_LINK;
  io_uring_sqe_set_data(sqe, op);
  auto* guard = new_op(nullptr);
  guard->ignore = true;
  guard->ts.tv_sec = timeout_ms / 1000;
  guard->ts.tv_nsec = static_cast<long long>(timeout_ms % 1000) * 1000000;
  auto* tsqe = next_sqe();
  io_uring_prep_link_timeout(tsqe, &guard->ts, 0);
  io_uring_sqe_set_data(tsqe, guard);
}

void Loop::poll(int fd, unsigned events, Completion done) {
  auto* sqe = next_sqe();
  io_uring_prep_poll_add(sqe, fd, events);
  io_uring_sqe_set_data(sqe, new_op(std::move(done)));
}

void Loop::after(uint32_t ms, std::function<void()> fire) {
  auto* op = new_op([fire = std::move(fire)](int) { fire(); });
  op->ts.tv_sec = ms / 1000;
  op->ts.tv_nsec = static_cast<long long>(ms % 1000) * 1000000;
  auto* sqe = next_sqe();
  io_uring_prep_timeout(sqe, &op->ts, 0, 0);
  io_uring_sqe_set_data(sqe, op);
}

void Loop::run() {
  while (!stopping_) {
    io_uring_cqe* cqe = nullptr;
    int rc = io_uring_submit_and_wait(&ring_, 1);
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) throw SysError("io_uring_submit_and_wait", -rc);
    while (!stopping_ && io_uring_peek_cqe(&ring_, &cqe) == 0) {
      auto* op = static_cast<Op*>(io_uring_cqe_get_data(cqe));
      int res = cqe->res;
      // Handlers may submit new work; hand the CQE back before calling them.
      io_uring_cqe_seen(&ring_, cqe);
      ++completions_;
      if (op && !op->ignore && op->done) op->done(res);
      delete op;
    }
  }
}

}  // namespace roam
