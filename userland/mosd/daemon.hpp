// mosd: the per-node daemon. One io_uring loop serves the peer links (gossip
// of load and free memory), the local control socket (the tools), and the
// periodic work (load sampling, gossip steps, job cgroup sweeping).
#pragma once

#include <deque>
#include <map>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "roam/config.hpp"
#include "roam/fd.hpp"
#include "roam/gossip.hpp"
#include "roam/home/jobs.hpp"
#include "roam/home/placements.hpp"
#include "roam/loop.hpp"
#include "roam/messages.hpp"
#include "roam/mig_messages.hpp"
#include "roam/placement.hpp"
#include "roam/policy.hpp"
#include "roam/secure_channel.hpp"
#include "roam/sysinfo.hpp"
#include "roam/wire.hpp"

namespace roam::mosd {

struct Options {
  std::filesystem::path config = "/etc/roam/cluster.conf";
  std::filesystem::path key = "/etc/roam/cluster.key";
  std::filesystem::path state_dir = "/run/roam";
  uint32_t node = 0;  // 0: find this node's number from its addresses
};

class Daemon;

// A byte stream on the loop carrying length-prefixed frames, with an output
// queue. PeerLink and ControlLink add what their frames mean.
class FramedLink : public std::enable_shared_from_this<FramedLink> {
 public:
  FramedLink(Daemon& d, FileDesc fd, std::string remote, size_t max_frame);
  virtual ~FramedLink() = default;
  void start();
  void send_frame(std::span<const std::byte> body);
  void close(const std::string& why);
  bool closed() const { return closed_; }
  const std::string& remote() const { return remote_; }

 protected:
  virtual void on_start() {}
  virtual void on_frame(std::vector<std::byte>& body) = 0;
  virtual void on_close(const std::string& why) = 0;
  Daemon& d_;
  FileDesc fd_;
  std::string remote_;

 private:
  void read_more();
  void flush();
  wire::FrameAssembler in_;
  std::vector<std::byte> rbuf_;
  std::deque<std::vector<std::byte>> out_;
  size_t out_off_ = 0;
  bool sending_ = false;
  bool closed_ = false;
};

class PeerLink final : public FramedLink {
 public:
  // expected_node: for outgoing links, the node we dialed; 0 for incoming.
  PeerLink(Daemon& d, FileDesc fd, std::string remote, Role role, uint32_t expected_node);
  // Queues a message; sent once the handshake is done (only the newest
  // `kMaxQueued` are kept while waiting).
  void send_message(const std::vector<std::byte>& body);
  bool ready() const { return state_ == State::ready; }
  uint32_t peer_node() const { return peer_node_; }

 private:
  static constexpr size_t kMaxQueued = 4;
  enum class State { hello, auth, ready };
  void on_start() override;
  void on_frame(std::vector<std::byte>& body) override;
  void on_close(const std::string& why) override;
  void refuse(const std::string& why);
  Role role_;
  uint32_t expected_node_;
  uint32_t peer_node_ = 0;
  Handshake hs_;
  State state_ = State::hello;
  std::deque<std::vector<std::byte>> waiting_;
};

class ControlLink final : public FramedLink {
 public:
  ControlLink(Daemon& d, FileDesc fd, pid_t peer_pid, uid_t peer_uid);

 private:
  void on_frame(std::vector<std::byte>& body) override;
  void on_close(const std::string&) override {}
  void reply_error(const std::string& message);
  pid_t peer_pid_;
  uid_t peer_uid_;
  bool greeted_ = false;
};

class Daemon {
 public:
  explicit Daemon(Options opts);
  int run();

  // Used by the links.
  Loop& loop() { return loop_; }
  const ClusterConfig& config() const { return cfg_; }
  const ClusterKey& key() const { return key_; }
  uint32_t self() const { return self_; }
  const std::string& name_of(uint32_t node) const;
  void on_gossip(PeerLink& from, const msg::Gossip& g);
  void on_link_closed(FramedLink* link);
  void note_refusal(const std::string& remote, const std::string& why);
  msg::StatusReply status();
  msg::PsReply ps();
  msg::GuestsReply guests();
  // Registers the job with its placement; says where it goes once it runs.
  msg::RegisterJobReply register_job(pid_t pid, uid_t uid, const msg::RegisterJob& req);
  // migrate PID TARGET: checks the request (and the job's placement),
  // starts the process's home agent if it has none, and says where that
  // agent listens.
  msg::MigrateReply migrate(const msg::MigrateRequest& req, uid_t peer_uid);
  // mosctl stay | nostay | expel.
  msg::NodeCommandReply node_command(const msg::NodeCommand& req, uid_t peer_uid);

