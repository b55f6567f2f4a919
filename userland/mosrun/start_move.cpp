#include "start_move.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "roam/error.hpp"
#include "roam/migrate_client.hpp"

namespace roam::mosrun {
namespace {

constexpr char kCancelled = '!';

[[noreturn]] void helper(pid_t job, int from_mosrun) {
  int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0) {
    ::dup2(null, STDIN_FILENO);
    ::dup2(null, STDOUT_FILENO);
  }
  // Everything mosrun writes, until the exec (or its exit) closes the pipe.
  std::string target;
  char buf[256];
  for (;;) {
    ssize_t n = ::read(from_mosrun, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    target.append(buf, static_cast<size_t>(n));
  }
  if (target.empty() || target.find(kCancelled) != std::string::npos) ::_exit(0);
  try {
    MoveAnswer a = request_move(job, target, false);
    if (!a.ok) std::fprintf(stderr, "mosrun: the job runs at home: %s\n", a.message.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mosrun: the job runs at home: %s\n", e.what());
  }
  ::_exit(0);
}

}  // namespace

StartMove::StartMove(pid_t job) {
  int p[2];
  check_sys(::pipe2(p, O_CLOEXEC), "pipe2");
  FileDesc read_end(p[0]);
  to_helper_ = FileDesc(p[1]);
  pid_t middle = ::fork();
  if (middle < 0) throw SysError("fork (mosrun's start helper)", errno);
  if (middle == 0) {
    to_helper_.reset();
    pid_t h = ::fork();
    if (h == 0) helper(job, read_end.get());
    ::_exit(h < 0 ? 1 : 0);
  }
  int status = 0;
  while (::waitpid(middle, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw UserError("cannot start mosrun's start helper");
}

void StartMove::go_to(const std::string& target) {
  if (!target.empty() && ::write(to_helper_.get(), target.data(), target.size()) < 0) {
    // The helper is gone: the job simply runs at home.
  }
}

void StartMove::cancel() {
  char c = kCancelled;
  if (::write(to_helper_.get(), &c, 1) < 0) {
  }
  to_helper_.reset();
}

}  // namespace roam::mosrun
