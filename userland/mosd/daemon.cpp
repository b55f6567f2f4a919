#include "daemon.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <fstream>

#include "roam/control.hpp"
#include "roam/error.hpp"
#include "roam/image_migratable.hpp"
#include "roam/log.hpp"
#include "roam/mig_messages.hpp"

namespace roam::mosd {
namespace {

std::string describe(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
    return fmt::format("{}:{}", buf, ntohs(a->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
    return fmt::format("[{}]:{}", buf, ntohs(a->sin6_port));
  }
  return "?";
}

gossip::Params gossip_params(const Settings& s) {
  gossip::Params p;
  p.window = s.gossip_window;
  p.window_rule = s.window_rule;
  p.target_rule = s.target_rule;
  p.down_after_ms = static_cast<int64_t>(s.down_after_steps) * s.gossip_step_ms;
  return p;
}

ClusterConfig load_config_or_fail(const Options& o) { return load_cluster_config(o.config); }

}  // namespace

Daemon::Daemon(Options opts)
    : opts_(std::move(opts)),
      cfg_(load_config_or_fail(opts_)),
      key_(load_cluster_key(opts_.key)),
      self_(find_self(opts_.node)),
      self_index_(static_cast<uint32_t>(cfg_.index_of(self_))),
      table_(self_index_, static_cast<uint32_t>(cfg_.nodes.size()), gossip_params(cfg_.settings),
             std::random_device{}() ^ (static_cast<uint64_t>(self_) << 32)),
      meter_(cfg_.settings.speed),
      rng_(std::random_device{}()) {
  for (auto& n : cfg_.nodes) names_.push_back(fmt::format("node{}", n.number));
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  hostname_ = host;
  outgoing_.resize(cfg_.nodes.size());
  set_log_tag(fmt::format("mosd/node{}", self_));
  try {
    jobs_.emplace();
  } catch (const std::exception& e) {
    jobs_error_ = e.what();
    log_warn("job tracking unavailable: {}", jobs_error_);
  }
}

uint32_t Daemon::find_self(uint32_t requested) const {
  if (requested) {
    if (!cfg_.find(requested))
      throw UserError(fmt::format("node {} is not in the cluster map {}", requested, cfg_.path.string()));
    return requested;
  }
  ifaddrs* ifs = nullptr;
  check_sys(getifaddrs(&ifs), "getifaddrs");
  uint32_t found = 0;
  for (ifaddrs* i = ifs; i && !found; i = i->ifa_next) {
    if (!i->ifa_addr || (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6)) continue;
    char buf[INET6_ADDRSTRLEN];
    const void* a = i->ifa_addr->sa_family == AF_INET ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr)
                                                       : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr);
    inet_ntop(i->ifa_addr->sa_family, a, buf, sizeof buf);
    for (auto& n : cfg_.nodes)
      if (n.address == buf) found = n.number;
  }
  freeifaddrs(ifs);
  if (!found)
    throw UserError(fmt::format("none of this machine's addresses is in the cluster map {}: give --node N",
                                cfg_.path.string()));
  return found;
}

const std::string& Daemon::name_of(uint32_t node) const {
  static const std::string unknown = "unknown node";
  int i = cfg_.index_of(node);
  return i < 0 ? unknown : names_[static_cast<size_t>(i)];
}