  // For placement decisions (migrate best, mosrun -b, the policies): every
  // node of the map as this node knows it now; its own entry is marked self.
  std::vector<placement::NodeView> node_views();
  const home::Placements& placements() const { return placements_; }

 private:
  uint32_t find_self(uint32_t requested) const;
  void listen_peers();
  void accept_peer();
  void listen_migration();
  void accept_migration();
  enum class AgentKind { home, remote };
  pid_t spawn_agent(AgentKind kind, const std::vector<std::string>& args, int keep_fd);
  void reap_agents();
  std::filesystem::path agent_dir() const { return opts_.state_dir / "agents"; }
  // Exists while `mosctl stay` holds (across a restart of mosd).
  std::filesystem::path stay_path() const { return opts_.state_dir / "stay"; }
  // Remote agents write guests/AGENT_PID once their body runs.
  std::filesystem::path guest_dir() const { return opts_.state_dir / "guests"; }
  bool is_away(pid_t pid) const;
  // Where a process of this node runs (its agent's .where; this node when
  // it has none) and whether it has an agent at all (away, or moving).
  uint32_t current_node(pid_t pid, bool* has_agent = nullptr) const;
  uint32_t count_away() const;
  // The node a target names ("3", "node3"); 0 for this node. Throws UserError.
  uint32_t parse_node(const std::string& target) const;
  void listen_control();
  void accept_control();
  void watch_signals();
  void on_signal();
  void schedule_gossip();
  void gossip_step();
  void schedule_sampling();
  void sample();
  std::shared_ptr<PeerLink> outgoing_link(uint32_t index);
  int64_t now_ms() const;
  // The automatic policies (policy_step.cpp).
  void schedule_policy();
  void policy_step();
  void read_move_rate();
  bool start_policy_move(const policy::Decision& d, int64_t now);

 public:
  // One line: the policies' settings and the moves they made.
  std::string policy_summary() const;

 private:
  // What the policy step remembers of a process between steps.
  struct Tracked {
    int64_t at_ms = 0;          // when last measured
    uint64_t sched_ns = 0;      // ran + waited to run, at home
    uint64_t calls = 0;         // read/write calls, at home
    uint32_t io_high = 0;       // steps in a row above the I/O threshold
    uint32_t node = 0;          // where it was
    int64_t last_move_ms = -1;  // when it last moved
    int64_t unmovable_until = 0;
  };
  static constexpr double kAssumedMoveRate = 200e6;  // bytes/s until a move was measured
  std::optional<policy::Engine> engine_;
  std::map<pid_t, Tracked> tracked_;
  double move_rate_ = 0;
  std::pair<uint64_t, uint64_t> last_move_seen_{};
  std::map<std::string, uint64_t> policy_moves_;

  Options opts_;
  ClusterConfig cfg_;
  ClusterKey key_;
  uint32_t self_ = 0;
  uint32_t self_index_ = 0;
  std::vector<std::string> names_;
  Loop loop_;
  gossip::Table<msg::LoadInfo> table_;
  LoadMeter meter_;
  std::optional<home::JobTracker> jobs_;
  std::string jobs_error_;
  FileDesc peer_listener_, control_listener_, migration_listener_, signal_fd_;
  std::map<pid_t, AgentKind> agents_;  // our children: home and remote migration agents
  home::Placements placements_;
  bool no_guests_ = false;  // mosctl stay
  uint32_t guest_count_ = 0;
  std::vector<std::shared_ptr<PeerLink>> outgoing_;  // by node index
  std::set<std::shared_ptr<FramedLink>> links_;      // incoming peers and tools
  std::mt19937_64 rng_;
  int64_t started_ms_ = 0;
  uint64_t gossip_sent_ = 0, gossip_received_ = 0, refused_ = 0;
  uint32_t proc_count_ = 0;
  std::string hostname_;
};

}  // namespace roam::mosd
