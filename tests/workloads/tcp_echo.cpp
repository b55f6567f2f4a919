// Helper for tcp_client: a single-threaded poll()-based TCP echo server.
//   tcp_echo PORT
// Binds INADDR_ANY:PORT (PORT 0 picks a free port), prints
// "LISTENING <port>" (the bound port), and echoes every byte of every
// connection back to it, serving several clients at once, until SIGTERM or
// SIGINT (then exits 0).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

volatile sig_atomic_t g_stop = 0;
void on_stop(int) { g_stop = 1; }

struct Client {
  int fd;
  std::string pending;  // received, not yet echoed
};

[[noreturn]] void die(const char* what) {
  std::printf("FAIL: %s: %s\n", what, std::strerror(errno));
  std::fflush(stdout);
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::printf("FAIL: usage: tcp_echo PORT\n");
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa {};
  sa.sa_handler = on_stop;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  long port = std::strtol(argv[1], nullptr, 10);
  if (port < 0 || port > 65535) {
    std::printf("FAIL: bad port\n");
    return 1;
  }
  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (lfd < 0) die("socket");
  int one = 1;
  ::setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) die("bind");
  if (::listen(lfd, 64) != 0) die("listen");
  socklen_t alen = sizeof addr;
  ::getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &alen);
  std::printf("LISTENING %d\n", static_cast<int>(ntohs(addr.sin_port)));
  std::fflush(stdout);

  std::vector<Client> clients;
  std::vector<pollfd> fds;
  char buf[65536];
  while (!g_stop) {
    fds.clear();
    fds.push_back({lfd, POLLIN, 0});
    for (const Client& c : clients) {
      short ev = POLLIN;
      if (!c.pending.empty()) ev = POLLOUT;  // drain first: bounded buffering
      fds.push_back({c.fd, ev, 0});
    }
    int r = ::poll(fds.data(), fds.size(), 1000);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) die("poll");
    if (fds[0].revents & POLLIN) {
      for (;;) {
        int cfd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (cfd < 0) break;
        clients.push_back({cfd, {}});
      }
    }
    // fds[i + 1] belongs to clients[i] for the clients that existed at poll time.
    size_t polled = fds.size() - 1;
    std::vector<bool> dead(clients.size(), false);
    for (size_t i = 0; i < polled; ++i) {
      Client& c = clients[i];
      short rev = fds[i + 1].revents;
      if (rev == 0) continue;
      if (c.pending.empty() && (rev & (POLLIN | POLLHUP | POLLERR))) {
        ssize_t n = ::read(c.fd, buf, sizeof buf);
        if (n > 0) {
          c.pending.append(buf, static_cast<size_t>(n));
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
          dead[i] = true;
          continue;
        }
      }
      if (!c.pending.empty()) {
        ssize_t n = ::write(c.fd, c.pending.data(), c.pending.size());
        if (n > 0) {
          c.pending.erase(0, static_cast<size_t>(n));
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
          dead[i] = true;
        }
      }
    }
    std::vector<Client> alive;
    for (size_t i = 0; i < clients.size(); ++i) {
      if (dead[i])
        ::close(clients[i].fd);
      else
        alive.push_back(std::move(clients[i]));
    }
    clients.swap(alive);
  }
  for (const Client& c : clients) ::close(c.fd);
  ::close(lfd);
  return 0;
}
