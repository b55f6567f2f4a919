#include "roam/control.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fmt/format.h>

#include "roam/error.hpp"

namespace roam {

std::filesystem::path default_control_socket() {
  if (const char* s = std::getenv("ROAM_SOCKET"); s && *s) return s;
  return std::filesystem::path(kDefaultStateDir) / "mosd.sock";
}

void write_frame(int fd, std::span<const std::byte> body) {
  auto f = wire::frame(body);
  size_t off = 0;
  while (off < f.size()) {
    ssize_t n = ::send(fd, f.data() + off, f.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    check_sys(n, "send");
    off += static_cast<size_t>(n);
  }
}

namespace {
bool read_exact(int fd, void* buf, size_t len, bool eof_ok_at_start) {
  size_t off = 0;
  while (off < len) {
    ssize_t n = ::recv(fd, static_cast<char*>(buf) + off, len - off, 0);
    if (n < 0 && errno == EINTR) continue;
    check_sys(n, "recv");
    if (n == 0) {
      if (off == 0 && eof_ok_at_start) return false;
      throw wire::DecodeError(fmt::format("connection closed inside a frame ({} of {} bytes)", off, len));
    }
    off += static_cast<size_t>(n);
  }
  return true;
}
}  // namespace

bool read_frame(int fd, std::vector<std::byte>& body, size_t max_frame) {
  std::byte hdr[wire::kFrameHeader];
  if (!read_exact(fd, hdr, sizeof hdr, true)) return false;
  wire::Reader r(hdr);
  uint32_t len = r.u32();
  if (len == 0) throw wire::DecodeError("empty frame");
  if (len > max_frame) throw wire::DecodeError(fmt::format("oversized frame: {} bytes, limit {}", len, max_frame));
  body.resize(len);
  read_exact(fd, body.data(), len, false);
  return true;
}

ControlClient::ControlClient(const std::filesystem::path& socket) : path_(socket) {
  fd_ = FileDesc(check_sys(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket"));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path_.native().size() >= sizeof addr.sun_path) throw UserError(fmt::format("control socket path too long: {}", path_.string()));
  std::strcpy(addr.sun_path, path_.c_str());
  if (::connect(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    throw UserError(fmt::format("no mosd on this node: cannot connect to {}: {} (is mosd running? see 'systemctl status mosd')",
                                path_.string(), std::strerror(errno)));
  write_frame(fd_.get(), msg::encode(msg::CtlHello{}));
}

void ControlClient::read_or_fail(std::vector<std::byte>& body) {
  if (!read_frame(fd_.get(), body, kControlMaxFrame))
    throw UserError(fmt::format("mosd closed the control connection {} without answering", path_.string()));
}

void ControlClient::fail_with(const std::string& message) { throw UserError(fmt::format("mosd: {}", message)); }

}  // namespace roam
