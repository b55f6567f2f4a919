// The cluster's network: bridge br0 in a network namespace held by one
// sleeping process, and per node a veth pair created from inside that
// namespace with its peer going straight into the node ("peer ... netns
// PID"), so that the host's namespace never holds either end. Nothing is
// named or bind-mounted: when the holder and the node inits die, the
// namespaces and every interface in them go with them.
#include <fcntl.h>
#include <signal.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include <fmt/format.h>

#include "local_cluster_detail.hpp"
#include "roam/cgroup.hpp"
#include "roam/error.hpp"
#include "roam/local_cluster.hpp"

namespace roam::cluster::detail {
namespace {

const char* find_ip() {
  for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"})
    if (::access(p, X_OK) == 0) return p;
  throw UserError("the local cluster needs the ip command (Debian package iproute2)");
}

}  // namespace

void run_ip(const ProcessRef& owner, const std::string& commands) {
  const char* ip = find_ip();
  FileDesc pidfd = open_pidfd(owner);
  if (!pidfd) throw UserError(fmt::format("process {} exited before its network could be set up", owner.pid));
  int in[2], err[2];
  check_sys(::pipe2(in, O_CLOEXEC), "pipe");
  FileDesc in_r(in[0]), in_w(in[1]);
  check_sys(::pipe2(err, O_CLOEXEC), "pipe");
  FileDesc err_r(err[0]), err_w(err[1]);
  pid_t pid = check_sys(::fork(), "fork");
  if (pid == 0) {
    ::dup2(in_r.get(), 0);
    ::dup2(err_w.get(), 1);
    ::dup2(err_w.get(), 2);
    if (::setns(pidfd.get(), CLONE_NEWNET) < 0) {
      std::fprintf(stderr, "setns: %s\n", std::strerror(errno));
      ::_exit(127);
    }
    ::execl(ip, ip, "-batch", "-", static_cast<char*>(nullptr));
    std::fprintf(stderr, "cannot run %s: %s\n", ip, std::strerror(errno));
    ::_exit(127);
  }
  in_r.reset();
  err_w.reset();
  write_all(in_w.get(), commands);
  in_w.reset();
  std::string output;
  char buf[512];
  ssize_t n;
  while ((n = ::read(err_r.get(), buf, sizeof buf)) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    output.append(buf, static_cast<size_t>(n));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    while (!output.empty() && (output.back() == '\n' || output.back() == ' ')) output.pop_back();
    std::replace(output.begin(), output.end(), '\n', ' ');
    std::string first = commands.substr(0, commands.find('\n'));
    throw UserError(fmt::format("ip -batch ({}...) failed: {}", first, output.empty() ? "no message" : output));
  }
}


ProcessRef spawn_bridge_holder(const fs::path& cgroup) {
  int report[2];
  check_sys(::pipe2(report, O_CLOEXEC), "pipe");
  FileDesc report_r(report[0]), report_w(report[1]);
  pid_t parent = ::getpid();
  pid_t pid = check_sys(::fork(), "fork");
  if (pid == 0) {
    // Dies with the caller until it is in the cluster's cgroup, where down()
    // finds it even without a state file.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (::getppid() != parent) ::_exit(1);
    try {
      ::setsid();
      stdio_to_devnull();
      close_fds_except({report_w.get()});
      for (int sig = 1; sig < NSIG; ++sig)
        if (sig != SIGKILL && sig != SIGSTOP) ::signal(sig, SIG_DFL);
      cgroup::attach(cgroup, 0);
      if (::unshare(CLONE_NEWNET) < 0) throw SysError("unshare network namespace", errno);
      if (::chdir("/") < 0) throw SysError("chdir /", errno);
      set_process_name("roam-bridge");
      ::prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
      write_all(report_w.get(), "ok\n");
      report_w.reset();
    } catch (const std::exception& e) {
      child_exit_error(report_w.get(), e.what());
    }
    for (;;) ::pause();
  }
  report_w.reset();
  std::string reply;
  char buf[256];
  ssize_t n;
  while ((n = ::read(report_r.get(), buf, sizeof buf)) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    reply.append(buf, static_cast<size_t>(n));
  }
  if (reply != "ok\n") {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    std::string why = reply.rfind("error ", 0) == 0 ? reply.substr(6) : std::string("it exited\n");
    why.pop_back();
    throw UserError(fmt::format("cannot start the cluster's bridge holder: {}", why));
  }
  auto ref = ref_of(pid);
  if (!ref) throw UserError("the cluster's bridge holder exited right after it started");
  run_ip(*ref, "link add br0 type bridge\nlink set br0 up\n");
  return *ref;
}

void connect_node(const ProcessRef& bridge, const ProcessRef& init, int node) {
  std::string veth = fmt::format("veth{}", node);
  run_ip(bridge, fmt::format("link add {} type veth peer name eth0 netns {}\n"
                             "link set {} master br0 up\n",
                             veth, init.pid, veth));
  // Recheck after naming the init by pid to ip: if it had died and its pid
  // been reused, the veth could have gone to a stranger's namespace.
  if (!alive(init)) throw UserError(fmt::format("{}: its init (pid {}) died during set-up", node_name(node), init.pid));
  run_ip(init, fmt::format("addr add {}/24 dev eth0\n"
                           "link set eth0 up\n"
                           "link set lo up\n",
                           node_address(node)));
}

}  // namespace roam::cluster::detail
