// The node init: PID 1 of a node. It is made in two steps by a short-lived
// helper forked from the caller:
//   helper: new session, joins the node's cgroups, unshares a time namespace
//           and writes its clock offsets (possible only before any process
//           lives in it), unshares mount/UTS/IPC/net/PID, forks the init, exits.
//   init:   PID 1 of the new PID namespace, inside the new time namespace;
//           sets up its mounts and hostname, then serves a unix socket at
//           DIR/nodeI/init.sock ("start", "stop", "status" for mosd) and reaps
//           every orphan of the node. It forwards no signal: from inside the
//           node nothing can signal it (PID 1 without handlers), from the host
//           only SIGKILL works, and then the kernel kills the whole node.
// The init is a fork of the caller, not an exec, so that the library alone is
// enough to make a cluster (benches link it without mosctl).
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>

#include <fmt/format.h>

#include "local_cluster_detail.hpp"
#include "roam/cgroup.hpp"
#include "roam/error.hpp"
#include "roam/local_cluster.hpp"
#include "roam/log.hpp"

extern char** environ;

namespace roam::cluster::detail {
namespace {

constexpr const char* kMosdSocket = "mosd.sock";

// Unix socket paths are limited to 108 bytes; DIR may be longer (test work
// directories are), so name the socket through a descriptor of its folder.
sockaddr_un socket_address(int dir_fd, const std::string& name) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string path = fmt::format("/proc/self/fd/{}/{}", dir_fd, name);
  ROAM_ASSERT(path.size() < sizeof addr.sun_path, path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

void check(int rc, const std::string& what) {
  if (rc < 0) throw SysError(what, errno);
}

// The node must still see DIR (config, key, logs) at its host path, even
// when that path lies under the node's private /tmp: bind the folder the
// init opened before the tmpfs covered it back onto the same path.
void keep_visible(const fs::path& dir, int dir_fd) {
  struct stat want {}, have {};
  check(::fstat(dir_fd, &want), "fstat cluster directory");
  if (::stat(dir.c_str(), &have) == 0 && have.st_dev == want.st_dev && have.st_ino == want.st_ino) return;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw SysError(fmt::format("mkdir {} in the node", dir.string()), ec.value());
  check(::mount(fmt::format("/proc/self/fd/{}", dir_fd).c_str(), dir.c_str(), nullptr, MS_BIND, nullptr),
        fmt::format("bind {} into the node", dir.string()));
}

void write_clock_offsets(int node) {
  int64_t seconds = node * kClockOffsetStepSeconds;
  std::string offsets = fmt::format("monotonic {} 0\nboottime {} 0\n", seconds, seconds);
  FileDesc fd(::open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC));
  if (!fd) throw SysError("open /proc/self/timens_offsets", errno);
  check(static_cast<int>(::write(fd.get(), offsets.data(), offsets.size())), "write /proc/self/timens_offsets");
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("killed by signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
  return fmt::format("ended with wait status {:#x}", status);
}

// What runs as PID 1 of a node.
class NodeInit {
 public:
  NodeInit(const NodeSpawn& spawn, int dir_fd, int mosd_fd) : spawn_(spawn), dir_fd_(dir_fd), mosd_fd_(mosd_fd) {}

  // Mounts, hostname, control socket. Throws on failure.
  void set_up() {
    set_process_name(fmt::format("roam-{}-init", node_name(spawn_.node)));
    check(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), "make / rprivate");
    // Opened here, in the node's mount namespace: a bind mount's source must
    // be a mount of the caller's own namespace.
    FileDesc dir_here(::open(spawn_.dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!dir_here) throw SysError(fmt::format("open {}", spawn_.dir.string()), errno);
    std::vector<FileDesc> shared_here;
    std::vector<fs::path> shared_paths;
    for (const auto& p : spawn_.shared) {
      FileDesc fd(::open(p.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
      if (!fd) continue;  // nothing there to keep visible
      shared_here.push_back(std::move(fd));
      shared_paths.push_back(p);
    }
    check(::mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"), "mount tmpfs on /tmp");
    check(::mount("tmpfs", kNodeStateDir, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"),
          fmt::format("mount tmpfs on {}", kNodeStateDir));
    // POSIX shared memory and semaphores belong with the node's IPC namespace.
    check(::mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"), "mount tmpfs on /dev/shm");
    // /proc of the new PID namespace; /sys stays the host's (mosd uses its cgroups).
    check(::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr), "mount /proc");
    keep_visible(spawn_.dir, dir_here.get());
    for (size_t i = 0; i < shared_here.size(); ++i) keep_visible(shared_paths[i], shared_here[i].get());
    check(::chdir("/"), "chdir /");
    std::string host = node_name(spawn_.node);
    check(::sethostname(host.c_str(), host.size()), "sethostname");

    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    check(::sigprocmask(SIG_BLOCK, &chld, nullptr), "sigprocmask");
    signal_fd_ = FileDesc(::signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!signal_fd_) throw SysError("signalfd", errno);

    std::string sock = fmt::format("{}/init.sock", node_name(spawn_.node));
    ::unlinkat(dir_fd_, sock.c_str(), 0);
    listen_fd_ = FileDesc(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!listen_fd_) throw SysError("socket", errno);
    auto addr = socket_address(dir_fd_, sock);
    check(::bind(listen_fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), "bind " + sock);
    ::fchmodat(dir_fd_, sock.c_str(), 0600, 0);
    check(::listen(listen_fd_.get(), 16), "listen");

    // stdout and stderr go to DIR/nodeI/init.log (the log lines below).
    std::string log = fmt::format("{}/init.log", node_name(spawn_.node));
    int log_fd = ::openat(dir_fd_, log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd >= 0) {
      ::dup2(log_fd, 1);
      ::dup2(log_fd, 2);
      ::close(log_fd);
    }
    set_log_tag(fmt::format("{}-init", node_name(spawn_.node)));
  }

  [[noreturn]] void run() {
    log_info("up: hostname {}, clocks +{} s", node_name(spawn_.node), spawn_.node * kClockOffsetStepSeconds);
    for (;;) {
      pollfd fds[2] = {{signal_fd_.get(), POLLIN, 0}, {listen_fd_.get(), POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) continue;
      if (fds[0].revents) reap();
      if (fds[1].revents) serve_one();
    }
  }

 private:
  void reap() {
    signalfd_siginfo info;
    while (::read(signal_fd_.get(), &info, sizeof info) > 0) {
    }
    int status = 0;
    pid_t pid;
    while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
      if (pid == mosd_pid_) {
        last_exit_ = describe_wait_status(status);
        log_warn("mosd (pid {}) {}", pid, last_exit_);
        mosd_pid_ = 0;
      }
    }
  }

  void serve_one() {
    FileDesc client(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!client) return;
    timeval tv{2, 0};
    ::setsockopt(client.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(client.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    char buf[128];
    ssize_t n = ::read(client.get(), buf, sizeof buf - 1);
    if (n <= 0) return;
    std::string request(buf, static_cast<size_t>(n));
    while (!request.empty() && (request.back() == '\n' || request.back() == '\r')) request.pop_back();
    write_all(client.get(), handle(request) + "\n");
  }

  std::string handle(const std::string& request) {
    reap();  // a mosd that died a moment ago is not "running"
    if (request == "status") {
      if (mosd_pid_) return fmt::format("mosd {}", mosd_pid_);
      return fmt::format("mosd - {}", last_exit_);
    }
    if (request == "stop") {
      if (!mosd_pid_) return "ok -";
      pid_t pid = mosd_pid_;
      // The init is mosd's parent and has not reaped it, so the pid is still mosd's.
      ::kill(pid, SIGKILL);
      int status = 0;
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      last_exit_ = "stopped by mosctl cluster stop";
      log_info("mosd (pid {}) stopped", pid);
      mosd_pid_ = 0;
      return fmt::format("ok {}", pid);
    }
    if (request == "start") {
      if (mosd_pid_) return fmt::format("error mosd is already running (pid {} in the node)", mosd_pid_);
      try {
        mosd_pid_ = start_mosd();
      } catch (const std::exception& e) {
        log_error("{}", e.what());
        return fmt::format("error {}", e.what());
      }
      log_info("mosd started (pid {})", mosd_pid_);
      return fmt::format("ok {}", mosd_pid_);
    }
    return fmt::format("error unknown request '{}'", request);
  }

  pid_t start_mosd() {
    // A mosd killed earlier left its socket behind; waiting for the socket
    // must see the new one.
    ::unlink(fmt::format("{}/{}", kNodeStateDir, kMosdSocket).c_str());
    std::string log = fmt::format("{}/mosd.log", node_name(spawn_.node));
    FileDesc log_fd(::openat(dir_fd_, log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    if (!log_fd) throw SysError(fmt::format("open {}", (spawn_.dir / log).string()), errno);

    std::vector<std::string> args = {spawn_.mosd.string(),
                                     "--config",
                                     (spawn_.dir / "cluster.conf").string(),
                                     "--key",
                                     (spawn_.dir / "cluster.key").string(),
                                     "--node",
                                     std::to_string(spawn_.node),
                                     "--state-dir",
                                     kNodeStateDir};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::string node_env = fmt::format("{}={}", kNodeEnv, spawn_.node);
    // When mosd's path is hidden in the node (a program under the host's
    // /tmp), run it through the descriptor the init opened before its mounts.
    struct stat st {};
    bool path_visible = ::stat(spawn_.mosd.c_str(), &st) == 0;

    int report[2];
    check(::pipe2(report, O_CLOEXEC), "pipe");
    FileDesc report_r(report[0]), report_w(report[1]);
    pid_t pid = ::fork();
    if (pid < 0) throw SysError("fork", errno);
    if (pid == 0) {
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::setsid();
      int null = ::open("/dev/null", O_RDONLY);
      ::dup2(null, 0);
      ::dup2(log_fd.get(), 1);
      ::dup2(log_fd.get(), 2);
      if (::chdir("/") < 0) {
      }
      ::putenv(node_env.data());
      if (path_visible) {
        ::execv(argv[0], argv.data());
      } else {
        ::fcntl(mosd_fd_, F_SETFD, 0);  // a script's interpreter opens /dev/fd/N
        ::syscall(SYS_execveat, mosd_fd_, "", argv.data(), environ, AT_EMPTY_PATH);
      }
      int err = errno;
      write_all(report_w.get(), std::to_string(err));
      ::_exit(127);
    }
    report_w.reset();
    char buf[32];
    ssize_t n;
    while ((n = ::read(report_r.get(), buf, sizeof buf - 1)) < 0 && errno == EINTR) {
    }
    if (n > 0) {
      buf[n] = 0;
      int status = 0;
      ::waitpid(pid, &status, 0);
      throw UserError(fmt::format("cannot run {}: {}", spawn_.mosd.string(), std::strerror(std::atoi(buf))));
    }
    return pid;
  }

  NodeSpawn spawn_;
  int dir_fd_;
  int mosd_fd_;
  FileDesc signal_fd_;
  FileDesc listen_fd_;
  pid_t mosd_pid_ = 0;
  std::string last_exit_ = "not started";
};

// The helper's work; returns in the parent of the init only.
void helper(const NodeSpawn& spawn, int report_fd, int dir_fd, int mosd_fd) {
  // Whatever the caller ignored or blocked must not reach the node's processes.
  for (int sig = 1; sig < NSIG; ++sig)
    if (sig != SIGKILL && sig != SIGSTOP) ::signal(sig, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  cgroup::attach(spawn.cgroup, 0);
  if (!spawn.cpuset_cgroup.empty()) cgroup::attach(spawn.cpuset_cgroup, 0);
  if (!spawn.memory_cgroup.empty()) cgroup::attach(spawn.memory_cgroup, 0);
  check(::unshare(CLONE_NEWTIME), "unshare time namespace");
  write_clock_offsets(spawn.node);
  check(::unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWPID), "unshare namespaces");
  pid_t init = ::fork();
  if (init < 0) throw SysError("fork node init", errno);
  if (init == 0) {
    try {
      NodeInit node(spawn, dir_fd, mosd_fd);
      node.set_up();
      write_all(report_fd, "ok\n");
      ::close(report_fd);
      node.run();
    } catch (const std::exception& e) {
      child_exit_error(report_fd, e.what());
    }
  }
  write_all(report_fd, fmt::format("pid {}\n", init));
}

}  // namespace

fs::path init_socket(const fs::path& dir, int node) { return dir / node_name(node) / "init.sock"; }
fs::path mosd_log(const fs::path& dir, int node) { return dir / node_name(node) / "mosd.log"; }
fs::path init_log(const fs::path& dir, int node) { return dir / node_name(node) / "init.log"; }

ProcessRef spawn_node_init(const NodeSpawn& spawn) {
  FileDesc dir_fd(::open(spawn.dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd) throw SysError(fmt::format("open {}", spawn.dir.string()), errno);
  FileDesc mosd_fd(::open(spawn.mosd.c_str(), O_PATH | O_CLOEXEC));
  if (!mosd_fd) throw SysError(fmt::format("open {}", spawn.mosd.string()), errno);
  int report[2];
  check_sys(::pipe2(report, O_CLOEXEC), "pipe");
  FileDesc report_r(report[0]), report_w(report[1]);

  pid_t parent = ::getpid();
  pid_t helper_pid = check_sys(::fork(), "fork");
  if (helper_pid == 0) {
    // Dies with the caller until the init exists; the init is then in the
    // node's cgroup, where down() finds it even without a state file.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (::getppid() != parent) ::_exit(1);
    try {
      ::setsid();
      stdio_to_devnull();
      close_fds_except({report_w.get(), dir_fd.get(), mosd_fd.get()});
      helper(spawn, report_w.get(), dir_fd.get(), mosd_fd.get());
    } catch (const std::exception& e) {
      child_exit_error(report_w.get(), e.what());
    }
    ::_exit(0);
  }
  report_w.reset();

  // Lines: "pid N" from the helper, then "ok" or "error ..." from the init.
  std::string text;
  auto deadline = std::chrono::steady_clock::now() + spawn.timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{report_r.get(), POLLIN, 0};
    int rc = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) break;
    char buf[512];
    ssize_t n = ::read(report_r.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  int status = 0;
  while (::waitpid(helper_pid, &status, 0) < 0 && errno == EINTR) {
  }

  pid_t init_pid = 0;
  bool ok = false;
  std::string error;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("pid ", 0) == 0) init_pid = std::atoi(line.c_str() + 4);
    else if (line == "ok") ok = true;
    else if (line.rfind("error ", 0) == 0 && error.empty()) error = line.substr(6);
  }
  std::string name = node_name(spawn.node);
  if (!error.empty()) throw UserError(fmt::format("{}: setting up the node failed: {}", name, error));
  if (!ok || init_pid <= 0)
    throw UserError(fmt::format("{}: the node init did not finish its set-up within {} ms", name,
                                spawn.timeout.count()));
  auto ref = ref_of(init_pid);
  if (!ref) throw UserError(fmt::format("{}: the node init (pid {}) exited right after its set-up", name, init_pid));
  return *ref;
}

std::string init_request(const fs::path& dir, const NodeRecord& rec, const std::string& request) {
  std::string name = node_name(rec.node);
  FileDesc dir_fd(::open((dir / name).c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd) throw SysError(fmt::format("open {}", (dir / name).string()), errno);
  FileDesc sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!sock) throw SysError("socket", errno);
  timeval tv{10, 0};
  ::setsockopt(sock.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(sock.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  auto addr = socket_address(dir_fd.get(), "init.sock");
  if (::connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0)
    throw UserError(fmt::format("{}: its init (pid {}) does not answer on {}: {}", name, rec.init.pid,
                                init_socket(dir, rec.node).string(), std::strerror(errno)));
  // Whoever listens must be the init we recorded, not a stale socket's new owner.
  ucred peer{};
  socklen_t len = sizeof peer;
  if (::getsockopt(sock.get(), SOL_SOCKET, SO_PEERCRED, &peer, &len) < 0 || peer.pid != rec.init.pid)
    throw UserError(fmt::format("{}: {} is not served by its init (pid {})", name, init_socket(dir, rec.node).string(),
                                rec.init.pid));
  write_all(sock.get(), request + "\n");
  std::string reply;
  char buf[256];
  ssize_t n;
  while ((n = ::read(sock.get(), buf, sizeof buf)) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw UserError(fmt::format("{}: its init (pid {}) did not answer '{}': {}", name, rec.init.pid,
                                           request, std::strerror(errno)));
    reply.append(buf, static_cast<size_t>(n));
    if (reply.find('\n') != std::string::npos) break;
  }
  auto nl = reply.find('\n');
  if (nl == std::string::npos)
    throw UserError(fmt::format("{}: its init (pid {}) closed the connection without answering '{}'", name,
                                rec.init.pid, request));
  return reply.substr(0, nl);
}

}  // namespace roam::cluster::detail