int64_t Daemon::now_ms() const {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

void Daemon::listen_peers() {
  const NodeSpec& me = *cfg_.find(self_);
  socklen_t len = 0;
  auto addr = parse_sockaddr(me.address, me.port, &len);
  ROAM_ASSERT(addr.has_value(), "config parser let through a bad address");
  peer_listener_ = FileDesc(check_sys(::socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket"));
  int one = 1;
  setsockopt(peer_listener_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(peer_listener_.get(), reinterpret_cast<sockaddr*>(&*addr), len) != 0)
    throw UserError(fmt::format("cannot listen on {}:{} (node {} in {}): {}", me.address, me.port, self_,
                                cfg_.path.string(), std::strerror(errno)));
  check_sys(::listen(peer_listener_.get(), 128), "listen");
  accept_peer();
}

void Daemon::accept_peer() {
  loop_.accept(peer_listener_.get(), [this](int fd) {
    if (fd >= 0) {
      FileDesc conn(fd);
      sockaddr_storage ss{};
      socklen_t sl = sizeof ss;
      getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &sl);
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      auto link = std::make_shared<PeerLink>(*this, std::move(conn), describe(ss), Role::server, 0);
      links_.insert(link);
      link->start();
    } else if (fd != -EINTR) {
      log_warn("accepting a peer failed: {}", std::strerror(-fd));
    }
    accept_peer();
  });
}

// Migration connections come to the peer port + 1; each is handed, before
// any byte is read, to a remote agent of its own that authenticates it and
// receives the process.
void Daemon::listen_migration() {
  const NodeSpec& me = *cfg_.find(self_);
  socklen_t len = 0;
  auto addr = parse_sockaddr(me.address, static_cast<uint16_t>(me.port + 1), &len);
  ROAM_ASSERT(addr.has_value(), "config parser let through a bad address");
  migration_listener_ = FileDesc(check_sys(::socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket"));
  int one = 1;
  setsockopt(migration_listener_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(migration_listener_.get(), reinterpret_cast<sockaddr*>(&*addr), len) != 0)
    throw UserError(fmt::format("cannot listen for migrations on {}:{} (node {}): {}", me.address, me.port + 1,
                                self_, std::strerror(errno)));
  check_sys(::listen(migration_listener_.get(), 64), "listen");
  accept_migration();
}

void Daemon::accept_migration() {
  loop_.accept(migration_listener_.get(), [this](int fd) {
    if (fd >= 0) {
      FileDesc conn(fd);
      sockaddr_storage ss{};
      socklen_t sl = sizeof ss;
      getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &sl);
      try {
        std::vector<std::string> args = {"remote", "--fd", "3"};
        if (no_guests_) {
          args.push_back("--refuse");
          args.push_back(fmt::format("node {} takes no guests (mosctl stay)", self_));
        }
        pid_t agent = spawn_agent(AgentKind::remote, args, conn.get());
        log_info("migration from {}: remote agent {}", describe(ss), agent);
      } catch (const std::exception& e) {
        log_warn("migration from {} refused: {}", describe(ss), e.what());
      }
    } else if (fd != -EINTR) {
      log_warn("accepting a migration failed: {}", std::strerror(-fd));
    }
    accept_migration();
  });
}

// fork + exec of roam-agent (next to mosd) with the daemon's map, key and
// node; `keep_fd` becomes its fd 3. The agent dies with mosd: a body must
// not outlive its node's daemon, nor a deputy's server its home's.
pid_t Daemon::spawn_agent(AgentKind kind, const std::vector<std::string>& args, int keep_fd) {
  static constexpr size_t kMaxAgents = 1024;
  if (agents_.size() >= kMaxAgents) throw UserError(fmt::format("{} migration agents already run here", kMaxAgents));
  std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe").parent_path() / "roam-agent";
  std::vector<std::string> argv = {exe.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  for (const std::string& a : {std::string("--config"), opts_.config.string(), std::string("--key"), opts_.key.string(),
                               std::string("--node"), std::to_string(self_), std::string("--state-dir"),
                               opts_.state_dir.string()})
    argv.push_back(a);
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) throw SysError("fork (roam-agent)", errno);
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (keep_fd >= 0) {
      if (::dup2(keep_fd, 3) < 0) ::_exit(1);
    } else {
      ::close(3);
    }
    ::syscall(SYS_close_range, 4, ~0u, 0);  // the ring's fd is not close-on-exec
    ::execv(cargv[0], cargv.data());
    ::_exit(127);
  }
  agents_[pid] = kind;
  return pid;
}

void Daemon::reap_agents() {
  for (;;) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    agents_.erase(pid);
    ::unlink((guest_dir() / std::to_string(pid)).c_str());  // an agent that could not remove it
    if (WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) > 1))
      log_warn("migration agent {} ended with status {:#x}", pid, status);
  }
}

