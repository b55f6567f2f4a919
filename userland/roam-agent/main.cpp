// roam-agent: one migration's agent, started by mosd (never by hand).
//
//   roam-agent home --pid PID --socket PATH ...   the home side of PID: takes
//       `migrate` requests on PATH, moves the process, serves its body as
//       its deputy, brings it home; ends when the process is home again or
//       has ended.
//   roam-agent remote --fd 3 ...                  a migration connection
//       accepted by this node's mosd: authenticates it, restores the body
//       and serves it (migration.hpp).
//
// Both take --config, --key, --node and --state-dir from mosd.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "roam/channel.hpp"
#include "roam/config.hpp"
#include "roam/control.hpp"
#include "roam/error.hpp"
#include "roam/log.hpp"
#include "roam/mig_messages.hpp"
#include "roam/migration.hpp"

namespace {

using namespace roam;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

struct Common {
  fs::path config, key, state_dir = "/run/roam";
  uint32_t node = 0;
};

// Replaces `path` by a file holding `text` at once (readers see the old one
// or the new one, never half of one): written to `tmp` beside it, then
// renamed. Agents writing one path need a `tmp` each. Throws when `ec` is
// null, else reports there.
void replace_file(const fs::path& path, const std::string& text, const fs::path& tmp,
                  std::error_code* ec = nullptr) {
  {
    std::ofstream out(tmp);
    out << text;
  }
  if (ec) fs::rename(tmp, path, *ec);
  else fs::rename(tmp, path);
}

// A `migrate` client connected to the agent's socket, waiting for its answer.
struct Client {
  FileDesc fd;
  msg::MigrateRequest req;

  void reply(bool ok, const std::string& message) {
    if (!fd) return;
    msg::MigrateReply r;
    r.ok = ok;
    r.message = message;
    try {
      write_frame(fd.get(), msg::encode(r));
    } catch (const std::exception&) {
    }
    fd.reset();
  }
};

class HomeSide {
 public:
  HomeSide(Common c, pid_t pid, fs::path socket, uint32_t to)
      : c_(std::move(c)), pid_(pid), to_(to), socket_(std::move(socket)), cfg_(load_cluster_config(c_.config)),
        key_(load_cluster_key(c_.key)) {
    where_ = socket_;
    where_.replace_extension(".where");
  }

