// The local control socket between the tools (mosrun, mosps, mosmon, mosctl)
// and this node's mosd: a unix stream socket carrying wire frames. The tools
// side is blocking and simple; mosd serves it from its event loop.
#pragma once

#include <filesystem>
#include <string>

#include "roam/fd.hpp"
#include "roam/messages.hpp"

namespace roam {

inline constexpr const char* kDefaultStateDir = "/run/roam";
inline constexpr size_t kControlMaxFrame = 16u << 20;

// $ROAM_SOCKET, else /run/roam/mosd.sock.
std::filesystem::path default_control_socket();

// Blocking helpers: write one whole frame; read one whole frame (false on a
// clean EOF before any byte). Throw SysError / wire::DecodeError.
void write_frame(int fd, std::span<const std::byte> body);
bool read_frame(int fd, std::vector<std::byte>& body, size_t max_frame);

class ControlClient {
 public:
  // Throws UserError("no mosd on this node: ...") when nothing listens.
  explicit ControlClient(const std::filesystem::path& socket = default_control_socket());

  template <typename Reply, typename Request>
  Reply call(const Request& req) {
    write_frame(fd_.get(), msg::encode(req));
    return read_reply<Reply>();
  }

 private:
  template <typename Reply>
  Reply read_reply() {
    std::vector<std::byte> body;
    read_or_fail(body);
    if (msg::peek_type(body) == msg::Type::error_reply) fail_with(msg::decode<msg::ErrorReply>(body).message);
    return msg::decode<Reply>(body);
  }
  void read_or_fail(std::vector<std::byte>& body);
  [[noreturn]] void fail_with(const std::string& message);

  FileDesc fd_;
  std::filesystem::path path_;
};

}  // namespace roam