uint32_t Daemon::parse_node(const std::string& t) const {
  std::string digits = t.rfind("node", 0) == 0 ? t.substr(4) : t;
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 9)
    throw UserError(fmt::format("'{}' is not a node: give a number, nodeN, home or best", t));
  uint32_t node = static_cast<uint32_t>(std::stoul(digits));
  if (!cfg_.find(node)) throw UserError(fmt::format("node {} is not in the cluster map", node));
  return node == self_ ? 0 : node;
}

uint32_t Daemon::current_node(pid_t pid, bool* has_agent) const {
  bool agent = std::filesystem::exists(agent_dir() / fmt::format("{}.sock", pid));
  if (has_agent) *has_agent = agent;
  uint32_t node = self_;
  if (agent) {
    std::ifstream where(agent_dir() / fmt::format("{}.where", pid));
    uint32_t n = 0;
    if (where >> n && n != 0) node = n;
  }
  return node;
}

bool Daemon::is_away(pid_t pid) const { return std::filesystem::exists(agent_dir() / fmt::format("{}.where", pid)); }

uint32_t Daemon::count_away() const {
  uint32_t n = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(agent_dir(), ec))
    if (e.path().extension() == ".where") ++n;
  return n;
}

std::vector<placement::NodeView> Daemon::node_views() {
  std::vector<placement::NodeView> v;
  int64_t now = now_ms();
  for (uint32_t i = 0; i < cfg_.nodes.size(); ++i) {
    placement::NodeView n;
    n.node = cfg_.nodes[i].number;
    n.self = i == self_index_;
    n.tags = cfg_.nodes[i].tags;
    n.up = n.self || (table_.known(i) && table_.up(i, now));
    if (table_.known(i)) {
      const msg::LoadInfo& info = table_.payload(i);
      n.takes_guests = (info.flags & msg::kNodeNoGuests) == 0;
      n.load = info.load;
      n.ncpus = info.ncpus;
      n.speed = info.speed;
      n.free_mem = info.free_mem;
      n.total_mem = info.total_mem;
      if (!n.self) n.age_ms = static_cast<uint64_t>(std::max<int64_t>(0, table_.age_ms(i, now)));
    }
    v.push_back(std::move(n));
  }
  return v;
}

msg::MigrateReply Daemon::migrate(const msg::MigrateRequest& req, uid_t peer_uid) {
  if (!jobs_) throw UserError(jobs_error_);
  if (req.pid <= 0) throw UserError(fmt::format("bad pid {}", req.pid));
  std::optional<uint64_t> job;
  for (const auto& p : jobs_->processes())
    if (p.pid == req.pid) job = p.job;
  if (!job) throw UserError(fmt::format("process {} is not a roam job of node {} (start it with mosrun)", req.pid, self_));
  struct stat st {};
  if (::stat(fmt::format("/proc/{}", req.pid).c_str(), &st) != 0)
    throw UserError(fmt::format("process {} is gone", req.pid));
  if (peer_uid != 0 && peer_uid != st.st_uid)
    throw UserError(fmt::format("process {} belongs to another user", req.pid));

  const placement::Placement& want = placements_.of_job(*job);
  auto sock = agent_dir() / fmt::format("{}.sock", req.pid);
  bool away = false;
  uint32_t current = current_node(req.pid, &away);
  msg::MigrateReply r;
  uint32_t node = 0;
  placement::Reason why{placement::Why::user, {}};
  const std::string& t = req.target;
  if (t == "home") {
    node = 0;
  } else if (!want.user_may_move()) {
    throw UserError(fmt::format("process {} stays home (mosrun -h): it may not move", req.pid));
  } else {
    auto views = node_views();
    if (t == "best") {
      std::string none;
      auto best = placement::choose_best(want, views, current, &none);
      if (!best) throw UserError(fmt::format("process {} has nowhere to go: {}", req.pid, none));
      node = *best == self_ ? 0 : *best;
      why = want.tag.empty() ? placement::Reason{placement::Why::best, {}}
                             : placement::Reason{placement::Why::tag, want.tag};
    } else {
      node = parse_node(t);
      if (node != 0) {
        // The user named the node: its gossip may not have come yet, so
        // only what is known refuses it (the connection tells the rest).
        placement::NodeView view = views[static_cast<size_t>(cfg_.index_of(node))];
        view.up = true;
        if (std::string no = placement::unfit(want, view, current); !no.empty())
          throw UserError(fmt::format("process {} may not go to node {}: {}", req.pid, node, no));
      }
    }
  }
  if (!away && node == 0) {
    r.ok = true;
    r.message = fmt::format("process {} is already at home (node {})", req.pid, self_);
    return r;
  }
  if (!away) {
    if (auto can = image::migratable(req.pid); !can)
      throw UserError(fmt::format("process {} cannot move: {}", req.pid, can.reason));
    std::filesystem::create_directories(agent_dir());
    ::unlink(sock.c_str());
    spawn_agent(AgentKind::home, {"home", "--pid", std::to_string(req.pid), "--socket", sock.string()}, -1);
  }
  if (node != 0 && node != current) placements_.moving(req.pid, placements_.take_reason(req.pid, node, why));
  r.ok = true;
  r.agent_socket = sock.string();
  r.node = node;
  return r;
}