  int run() {
    {
      std::ifstream in(fmt::format("/proc/{}/cmdline", pid_));
      std::string arg;
      while (std::getline(in, arg, '\0')) command_ += (command_.empty() ? "" : " ") + arg;
    }
    listen();
    std::optional<Client> first;
    if (to_ != 0) {
      // mosd's own decision (a policy): no one waits for the answer.
      first.emplace();
      first->req.pid = pid_;
      first->req.node = to_ == c_.node ? 0 : to_;
      first->req.async = true;
    } else {
      // The request that made mosd start us comes within moments.
      first = next_request(std::chrono::seconds(10));
    }
    if (!first) return finish(0, "no request came");
    std::optional<Client> pending = std::move(first);
    while (pending) {
      Client client = std::move(*pending);
      pending.reset();
      uint32_t node = client.req.node;
      if (node == 0) {
        client.reply(true, fmt::format("process {} is at home", pid_));
        continue;
      }
      if (client.req.async) client.reply(true, fmt::format("moving process {} to node {}", pid_, node));
      const NodeSpec* spec = cfg_.find(node);
      if (!spec) {
        client.reply(false, fmt::format("node {} is not in the cluster map", node));
        continue;
      }
      std::optional<Client> asking;  // whoever asked the process home (or on via home), waiting
      mig::HomeAgent agent(
          pid_, {.self_node = c_.node,
                 .link_timeout = std::chrono::milliseconds(cfg_.settings.link_timeout_ms),
                 .on_tick = [this](uint64_t calls, double demand) { write_stats(calls, demand); },
                 .carried = carried_,
                 .on_home_failed =
                     [&](const std::string& why) {
                       std::string line =
                           fmt::format("process {} stays at node {}: {}", pid_, current_, why);
                       log_warn("{}", line);
                       if (asking) asking->reply(false, line);
                       asking.reset();
                     },
                 .on_moved_on =
                     [&](uint32_t to, const mig::MoveStats& st) {
                       std::string line = fmt::format(
                           "process {} moved from node {} to node {} through home (frozen {:.1f} ms, {:.1f} MiB "
                           "relayed, deputy keeps {} KiB)",
                           pid_, current_, to, st.freeze.count() / 1000.0, st.image_bytes / 1048576.0,
                           st.deputy_rss_kib);
                       log_info("{}", line);
                       current_ = to;
                       arrived(to, st.image_bytes, st.freeze.count() / 1000.0);
                       if (asking) asking->reply(true, line);
                       asking.reset();
                     },
                 .fault = [this](std::string_view point) { return take_fault(point); }});
      try {
        auto t0 = Clock::now();
        mig::MoveStats st = agent.move_out(dial(*spec, node));
        double total = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        std::string line = fmt::format(
            "process {} moved to node {} in {:.0f} ms (frozen {:.1f} ms, {:.1f} MiB sent, deputy keeps {} KiB)", pid_,
            node, total, st.freeze.count() / 1000.0, st.image_bytes / 1048576.0, st.deputy_rss_kib);
        log_info("{}", line);
        arrived(node, st.image_bytes, total);
        client.reply(true, line);
      } catch (const std::exception& e) {
        std::string line = fmt::format("process {} stays at node {}: {}", pid_, c_.node, e.what());
        log_warn("{}", line);
        client.reply(false, line);
        continue;  // at home: take the next request, if one is waiting
      }
      current_ = node;
      mig::HomeOutcome out = agent.serve(listener_.get(), [&] {
        std::optional<Client> c = accept_request();
        if (!c) return;
        uint32_t want = c->req.node;
        if (want == current_) {
          c->reply(true, fmt::format("process {} is at node {}", pid_, want));
          return;
        }
        if (asking) {
          c->reply(false, fmt::format("process {} is already on its way", pid_));
          return;
        }
        if (want != 0) {
          // On from one remote node to another: relayed through here,
          // nothing restored here.
          const NodeSpec* to = cfg_.find(want);
          if (!to) {
            c->reply(false, fmt::format("node {} is not in the cluster map", want));
            return;
          }
          try {
            if (!agent.move_on(want, dial(*to, want), fmt::format("asked to node {}", want))) {
              c->reply(false, fmt::format("process {} is already on its way", pid_));
              return;
            }
          } catch (const std::exception& e) {
            c->reply(false, fmt::format("process {} stays at node {}: {}", pid_, current_, e.what()));
            return;
          }
          if (c->req.async) c->reply(true, fmt::format("moving process {} on to node {}", pid_, want));
          asking = std::move(c);
          return;
        }
        if (c->req.async) c->reply(true, fmt::format("bringing process {} home", pid_));
        asking = std::move(c);
        agent.come_home("asked home");
      });
      for (const auto& l : out.log) log_info("{}", l);
      ::unlink(where_.c_str());
      ::unlink(stats_path().c_str());
      current_ = 0;
      switch (out.end) {
        case mig::HomeOutcome::End::home:
          log_info("process {} is home: {}", pid_, out.message);
          carried_ = out.away_usage;
          if (asking && asking->req.node != 0) {
            pending = std::move(asking);
          } else {
            // No one can reach this agent from now on: a later `migrate`
            // asks mosd, which starts a new one.
            ::unlink(socket_.c_str());
            if (asking)
              asking->reply(true, out.home_prepare.count() > 0
                                      ? fmt::format("process {} came home (laid out at home in {:.1f} ms, then "
                                                    "restored in {:.1f} ms)",
                                                    pid_, out.home_prepare.count() / 1000.0,
                                                    out.home_restore.count() / 1000.0)
                                      : fmt::format("process {} came home (restored in {:.1f} ms)", pid_,
                                                    out.home_restore.count() / 1000.0));
          }
          break;
        default:
          if (asking) asking->reply(false, out.message);
          return finish(0, out.message);
      }
    }
    return finish(0, fmt::format("process {} is at home", pid_));
  }

