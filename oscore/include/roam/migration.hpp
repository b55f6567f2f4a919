// Moving a running process to another node and serving it there
// (DESIGN.md "The split"): the two agents at the ends of one migration
// connection (mig_messages.hpp).
//
// HomeAgent, at the process's home node, freezes the process with ptrace,
// sends its image, and keeps the frozen original as the deputy: same pid,
// file descriptors, cwd, credentials, parent; its memory released. It runs
// the calls the body forwards in the deputy's context, relays signals sent
// to the home pid, replays the body's death so the parent's wait() sees it,
// and restores the body into the deputy itself when it comes home.
//
// BodyAgent, at the remote node, restores the image into a stub in a PID
// namespace of its own (where the body's pid is the home pid, so getpid,
// raise and kill(self) are true without a round trip) and a time namespace
// whose offsets continue the home's CLOCK_MONOTONIC and CLOCK_BOOTTIME. The
// body runs as nobody, with no_new_privs, no file descriptors, under the body
// seccomp filter; the agent serves the notifications: local calls continue,
// identity is answered from the offer, forwarded calls travel home with the
// memory they read and write (syscall_regions.hpp), and anything the remote
// side cannot serve (fork, execve, MAP_SHARED, a mmap of a device or of a
// file over 64 MiB this node does not have, an ioctl of
// unknown layout...) sends the process home, where it re-issues the call
// natively.
//
// Either agent ends the other's side when the connection breaks or stays
// silent longer than the link timeout: the body is killed, the deputy ends
// with SIGKILL. A body never runs on without its deputy.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "roam/channel.hpp"
#include "roam/usage.hpp"

namespace roam::mig {

struct MoveStats {
  std::chrono::microseconds prepare{};    // plan sent until the remote had its stub ready (not frozen)
  uint64_t populated_bytes = 0;           // memory the remote faulted in before the freeze
  std::chrono::microseconds freeze{};    // from the freeze until the body ran
  std::chrono::microseconds capture{};
  std::chrono::microseconds transfer{};  // sending the image until the remote said ready
  uint64_t image_bytes = 0;
  uint64_t page_bytes = 0;
  uint64_t restore_us = 0;  // as the remote measured it
  long deputy_rss_kib = -1;  // the deputy's resident size once its memory was released
};

struct HomeOptions {
  uint32_t self_node = 0;
  std::chrono::milliseconds link_timeout{10000};
  // While the body is away, about once a second: the number of its calls
  // served here so far (the home's policies read the rate: I/O homing) and
  // the share of the last second the body ran or waited to run where it is
  // (-1 while not known yet).
  std::function<void(uint64_t calls_served, double body_demand)> on_tick;
  // Usage of earlier trips away that the process's own figures at home
  // lack (HomeOutcome::away_usage of the last one): sent with the move.
  CpuUsage carried;
  // A coming home (or moving on) failed, and the body runs on where it is
  // (the deputy is released again): one line, what failed and why. serve()
  // goes on serving it.
  std::function<void(const std::string& why)> on_home_failed;
  // The body moved on (move_on) and runs at `node`.
  std::function<void(uint32_t node, const MoveStats& stats)> on_moved_on;
  // Fault injection for tests, asked once per coming home (or move on) at
  // each point: true for "home-prepare" makes laying the deputy out fail
  // (the restore then goes without), for "home-restore" makes the restore
  // fail after the first run of pages, for "move-on" makes the link to the
  // next node fail after the first run relayed, for "move-on-slow" holds
  // the body's plan 3 s at home before it goes on to the next node
  // (roam-agent: the word in agents/PID.fault in mosd's state directory,
  // consumed).
  std::function<bool(std::string_view point)> fault;
};

struct HomeOutcome {
  enum class End { home, exited, deputy_died, link_lost, failed } end = End::failed;
  std::string message;   // one line: what happened
  int deputy_status = -1;  // when the deputy ended (replayed, or killed)
  std::map<std::string, unsigned> served;  // forwarded calls by name
  unsigned signals_forwarded = 0;
  std::vector<std::string> log;
  // Came home: what it used away (and on earlier trips) that the kernel's
  // figures for the process at home do not show.
  CpuUsage away_usage;
  // Came home: laying the deputy out before the freeze (0: not prepared),
  // and from the body's image arriving (GoingHome) until the deputy was
  // restored (the freeze, less the capture at the body's node).
  std::chrono::microseconds home_prepare{}, home_restore{};
};

class HomeAgent {
 public:
  HomeAgent(pid_t pid, HomeOptions options);
  ~HomeAgent();
  HomeAgent(const HomeAgent&) = delete;
  HomeAgent& operator=(const HomeAgent&) = delete;

  // Freezes and sends the process over `ch` (authenticated with the target).
  // Returns once the body runs there. Throws UserError with one line (the
  // process cannot move, the target refused it) or another exception; in
  // every case the process then runs on at home as before.
  MoveStats move_out(Channel ch);

  // Serves the body until it comes home (End::home: the process runs at home
  // again), ends (exited: the deputy replayed its death), or the link is
  // lost. `extra_fd` (or -1) is polled too; when it is readable `on_extra`
  // runs, and may call come_home().
  HomeOutcome serve(int extra_fd = -1, const std::function<void()>& on_extra = {});

  // Asks the body to come home; serve() returns once it is restored here.
  void come_home(const std::string& reason);
  // Asks the body to move on from its node to `node` over `ch` (dialed and
  // authenticated with it), its image relayed through here and nothing
  // restored here; serve() goes on serving it there (on_moved_on), or where
  // it was (on_home_failed). False when a move is already under way.
  bool move_on(uint32_t node, Channel ch, const std::string& reason);

  pid_t pid() const { return pid_; }

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
  pid_t pid_;
};

struct BodyOptions {
  uint32_t self_node = 0;
  bool namespaces = true;        // PID and time namespaces for the body
  bool drop_privileges = true;   // run the body as nobody
  std::chrono::milliseconds link_timeout{10000};
  // CPU features this node treats as absent (its cpu-lacks:NAME tags).
  std::vector<std::string> withheld_cpu_features;
  // Called once the body is restored, with its pid, before it runs.
  std::function<void(pid_t)> on_ready;
  // Non-empty: every process is refused with this reason (`mosctl stay`).
  std::string refuse;
  // Looked at while serving (at least every 20 ms, and when a signal
  // interrupts the wait): true sends the body home (`mosctl expel`). A
  // forwarded call waiting at home is cancelled and re-issued there.
  std::function<bool()> expelled;
};

struct BodyOutcome {
  enum class End { refused, exited, went_home, link_lost, failed } end = End::failed;
  std::string message;
  int body_status = -1;
  pid_t body = -1;
  std::map<std::string, unsigned> served;  // notified calls by name
  std::vector<std::string> log;
  std::vector<std::string> body_fds_after_setup;
};

// Receives a process over `ch` (the offer is its first frame), restores it,
// and serves it until it ends, goes home or loses its home. Never throws for
// what the peer sent or did: that is the outcome.
BodyOutcome serve_body(Channel ch, const BodyOptions& options);

}  // namespace roam::mig