msg::NodeCommandReply Daemon::node_command(const msg::NodeCommand& req, uid_t peer_uid) {
  if (peer_uid != 0) throw UserError(fmt::format("mosctl {} needs root", req.op));
  msg::NodeCommandReply r;
  if (req.op == "stay" || req.op == "nostay") {
    no_guests_ = req.op == "stay";
    // Kept in the state directory: a restarted mosd stays as it was told.
    // Only whether the file exists matters.
    std::error_code ec;
    if (no_guests_) {
      std::ofstream(stay_path()) << "mosctl stay\n";
      if (!std::filesystem::exists(stay_path(), ec))
        log_warn("cannot record the stay in {}: a restarted mosd would take guests", stay_path().string());
    } else {
      std::filesystem::remove(stay_path(), ec);
    }
    sample();  // the flag goes out with the next gossip step
    r.message = no_guests_ ? fmt::format("node {} takes no new guests ({} stay)", self_, guest_count_)
                           : fmt::format("node {} takes guests again", self_);
    log_info("{}", r.message);
    return r;
  }
  if (req.op == "expel") {
    // Each remote agent with a running body sends it home when signalled.
    for (const auto& g : guests().guests)
      if (::kill(g.agent, SIGUSR1) == 0) ++r.count;
    r.message = fmt::format("node {}: {} guest{} sent home", self_, r.count, r.count == 1 ? "" : "s");
    log_info("{}", r.message);
    return r;
  }
  throw UserError(fmt::format("unknown node command '{}' (stay, nostay, expel)", req.op));
}

msg::GuestsReply Daemon::guests() {
  msg::GuestsReply r;
  r.self = self_;
  for (const auto& [pid, kind] : agents_) {
    if (kind != AgentKind::remote) continue;
    std::ifstream in(guest_dir() / std::to_string(pid));
    msg::GuestInfo g;
    g.agent = pid;
    if (!(in >> g.home >> g.home_pid >> g.body_pid)) continue;  // no body running yet
    std::getline(in, g.command);
    std::getline(in, g.command);
    std::ifstream status(fmt::format("/proc/{}/status", g.body_pid));
    std::string line;
    while (std::getline(status, line))
      if (line.rfind("VmRSS:", 0) == 0) g.rss = std::strtoull(line.c_str() + 6, nullptr, 10) * 1024;
    r.guests.push_back(std::move(g));
  }
  return r;
}

void Daemon::listen_control() {
  std::filesystem::create_directories(opts_.state_dir);
  auto path = opts_.state_dir / "mosd.sock";
  control_listener_ = FileDesc(check_sys(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket"));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.native().size() >= sizeof addr.sun_path) throw UserError("state directory path too long: " + path.string());
  std::strcpy(addr.sun_path, path.c_str());
  ::unlink(path.c_str());
  check_sys(::bind(control_listener_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), "bind " + path.string());
  ::chmod(path.c_str(), 0666);  // every user may run mosrun and mosps; requests are checked per peer
  check_sys(::listen(control_listener_.get(), 64), "listen");
  accept_control();
}

void Daemon::accept_control() {
  loop_.accept(control_listener_.get(), [this](int fd) {
    if (fd >= 0) {
      FileDesc conn(fd);
      ucred cred{};
      socklen_t cl = sizeof cred;
      getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl);
      auto link = std::make_shared<ControlLink>(*this, std::move(conn), cred.pid, cred.uid);
      links_.insert(link);
      link->start();
    }
    accept_control();
  });
}

void Daemon::watch_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  signal_fd_ = FileDesc(check_sys(signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK), "signalfd"));
  on_signal();
}