 private:
  void listen() {
    listener_ = FileDesc(check_sys(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket"));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (socket_.native().size() >= sizeof addr.sun_path) throw UserError("socket path too long: " + socket_.string());
    std::strcpy(addr.sun_path, socket_.c_str());
    ::unlink(socket_.c_str());
    check_sys(::bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), "bind " + socket_.string());
    ::chmod(socket_.c_str(), 0666);  // requests are checked by SO_PEERCRED
    check_sys(::listen(listener_.get(), 16), "listen");
  }

  // The migration link to `node`, authenticated with the cluster key.
  Channel dial(const NodeSpec& spec, uint32_t node) {
    return dial_channel(spec.address, static_cast<uint16_t>(spec.port + 1), key_, c_.node, node, msg::kFeatMigration,
                        std::chrono::milliseconds(cfg_.settings.connect_timeout_ms), msg::kMigMaxFrame,
                        cfg_.settings.seal_pages);
  }

  // The body runs at `node` now (moved out, or on): what mosd and mosps read.
  void arrived(uint32_t node, uint64_t bytes, double took_ms) {
    moved_bytes_ = bytes;
    tick_at_ = {};
    write_where(node);
    write_stats(0);
    write_last_move(bytes, took_ms);
  }

  // Fault injection for tests: agents/PID.fault (root's, like the whole
  // state directory) naming `what` arms one failure; taking it removes it.
  bool take_fault(std::string_view what) {
    fs::path p = socket_;
    p.replace_extension(".fault");
    std::ifstream in(p);
    std::string word;
    if (!(in >> word) || word != what) return false;
    ::unlink(p.c_str());
    log_warn("process {}: injecting the fault {} ({})", pid_, what, p.string());
    return true;
  }

  int finish(int rc, const std::string& why) {
    ::unlink(socket_.c_str());
    ::unlink(where_.c_str());
    ::unlink(stats_path().c_str());
    log_info("agent for process {} ends: {}", pid_, why);
    return rc;
  }

  // The node, then the command line (the deputy's memory, where
  // /proc/PID/cmdline reads from, is released while it is away).
  void write_where(uint32_t node) {
    replace_file(where_, fmt::format("{}\n{}\n", node, command_), fs::path(where_) += ".tmp");
  }

  fs::path stats_path() const {
    fs::path p = socket_;
    return p.replace_extension(".stats");
  }

  // For mosd's policy step, one line "CALLS_PER_S MOVED_BYTES
  // DEMAND_PERMILLE": calls served per second since the last tick, the
  // bytes the move carried (what the process holds, near enough), and the
  // body's demand where it runs (-1: not known yet).
  void write_stats(uint64_t calls, double demand = -1) {
    auto now = Clock::now();
    double rate = 0;
    if (calls >= tick_calls_ && tick_at_ != Clock::time_point{}) {
      double dt = std::chrono::duration<double>(now - tick_at_).count();
      if (dt > 0) rate = static_cast<double>(calls - tick_calls_) / dt;
    }
    tick_calls_ = calls;
    tick_at_ = now;
    std::error_code ec;
    replace_file(stats_path(),
                 fmt::format("{} {} {}\n", static_cast<uint64_t>(rate), moved_bytes_,
                             demand < 0 ? -1 : static_cast<int>(std::lround(demand * 1000))),
                 fs::path(stats_path()) += ".tmp", &ec);
  }

  // The rate mosd's policies expect of a move: the bytes and the time of
  // the last one made from this node.
  void write_last_move(uint64_t bytes, double ms) {
    fs::path dir = socket_.parent_path();
    std::error_code ec;
    replace_file(dir / "last_move", fmt::format("{} {}\n", bytes, static_cast<uint64_t>(ms * 1000)),
                 dir / fmt::format("last_move.{}", pid_), &ec);
  }

  std::optional<Client> next_request(std::chrono::milliseconds timeout) {
    pollfd p{listener_.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return std::nullopt;
    return accept_request();
  }

  // One request from a connection on our socket; nullopt when it was not
  // one (bad frames, a user who does not own the process).
  std::optional<Client> accept_request() {
    Client c;
    c.fd = FileDesc(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!c.fd) return std::nullopt;
    timeval tv{2, 0};
    ::setsockopt(c.fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    try {
      ucred cred{};
      socklen_t cl = sizeof cred;
      ::getsockopt(c.fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &cl);
      std::vector<std::byte> body;
      if (!read_frame(c.fd.get(), body, 65536)) return std::nullopt;
      msg::decode<msg::CtlHello>(body);
      if (!read_frame(c.fd.get(), body, 65536)) return std::nullopt;
      c.req = msg::decode<msg::MigrateRequest>(body);
      struct stat st {};
      if (::stat(fmt::format("/proc/{}", pid_).c_str(), &st) != 0 || (cred.uid != 0 && cred.uid != st.st_uid)) {
        c.reply(false, fmt::format("process {} belongs to another user", pid_));
        return std::nullopt;
      }
      if (c.req.pid != pid_) {
        c.reply(false, fmt::format("this agent serves process {}, not {}", pid_, c.req.pid));
        return std::nullopt;
      }
      if (c.req.node != 0 && !cfg_.find(c.req.node)) {
        c.reply(false, fmt::format("node {} is not in the cluster map", c.req.node));
        return std::nullopt;
      }
      if (c.req.node == c_.node) c.req.node = 0;
    } catch (const std::exception& e) {
      c.reply(false, fmt::format("bad request: {}", e.what()));
      return std::nullopt;
    }
    return c;
  }

  Common c_;
  pid_t pid_;
  uint32_t to_ = 0;
  uint64_t moved_bytes_ = 0;
  uint64_t tick_calls_ = 0;
  Clock::time_point tick_at_{};
  fs::path socket_, where_;
  ClusterConfig cfg_;
  ClusterKey key_;
  FileDesc listener_;
  uint32_t current_ = 0;
  CpuUsage carried_;  // used away on earlier trips, missing from the kernel's figures here
  std::string command_;
};

// mosctl expel: mosd signals SIGUSR1 to the remote agents; the body goes home.
volatile sig_atomic_t g_expelled = 0;
void on_expel(int) { g_expelled = 1; }

// What mosd lists as this node's guest (mosps --guests): written once the
// body runs, as "HOME_NODE HOME_PID BODY_PID" and the command line.
class GuestRecord {
 public:
  GuestRecord(const fs::path& state_dir) : path_(state_dir / "guests" / std::to_string(::getpid())) {}
  ~GuestRecord() { ::unlink(path_.c_str()); }
  void write(uint32_t home, pid_t body) {
    // Its pid at home is its pid in its own namespace (NSpid's last field).
    std::ifstream status(fmt::format("/proc/{}/status", body));
    std::string line;
    pid_t home_pid = 0;
    while (std::getline(status, line))
      if (line.rfind("NSpid:", 0) == 0) {
        std::istringstream in(line.substr(6));
        for (pid_t p; in >> p;) home_pid = p;
      }
    std::ifstream cmdline(fmt::format("/proc/{}/cmdline", body));
    std::string command, arg;
    while (std::getline(cmdline, arg, '\0')) command += (command.empty() ? "" : " ") + arg;
    std::error_code ec;
    fs::create_directories(path_.parent_path(), ec);
    replace_file(path_, fmt::format("{} {} {}\n{}\n", home, home_pid, body, command), fs::path(path_) += ".tmp",
                 &ec);
  }

 private:
  fs::path path_;
};

int run_remote(const Common& c, int fd, const std::string& refuse) {
  ClusterConfig cfg = load_cluster_config(c.config);
  ClusterKey key = load_cluster_key(c.key);
  uint32_t peer = 0;
  Channel ch;
  try {
    ch = accept_channel(FileDesc(fd), key, c.node, msg::kFeatMigration,
                        std::chrono::milliseconds(cfg.settings.connect_timeout_ms), msg::kMigMaxFrame, &peer,
                        cfg.settings.seal_pages);
  } catch (const std::exception& e) {
    log_warn("migration connection refused: {}", e.what());
    return 1;
  }
  const NodeSpec* spec = cfg.find(peer);
  if (!spec) {
    log_warn("migration connection refused: node {} is not in the cluster map", peer);
    return 1;
  }
  // As for peer links: a node must connect from its own address.
  sockaddr_storage ss{};
  socklen_t sl = sizeof ss;
  char from[INET6_ADDRSTRLEN] = "?";
  if (::getpeername(ch.fd(), reinterpret_cast<sockaddr*>(&ss), &sl) == 0) {
    if (ss.ss_family == AF_INET)
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr, from, sizeof from);
    else if (ss.ss_family == AF_INET6)
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr, from, sizeof from);
  }
  if (spec->address != from) {
    log_warn("migration connection refused: claims node {} but connects from {} (node {} is at {})", peer, from, peer,
             spec->address);
    return 1;
  }
  set_log_tag(fmt::format("roam-agent/node{}<-node{}", c.node, peer));
  mig::BodyOptions o;
  o.self_node = c.node;
  o.link_timeout = std::chrono::milliseconds(cfg.settings.link_timeout_ms);
  for (const std::string& tag : cfg.find(c.node)->tags)
    if (tag.rfind("cpu-lacks:", 0) == 0) o.withheld_cpu_features.push_back(tag.substr(10));
  o.refuse = refuse;
  GuestRecord guest(c.state_dir);
  o.on_ready = [&](pid_t body) {
    log_info("body {} from node {} restored", body, peer);
    // Only now: the body and its namespace's init, forked from this
    // process, must not inherit the handler. mosd signals only agents
    // whose guest record exists.
    struct sigaction sa {};
    sa.sa_handler = on_expel;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGUSR1, &sa, nullptr);
    guest.write(peer, body);
  };
  o.expelled = [] { return g_expelled != 0; };
  mig::BodyOutcome out = mig::serve_body(std::move(ch), o);
  for (const auto& l : out.log) log_info("{}", l);
  if (out.end == mig::BodyOutcome::End::refused) {
    log_warn("refused a process from node {}: {}", peer, out.message);
  } else {
    log_info("body {} from node {}: {}", out.body, peer, out.message);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"roam-agent: one migration's agent (started by mosd)"};
  app.require_subcommand(1);
  Common c;
  pid_t pid = 0;
  std::string socket;
  int fd = 3;
  std::string refuse;
  for (CLI::App* sub : {app.add_subcommand("home", "serve one process of this node"),
                        app.add_subcommand("remote", "receive and serve one process from another node")}) {
    sub->add_option("--config", c.config, "cluster map")->required();
    sub->add_option("--key", c.key, "cluster key")->required();
    sub->add_option("--node", c.node, "this node")->required();
    sub->add_option("--state-dir", c.state_dir, "mosd's runtime directory");
  }
  app.get_subcommand("home")->add_option("--pid", pid, "the process")->required();
  app.get_subcommand("home")->add_option("--socket", socket, "where `migrate` finds this agent")->required();
  uint32_t to = 0;
  app.get_subcommand("home")->add_option("--to", to, "move the process there at once (mosd's policies)");
  app.get_subcommand("remote")->add_option("--fd", fd, "the accepted connection");
  app.get_subcommand("remote")->add_option("--refuse", refuse, "refuse the process with this reason (mosctl stay)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::fprintf(stderr, "roam-agent: %s\n", e.what());
    return 2;
  }
  ::signal(SIGPIPE, SIG_IGN);
  try {
    if (app.got_subcommand("home")) {
      set_log_tag(fmt::format("roam-agent/node{}:{}", c.node, pid));
      return HomeSide(c, pid, socket, to).run();
    }
    set_log_tag(fmt::format("roam-agent/node{}", c.node));
    return run_remote(c, fd, refuse);
  } catch (const std::exception& e) {
    log_error("{}", e.what());
    return 1;
  }
}