void Daemon::on_signal() {
  loop_.poll(signal_fd_.get(), POLLIN, [this](int) {
    signalfd_siginfo si{};
    if (::read(signal_fd_.get(), &si, sizeof si) != sizeof si) return on_signal();
    if (si.ssi_signo == SIGHUP) {
      // The map is read once; a changed map needs a restart (systemctl restart mosd).
      log_warn("SIGHUP: mosd does not reload {}; restart it to apply a changed map", cfg_.path.string());
      return on_signal();
    }
    log_info("signal {} received, shutting down", strsignal(static_cast<int>(si.ssi_signo)));
    loop_.stop();
  });
}

void Daemon::schedule_sampling() {
  loop_.after(cfg_.settings.load_sample_ms, [this] {
    sample();
    schedule_sampling();
  });
}

void Daemon::sample() {
  meter_.sample(count_runnable_tasks(), usable_cpus());
  reap_agents();
  guest_count_ = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(guest_dir(), ec)) {
    (void)e;
    ++guest_count_;
  }
  proc_count_ = guest_count_;
  if (jobs_) {
    // This node's own processes that run here: the away ones' deputies do not.
    uint32_t own = static_cast<uint32_t>(jobs_->count()), away = count_away();
    proc_count_ += own > away ? own - away : 0;
    if (jobs_->sweep() > 0) placements_.retain(jobs_->processes());
  }
  auto mem = memory_info();
  msg::LoadInfo info;
  info.load = meter_.load();
  info.free_mem = mem.free;
  info.total_mem = mem.total;
  info.ncpus = static_cast<uint16_t>(usable_cpus());
  info.speed = cfg_.settings.speed;
  info.procs = proc_count_;
  info.guests = guest_count_;
  info.flags = no_guests_ ? msg::kNodeNoGuests : 0;
  table_.set_self(info, now_ms());
}

void Daemon::schedule_gossip() {
  // +-10% jitter keeps the nodes from stepping in lock-step.
  uint32_t step = cfg_.settings.gossip_step_ms;
  std::uniform_int_distribution<int> jitter(-static_cast<int>(step / 10), static_cast<int>(step / 10));
  loop_.after(static_cast<uint32_t>(static_cast<int>(step) + jitter(rng_)), [this] {
    gossip_step();
    schedule_gossip();
  });
}

void Daemon::gossip_step() {
  auto out = table_.step(now_ms());
  if (out.target == self_index_) return;
  msg::Gossip g;
  g.entries.reserve(out.entries.size());
  for (auto& e : out.entries) g.entries.push_back({cfg_.nodes[e.index].number, e.age_ms, e.payload});
  auto link = outgoing_link(out.target);
  if (!link) return;
  link->send_message(msg::encode(g));
  ++gossip_sent_;
}

std::shared_ptr<PeerLink> Daemon::outgoing_link(uint32_t index) {
  auto& slot = outgoing_[index];
  if (slot && !slot->closed()) return slot;
  const NodeSpec& spec = cfg_.nodes[index];
  socklen_t len = 0;
  auto addr = parse_sockaddr(spec.address, spec.port, &len);
  int fd = ::socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    log_warn("socket for {}: {}", names_[index], std::strerror(errno));
    return nullptr;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  // Peers check that a connection comes from the map's address of the node it
  // claims to be, so dial from ours.
  const NodeSpec& me = *cfg_.find(self_);
  socklen_t my_len = 0;
  auto mine = parse_sockaddr(me.address, 0, &my_len);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&*mine), my_len) != 0)
    log_warn("binding the link to {} to {}: {}", names_[index], me.address, std::strerror(errno));
  auto link = std::make_shared<PeerLink>(*this, FileDesc(fd), fmt::format("{}:{}", spec.address, spec.port),
                                         Role::client, spec.number);
  slot = link;
  auto a = *addr;
  loop_.connect(fd, reinterpret_cast<sockaddr*>(&a), len, cfg_.settings.connect_timeout_ms, [this, link, index](int res) {
    if (link->closed()) return;
    if (res < 0) {
      log_debug("cannot reach {}: {}", names_[index], res == -ECANCELED ? "timed out" : std::strerror(-res));
      link->close("connect failed");
      return;
    }
    link->start();
  });
  return link;
}

void Daemon::on_link_closed(FramedLink* link) {
  for (auto it = links_.begin(); it != links_.end(); ++it)
    if (it->get() == link) {
      links_.erase(it);
      break;
    }
}

void Daemon::note_refusal(const std::string& remote, const std::string& why) {
  ++refused_;
  log_warn("refused {}: {}", remote, why);
}

void Daemon::on_gossip(PeerLink& from, const msg::Gossip& g) {
  if (g.entries.front().node != from.peer_node()) {
    from.close("gossip not led by the sender's own entry");
    note_refusal(from.remote(), fmt::format("gossip from node {} led by node {}'s entry", from.peer_node(), g.entries.front().node));
    return;
  }
  std::vector<gossip::WindowEntry<msg::LoadInfo>> entries;
  entries.reserve(g.entries.size());
  for (auto& e : g.entries) {
    int i = cfg_.index_of(e.node);
    if (i < 0) continue;  // a node we do not know (maps briefly differ during a rollout)
    entries.push_back({static_cast<uint32_t>(i), e.age_ms, e.info});
  }
  table_.receive(entries, now_ms());
  ++gossip_received_;
}

msg::StatusReply Daemon::status() {
  msg::StatusReply r;
  int64_t now = now_ms();
  r.self = self_;
  r.hostname = hostname_;
  r.step_ms = cfg_.settings.gossip_step_ms;
  r.window = cfg_.settings.gossip_window;
  r.down_after_steps = cfg_.settings.down_after_steps;
  r.uptime_ms = static_cast<uint64_t>(now - started_ms_);
  r.gossip_sent = gossip_sent_;
  r.gossip_received = gossip_received_;
  r.rejected = refused_;
  r.policy = policy_summary();
  for (uint32_t i = 0; i < cfg_.nodes.size(); ++i) {
    msg::NodeStatus n;
    n.node = cfg_.nodes[i].number;
    n.address = cfg_.nodes[i].address;
    n.tags = cfg_.nodes[i].tags;
    n.self = i == self_index_;
    n.known = table_.known(i);
    if (n.known) {
      n.age_ms = static_cast<uint64_t>(std::max<int64_t>(0, table_.age_ms(i, now)));
      n.up = table_.up(i, now);
      n.info = table_.payload(i);
    }
    r.nodes.push_back(std::move(n));
  }
  return r;
}

msg::PsReply Daemon::ps() {
  msg::PsReply r;
  r.self = self_;
  if (!jobs_) return r;
  for (auto& p : jobs_->processes()) {
    msg::ProcInfo i;
    i.pid = p.pid;
    i.job = p.job;
    i.home = self_;
    i.where = self_;
    i.state = "home";
    i.command = p.command;
    const placement::Placement& want = placements_.of_job(p.job);
    i.placement = want.flags();
    // Where its agent says it is (written after every move).
    std::ifstream where(agent_dir() / fmt::format("{}.where", p.pid));
    uint32_t node = 0;
    bool away = where >> node && node != 0 && node != self_;
    i.reason = placements_.reason(p.job, p.pid, away).text();
    if (away) {
      i.where = node;
      i.state = "away";
      std::string command;
      std::getline(where, command);  // the rest of the first line
      if (std::getline(where, command) && !command.empty()) i.command = command;
    } else if (auto can = image::migratable(p.pid); !can) {
      i.detail = "cannot move: " + can.reason;
    } else if (!want.flags().empty()) {
      i.detail = "mosrun " + want.flags();
    }
    i.rss = p.rss;
    r.procs.push_back(std::move(i));
  }
  return r;
}

msg::RegisterJobReply Daemon::register_job(pid_t pid, uid_t uid, const msg::RegisterJob& req) {
  if (!jobs_) throw UserError(jobs_error_);
  if (pid <= 0) throw UserError("cannot tell which process asked (no SO_PEERCRED pid)");
  const placement::Placement& want = req.placement;
  msg::RegisterJobReply r;
  if (!want.tag.empty()) {
    bool anywhere = false;
    for (const auto& n : cfg_.nodes) anywhere = anywhere || std::find(n.tags.begin(), n.tags.end(), want.tag) != n.tags.end();
    if (!anywhere) throw UserError(fmt::format("no node of the cluster map has tag {}", want.tag));
  }
  auto views = node_views();
  const placement::NodeView& here = views[self_index_];
  std::optional<std::pair<uint32_t, placement::Reason>> start;
  if (want.start_node != 0) {
    if (!cfg_.find(want.start_node)) throw UserError(fmt::format("node {} is not in the cluster map", want.start_node));
    placement::NodeView there = views[static_cast<size_t>(cfg_.index_of(want.start_node))];
    there.up = true;  // as for migrate: the connection tells
    if (std::string no = placement::unfit(want, there, 0); !no.empty())
      throw UserError(fmt::format("cannot start at node {}: {}", want.start_node, no));
    if (want.start_node != self_) start = {want.start_node, {placement::Why::user, {}}};
  } else if (want.start_best || !placement::unfit(want, here, 0).empty()) {
    // -b, or a home that lacks the job's tag or memory: the best node that
    // fits, the job not being counted anywhere yet.
    std::string none;
    auto best = placement::choose_best(want, views, 0, &none);
    if (!best) throw UserError(fmt::format("cannot start the job: {}", none));
    if (*best != self_)
      start = {*best, want.tag.empty() ? placement::Reason{placement::Why::best, {}}
                                       : placement::Reason{placement::Why::tag, want.tag}};
  }
  r.job = jobs_->add(pid);
  if (start) {
    r.start_target = std::to_string(start->first);
    placements_.starting(pid, start->first, start->second);
  }
  placements_.set_job(r.job, want);
  log_info("job {}: pid {} uid {}{}{}: {}", r.job, pid, uid, want.flags().empty() ? "" : " ", want.flags(), req.command);
  return r;
}

int Daemon::run() {
  started_ms_ = now_ms();
  watch_signals();
  listen_peers();
  listen_migration();
  sample();
  listen_control();
  {
    std::ofstream pidfile(opts_.state_dir / "mosd.pid");
    pidfile << getpid() << "\n";
  }
  log_info("node {} ({}) serving {}:{}, {} nodes in the map, gossip every {} ms, window {}", self_, hostname_,
           cfg_.find(self_)->address, cfg_.find(self_)->port, cfg_.nodes.size(), cfg_.settings.gossip_step_ms,
           cfg_.settings.gossip_window);
  if (std::error_code ec; std::filesystem::exists(stay_path(), ec)) {
    no_guests_ = true;
    log_info("node {} takes no guests: mosctl stay was given before this mosd started ({}; mosctl nostay clears it)",
             self_, stay_path().string());
  }
  schedule_sampling();
  schedule_gossip();
  policy::Settings ps = cfg_.settings.policy;
  // 0: three time constants of this cluster's load smoothing, after which
  // a node's figure shows ~95% of a move (2.6 s with samples every 250 ms).
  if (ps.settle_ms == 0)
    ps.settle_ms = static_cast<uint32_t>(3 * LoadMeter::time_constant_ms(cfg_.settings.load_sample_ms));
  engine_.emplace(ps);
  schedule_policy();
  loop_.run();
  ::unlink((opts_.state_dir / "mosd.sock").c_str());
  ::unlink((opts_.state_dir / "mosd.pid").c_str());
  return 0;
}

}  // namespace roam::mosd
