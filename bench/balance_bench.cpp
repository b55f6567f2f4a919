// `make bench-balance` (issue 4, section 3): the automatic policies measured
// on real local clusters (mosctl cluster up), every number beside its
// reference measured in the same run:
//   - 8 CPU-bound jobs of known work (tests/workloads/cpu_work) started on
//     node1 of a 2-node cluster whose nodes are pinned to a CPU each: the
//     makespan with load balancing, without migration, and the ideal (total
//     work / nodes); target with balancing <= 1.15x ideal;
//   - the same on 4 nodes sharing the machine's 2 CPUs (--cpus-per-node 1
//     hands CPUs out round robin: nodes 1,3 get the first, 2,4 the second);
//   - memory ushering: 5 x 150 MiB jobs (tests/workloads/mem_pattern) started
//     one after another on node1 of a 2-node cluster with 512 MiB per node,
//     with ushering and without: OOM kills, verdicts, where each job ended.
// C++ rather than a shell script: it times concurrent jobs to the millisecond
// without a polling shell, reads mosps's JSON, and its clean-up (cluster down,
// children killed by PID) lives in destructors that run on every error path,
// also after SIGINT, SIGTERM or SIGHUP.
//
// Exit status: 0 when every job gave a right result, whether or not a target
// was met; 1 when a job gave a wrong result (FAIL, a bad checksum) or a CPU
// job did not pass; 2 when the bench could not run (a cluster did not come
// up); 130 when interrupted.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "roam/error.hpp"
#include "roam/local_cluster.hpp"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using Strings = std::vector<std::string>;

// ---- The policy settings (issue 4, section 1, written in mosd by the other
// half of the issue). A mosd that does not know them refuses the cluster
// config, so `cluster up` fails with them until the policies are merged:
// --no-policy-settings leaves them all out (then "with" equals "without").
const Strings kBalanceOn = {"policy.step_ms=250"};
const Strings kBalanceOff = {"policy.balance=false"};
// mem_pattern keeps rewriting its memory, so it is CPU-bound too: with
// balancing on, 5 of them on node1 would be spread for their load alone and
// "without ushering" would measure balancing. Both memory runs turn it off.
const Strings kUsherOn = {"policy.usher_free_mb=160", "policy.step_ms=250", "policy.balance=false"};
const Strings kUsherOff = {"policy.usher=false", "policy.balance=false"};

constexpr const char* kDefaultDir = "/run/roam-bench-balance";
constexpr double kTarget2Nodes = 1.15;  // balanced makespan / ideal, issue 4
constexpr int kMemPerNodeMb = 512;
constexpr int kMemJobs = 5;
constexpr int kMemJobMb = 150;

volatile sig_atomic_t g_signal = 0;
void on_signal(int sig) { g_signal = sig; }

struct Interrupted : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void check_interrupt() {
  if (g_signal) throw Interrupted(fmt::format("interrupted by signal {}", static_cast<int>(g_signal)));
}

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Sleeps in short steps so that a signal ends the bench promptly.
void nap(double seconds) {
  auto end = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  while (Clock::now() < end) {
    check_interrupt();
    std::this_thread::sleep_for(std::min<Clock::duration>(std::chrono::milliseconds(10), end - Clock::now()));
  }
}

std::string read_text(const fs::path& file) {
  std::ifstream in(file);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string last_line(const std::string& text) {
  std::string line, last;
  std::istringstream in(text);
  while (std::getline(in, line))
    if (!line.empty()) last = line;
  return last;
}

// A child with stdin from /dev/null and stdout and stderr into a file, waited
// for without blocking. Destroying an unfinished one kills it (by its PID,
// which cannot be reused before we reap it) and reaps it.
class Child {
 public:
  Child(const Strings& argv, const fs::path& out) : out_(out) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    Strings copy = argv;
    std::vector<char*> args;
    for (auto& a : copy) args.push_back(a.data());
    args.push_back(nullptr);
    started_ = Clock::now();
    int rc = posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) throw roam::SysError(fmt::format("run {}", argv[0]), rc);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() {
    if (!done_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  // True once the child has exited.
  bool poll() {
    if (done_) return true;
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      done_ = true;
      ended_ = Clock::now();
      code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    return done_;
  }
  // Waits for the exit (at most `timeout_s`; then throws) and returns its code.
  int wait(double timeout_s, const std::string& what) {
    auto start = Clock::now();
    while (!poll()) {
      if (seconds_since(start) > timeout_s)
        throw roam::UserError(fmt::format("{} did not end within {:.0f} s", what, timeout_s));
      nap(0.005);
    }
    return code_;
  }
  // Like a shell's $?: the exit code, or 128+N after signal N.
  int code() const { return code_; }
  bool done() const { return done_; }
  double runtime() const { return std::chrono::duration<double>(ended_ - started_).count(); }
  Clock::time_point ended() const { return ended_; }
  std::string output() const { return read_text(out_); }

 private:
  fs::path out_;
  pid_t pid_ = -1;
  bool done_ = false;
  int code_ = -1;
  Clock::time_point started_, ended_;
};

// What the bench needs to find: the tools and workloads of the build tree
// this program belongs to (BUILD/bench/balance_bench), and a scratch folder.
struct Env {
  fs::path bin, workloads, dir, scratch;
  fs::path keep_logs;  // non-empty: each cluster's mosd logs are copied here before it goes down
  int serial = 0;

  fs::path next_file(const std::string& stem) { return scratch / fmt::format("{:03}-{}.out", ++serial, stem); }
  std::string mosctl() const { return (bin / "mosctl").string(); }

  // Runs a command to its end; returns its code and output.
  std::pair<int, std::string> run(const Strings& argv, double timeout_s = 60) {
    Child c(argv, next_file(fs::path(argv[0]).filename().string()));
    int code = c.wait(timeout_s, argv[0]);
    return {code, c.output()};
  }
  Strings on_node(int node, Strings argv) const {
    Strings out = {mosctl(), "cluster", "exec", std::to_string(node), "--"};
    out.insert(out.end(), argv.begin(), argv.end());
    return out;
  }
};

// Removes the scratch folder whatever happens.
struct ScratchDir {
  fs::path path;
  ScratchDir() {
    std::string tmpl = (fs::temp_directory_path() / "roam-bench-balance.XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw roam::SysError("mkdtemp", errno);
    path = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// A local cluster for one measurement; down again when it goes out of scope,
// on errors and signals too.
class Cluster {
 public:
  Cluster(Env& env, int nodes, const Strings& flags, const Strings& settings) : env_(env) {
    take_down();  // a cluster left in our directory by a bench that was killed
    Strings argv = {env.mosctl(), "cluster", "up", "-n", std::to_string(nodes)};
    argv.insert(argv.end(), flags.begin(), flags.end());
    for (const auto& s : settings) {
      argv.push_back("--set");
      argv.push_back(s);
    }
    std::pair<int, std::string> result;
    try {
      result = env.run(argv, 120);
    } catch (...) {
      take_down();
      throw;
    }
    auto& [code, out] = result;
    if (code == 0) return;
    // One line: what mosctl said or, when a mosd refused a setting (a
    // policy.* key it does not know), that mosd's line, read before down
    // removes the logs.
    std::string refused;
    for (int i = 1; i <= nodes && refused.empty(); ++i) {
      std::istringstream log(read_text(env.dir / fmt::format("node{}", i) / "mosd.log"));
      for (std::string line; std::getline(log, line);)
        if (line.find("unknown setting") != std::string::npos) refused = fmt::format("node{}'s {}", i, line);
    }
    std::string msg = fmt::format("cannot bring up a cluster (mosctl cluster up -n {}{}): {}", nodes,
                                  settings.empty() ? "" : " --set " + fmt::format("{}", fmt::join(settings, " --set ")),
                                  refused.empty() ? last_line(out) : refused);
    if (!refused.empty())
      msg += " -- this mosd lacks the policies (not merged yet?): run with --no-policy-settings "
             "(make bench-balance BENCH_BALANCE_FLAGS=--no-policy-settings)";
    take_down();
    throw roam::UserError(msg);
  }
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;
  ~Cluster() { take_down(); }

  // Waits until node1 has heard from every node (its gossip view is whole),
  // as on a cluster that has been running: jobs started before that would
  // measure the cluster's start-up (up to a gossip step or two), not the
  // policies. Gives up after `timeout_s` and says so; the bench goes on.
  void wait_until_node1_sees_all(int nodes, double timeout_s = 20) {
    auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
    for (;;) {
      auto [code, out] = env_.run(env_.on_node(1, {(env_.bin / "mosmon").string(), "--once", "--json"}), 10);
      int seen = 0;
      try {
        if (code == 0) {
          // Kept in a variable: a range-for over a member of the temporary
          // parse() returns would read freed memory (before C++23).
          nlohmann::json status = nlohmann::json::parse(out);
          for (const auto& n : status.at("nodes")) seen += n.value("known", false) && n.value("up", false);
        }
      } catch (const nlohmann::json::exception&) {
      }
      if (seen >= nodes) return;
      if (Clock::now() >= deadline) {
        std::printf("  (node1 saw only %d of %d nodes after %.0f s; starting anyway)\n", seen, nodes, timeout_s);
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }

  nlohmann::json status() {
    auto [code, out] = env_.run({env_.mosctl(), "cluster", "status", "--json"});
    if (code != 0) throw roam::UserError(fmt::format("mosctl cluster status failed: {}", last_line(out)));
    return nlohmann::json::parse(out);
  }

 private:
  // Blocking and signal-proof: it runs while unwinding from a signal.
  void take_down() {
    if (!env_.keep_logs.empty() && fs::exists(env_.dir)) {
      std::error_code ec;
      fs::path to = env_.keep_logs / fmt::format("cluster-{:03}", ++env_.serial);
      for (int i = 1; fs::exists(env_.dir / fmt::format("node{}", i), ec); ++i) {
        fs::create_directories(to, ec);
        fs::copy_file(env_.dir / fmt::format("node{}", i) / "mosd.log", to / fmt::format("node{}-mosd.log", i),
                      fs::copy_options::overwrite_existing, ec);
      }
    }
    pid_t pid = -1;
    std::string m = env_.mosctl();
    char* argv[] = {m.data(), const_cast<char*>("cluster"), const_cast<char*>("down"), nullptr};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    if (posix_spawn(&pid, argv[0], &fa, nullptr, argv, environ) == 0) {
      while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
    posix_spawn_file_actions_destroy(&fa);
  }

  Env& env_;
};

// The rest of the first line of `out` that starts with `word`.
std::optional<std::string> line_starting(const std::string& out, const std::string& word) {
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(word, 0) == 0) return line.substr(word.size());
  return std::nullopt;
}

std::string load_average() {
  std::istringstream in(read_text("/proc/loadavg"));
  std::string one;
  in >> one;
  return one;
}

// pid -> node where it runs, from `mosps --json`; nullopt when unreadable.
std::optional<std::map<int, int>> parse_where(const std::string& mosps_output) {
  std::map<int, int> out;
  try {
    for (const auto& p : nlohmann::json::parse(mosps_output)) out[p.at("pid").get<int>()] = p.at("where").get<int>();
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
  return out;
}

// Asks node1's mosps, in the background and once per interval, where its
// processes run: what the bench reports of where jobs went. Call poll() often.
class WhereSampler {
 public:
  WhereSampler(Env& env, double interval_s) : env_(env), interval_(interval_s), next_(Clock::now()) {}

  void poll() {
    if (mosps_ && mosps_->poll()) {
      if (auto where = parse_where(mosps_->output())) {
        int away = 0;
        for (auto [pid, node] : *where) {
          away += node != 1;
          nodes_seen_.insert(node);
          last_[pid] = node;
        }
        max_away_ = std::max(max_away_, away);
      }
      mosps_.reset();
    }
    if (!mosps_ && Clock::now() >= next_) {
      mosps_ = std::make_unique<Child>(env_.on_node(1, {(env_.bin / "mosps").string(), "--json"}), env_.next_file("mosps"));
      next_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(interval_));
    }
  }
  // Node where pid was last seen, or 0.
  int last_seen(int pid) const { return last_.count(pid) ? last_.at(pid) : 0; }
  int max_away() const { return max_away_; }
  const std::set<int>& nodes_seen() const { return nodes_seen_; }

 private:
  Env& env_;
  double interval_;
  Clock::time_point next_;
  std::unique_ptr<Child> mosps_;
  std::map<int, int> last_;
  std::set<int> nodes_seen_;
  int max_away_ = 0;
};

// Naps while sampling.
void nap_sampling(WhereSampler& sampler, double seconds) {
  auto end = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  while (Clock::now() < end) {
    sampler.poll();
    nap(0.005);
  }
}

// ---- CPU-bound jobs --------------------------------------------------------

struct CpuRun {
  double makespan = 0;
  int passed = 0;
  int wrong = 0;   // printed FAIL: a wrong result
  int other = 0;   // no verdict (killed, mosrun refused...)
  int max_away = 0;  // most jobs mosps showed away from node1 at once
  std::set<int> nodes_used;
  std::string first_problem;
};

// Starts `jobs` cpu_work jobs on node1 at once and waits for all of them;
// meanwhile asks node1's mosps once a second where they run.
CpuRun run_cpu_jobs(Env& env, int jobs, uint64_t units) {
  CpuRun r;
  std::vector<std::unique_ptr<Child>> children;
  auto start = Clock::now();
  for (int i = 0; i < jobs; ++i)
    children.push_back(std::make_unique<Child>(
        env.on_node(1, {(env.bin / "mosrun").string(), (env.workloads / "cpu_work").string(), std::to_string(units)}),
        env.next_file(fmt::format("cpu-job{}", i + 1))));
  WhereSampler sampler(env, 1.0);
  for (;;) {
    bool all = true;
    for (auto& c : children) all = c->poll() && all;
    if (all) break;
    sampler.poll();
    if (seconds_since(start) > 600) throw roam::UserError("the CPU jobs did not end within 600 s");
    nap(0.002);
  }
  Clock::time_point last = start;
  for (auto& c : children) {
    last = std::max(last, c->ended());
    std::string out = c->output();
    if (c->code() == 0 && out.find("\nPASS") != std::string::npos) {
      ++r.passed;
    } else {
      (out.find("FAIL") != std::string::npos ? r.wrong : r.other)++;
      if (r.first_problem.empty())
        r.first_problem = fmt::format("exit {}: {}", c->code(), last_line(out));
    }
  }
  r.makespan = std::chrono::duration<double>(last - start).count();
  r.max_away = sampler.max_away();
  r.nodes_used = sampler.nodes_seen();
  return r;
}

struct OneJob {
  double wall = 0;  // start to exit, as the makespan counts it
  double cpu = 0;   // CPU time of the work, as cpu_work measured it: not inflated by other load on the CPU
};

// One cpu_work job alone on node1; throws when it does not pass.
OneJob one_job(Env& env, uint64_t units) {
  Child c(env.on_node(1, {(env.bin / "mosrun").string(), (env.workloads / "cpu_work").string(), std::to_string(units)}),
          env.next_file("calibrate"));
  int code = c.wait(300, "the calibration job");
  if (code != 0 || c.output().find("PASS") == std::string::npos)
    throw roam::UserError(fmt::format("the calibration job (cpu_work {}) failed: exit {}: {}", units, code,
                                      last_line(c.output())));
  double wall_s = 0, cpu_s = 0;
  auto elapsed = line_starting(c.output(), "elapsed ");
  if (!elapsed || std::sscanf(elapsed->c_str(), "%lf cpu %lf", &wall_s, &cpu_s) != 2 || cpu_s <= 0)
    throw roam::UserError(fmt::format("cpu_work printed no 'elapsed S cpu S' line: {}", last_line(c.output())));
  return {c.runtime(), cpu_s};
}

struct Totals {
  bool wrong = false;  // some job gave a wrong result or did not pass
};

void print_cpu_line(const char* label, const CpuRun& r, double ideal, int jobs, const std::string& target) {
  std::printf("  %-34s %8.2f s  %6.2fx  %-16s %d/%d PASS, at most %d away from node1 (nodes seen:", label, r.makespan,
              r.makespan / ideal, target.c_str(), r.passed, jobs, r.max_away);
  for (int n : r.nodes_used) std::printf(" %d", n);
  std::printf(")\n");
  if (!r.first_problem.empty()) std::printf("    a job did not pass: %s\n", r.first_problem.c_str());
  std::fflush(stdout);
}

struct CpuCase {
  int nodes;
  Strings flags;
};

// One cluster size: without migration (and, on the first case, the
// calibration), then with balancing; each on a fresh cluster.
void cpu_case(Env& env, const CpuCase& c, int jobs, uint64_t& units, double& w, double& w_wall, bool policy_settings,
              double target_s, Totals& totals) {
  CpuRun without, with;
  {
    Cluster cluster(env, c.nodes, c.flags, policy_settings ? kBalanceOff : Strings{});
    cluster.wait_until_node1_sees_all(c.nodes);
    if (units == 0) {
      // Calibrate: a probe of about 0.5 s (its CPU time, without the
      // start-up), scaled to the target.
      constexpr uint64_t kProbeUnits = 100;
      double probe = one_job(env, kProbeUnits).cpu;
      units = std::max<uint64_t>(1, static_cast<uint64_t>(std::llround(kProbeUnits * target_s / probe)));
    }
    if (w == 0) {
      OneJob one = one_job(env, units);
      w = one.cpu;
      w_wall = one.wall;
    }
    if (c.nodes == 4) {
      auto st = cluster.status();
      std::printf("4 nodes on this machine's CPUs:");
      for (const auto& n : st.at("nodes"))
        std::printf(" node%d=CPU %s", n.at("node").get<int>(),
                    n.at("cpus").is_null() ? "any" : n.at("cpus").get<std::string>().c_str());
      std::printf("\n");
    }
    without = run_cpu_jobs(env, jobs, units);
  }
  {
    Cluster cluster(env, c.nodes, c.flags, policy_settings ? kBalanceOn : Strings{});
    cluster.wait_until_node1_sees_all(c.nodes);
    with = run_cpu_jobs(env, jobs, units);
  }
  double total = jobs * w;
  if (c.nodes == 2) {
    double ideal = total / 2;
    std::printf("2 nodes, 1 CPU each (%s)\n", fmt::format("{}", fmt::join(c.flags, " ")).c_str());
    std::printf("  %-34s %8.2f s\n", fmt::format("ideal = {} x W / 2", jobs).c_str(), ideal);
    print_cpu_line("without migration", without, ideal, jobs, "");
    bool met = with.makespan <= kTarget2Nodes * ideal;
    print_cpu_line("with balancing", with, ideal, jobs, fmt::format("<= {:.2f}x {}", kTarget2Nodes, met ? "met" : "NOT met"));
  } else {
    double ideal_nodes = total / c.nodes, ideal_cpus = total / 2;
    std::printf("%d nodes on 2 CPUs (%s)\n", c.nodes,
                c.flags.empty() ? "not pinned: --cpus-per-node could not share CPUs here"
                                : fmt::format("{}", fmt::join(c.flags, " ")).c_str());
    std::printf("  %-34s %8.2f s\n", fmt::format("total / {} nodes = {} x W / {}", c.nodes, jobs, c.nodes).c_str(),
                ideal_nodes);
    std::printf("  %-34s %8.2f s   <- the real bound, ratios below are to it\n",
                fmt::format("total / 2 CPUs = {} x W / 2", jobs).c_str(), ideal_cpus);
    std::printf("  (the %d nodes share 2 physical CPUs, so no placement can finish before total work / 2 CPUs)\n",
                c.nodes);
    print_cpu_line("without migration", without, ideal_cpus, jobs, "");
    print_cpu_line("with balancing", with, ideal_cpus, jobs, "");
  }
  std::fflush(stdout);
  if (without.passed != jobs || with.passed != jobs) totals.wrong = true;
}

// ---- Memory ushering -------------------------------------------------------

struct MemRun {
  int oom_killed = 0, passed = 0, wrong = 0, other = 0;
  std::vector<std::string> fates;  // per job: "node2 PASS", "node1 OOM-killed"...
};

MemRun run_mem_jobs(Env& env, double settle_s) {
  MemRun r;
  std::vector<std::unique_ptr<Child>> children;
  std::vector<int> pids(kMemJobs, 0);
  WhereSampler sampler(env, 0.25);  // where a job was before the OOM killer took it
  for (int i = 0; i < kMemJobs; ++i) {
    children.push_back(std::make_unique<Child>(
        env.on_node(1, {(env.bin / "mosrun").string(), (env.workloads / "mem_pattern").string(),
                        std::to_string(kMemJobMb)}),
        env.next_file(fmt::format("mem-job{}", i + 1))));
    // Each after the previous one is READY (or dead), then a second apart.
    auto start = Clock::now();
    Child& c = *children.back();
    std::optional<std::string> ready;
    while (!(ready = line_starting(c.output(), "READY ")) && !c.poll()) {
      if (seconds_since(start) > 120) throw roam::UserError(fmt::format("mem_pattern job {} never got ready", i + 1));
      sampler.poll();
      nap(0.01);
    }
    if (ready) pids[static_cast<size_t>(i)] = std::atoi(ready->c_str());
    nap_sampling(sampler, 1.0);
  }
  nap_sampling(sampler, settle_s);
  auto [code, out] = env.run(env.on_node(1, {(env.bin / "mosps").string(), "--json"}));
  auto where = code == 0 ? parse_where(out) : std::nullopt;
  std::vector<std::string> place(kMemJobs, "?");
  Strings kill = {"kill", "-USR1"};
  for (int i = 0; i < kMemJobs; ++i) {
    auto& c = *children[static_cast<size_t>(i)];
    int pid = pids[static_cast<size_t>(i)];
    if (c.poll()) {  // ended already: where it was last seen (a job killed before READY never left node1)
      place[static_cast<size_t>(i)] = fmt::format("node{}", pid > 0 && sampler.last_seen(pid) ? sampler.last_seen(pid) : 1);
      continue;
    }
    if (where && where->count(pid)) place[static_cast<size_t>(i)] = fmt::format("node{}", where->at(pid));
    if (pid > 0) kill.push_back(std::to_string(pid));
  }
  if (kill.size() > 2) env.run(env.on_node(1, kill));
  for (int i = 0; i < kMemJobs; ++i) {
    auto& c = *children[static_cast<size_t>(i)];
    int code_i = c.wait(300, fmt::format("mem_pattern job {}", i + 1));
    std::string verdict;
    std::string text = c.output();
    if (code_i == 128 + SIGKILL) {
      ++r.oom_killed;
      verdict = "OOM-killed";
    } else if (code_i == 0 && text.find("\nPASS") != std::string::npos) {
      ++r.passed;
      verdict = "PASS";
    } else if (text.find("FAIL") != std::string::npos) {
      ++r.wrong;
      verdict = "FAIL (" + last_line(text) + ")";
    } else {
      ++r.other;
      verdict = fmt::format("exit {} ({})", code_i, last_line(text));
    }
    r.fates.push_back(fmt::format("job{} {} {}", i + 1, place[static_cast<size_t>(i)], verdict));
  }
  return r;
}

void memory_case(Env& env, bool policy_settings, double settle_s, Totals& totals) {
  Strings flags = {"--mem-per-node", std::to_string(kMemPerNodeMb)};
  std::printf("memory ushering: 2 nodes with %d MiB each; %d jobs of mem_pattern %d MiB started on node1, each %s\n",
              kMemPerNodeMb, kMemJobs, kMemJobMb, "after the previous one is READY, 1 s apart");
  if (policy_settings)
    std::printf("  (load balancing off in both runs: the jobs are CPU-bound too, and only ushering should move them)\n");
  std::printf("  %-18s %10s %5s %5s %6s  %s\n", "run", "OOM-killed", "PASS", "FAIL", "other",
              "each job: where it was at the end (or last seen, if it died), its verdict");
  std::fflush(stdout);
  for (bool usher : {true, false}) {
    MemRun r;
    {
      Cluster cluster(env, 2, flags, policy_settings ? (usher ? kUsherOn : kUsherOff) : Strings{});
      cluster.wait_until_node1_sees_all(2);
      r = run_mem_jobs(env, settle_s);
    }
    std::printf("  %-18s %10d %5d %5d %6d  %s\n", usher ? "with ushering" : "without ushering", r.oom_killed, r.passed,
                r.wrong, r.other, fmt::format("{}", fmt::join(r.fates, ", ")).c_str());
    std::fflush(stdout);
    if (r.wrong > 0) totals.wrong = true;
  }
  std::printf("  (without ushering, %d x %d MiB on a %d MiB node is expected to lose jobs to the OOM killer)\n", kMemJobs,
              kMemJobMb, kMemPerNodeMb);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"roam balancing benchmark: makespan of CPU-bound jobs with and without load balancing, memory ushering"};
  std::string dir = kDefaultDir;
  int jobs = 8;
  double target_s = 2.5, settle_s = 4;
  uint64_t units = 0;
  bool no_policy = false, skip_cpu = false, skip_four = false, skip_memory = false;
  app.add_option("--dir", dir, "the benchmark clusters' directory (its own: never a test's or the demo's)")
      ->capture_default_str();
  app.add_option("--jobs", jobs, "CPU-bound jobs started on node1")->capture_default_str()->check(CLI::Range(1, 64));
  app.add_option("--seconds", target_s, "calibrate one job to take this long alone on one node's CPU")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 60.0));
  app.add_option("--units", units, "work units per job (skips the calibration)");
  app.add_option("--settle", settle_s, "seconds the memory jobs run after the last started, before the verdicts")
      ->capture_default_str();
  app.add_flag("--no-policy-settings", no_policy,
               "leave out the policy.* settings (for a mosd without the policies: 'with' then equals 'without')");
  app.add_flag("--skip-cpu", skip_cpu, "skip the CPU-bound cases");
  app.add_flag("--skip-4-nodes", skip_four, "skip the 4-node case");
  app.add_flag("--skip-memory", skip_memory, "skip the memory ushering case");
  std::string keep_logs;
  app.add_option("--keep-logs", keep_logs, "copy every cluster's mosd logs into this directory (the policies' moves)");
  CLI11_PARSE(app, argc, argv);

  // Not SA_RESTART: a signal interrupts the waits, and the destructors take
  // the cluster down.
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);

  try {
    if (::geteuid() != 0) throw roam::UserError("needs root (it brings up local clusters): run it as root");
    Env env;
    fs::path build = fs::read_symlink("/proc/self/exe").parent_path().parent_path();
    env.bin = build / "bin";
    env.workloads = build / "tests" / "workloads";
    for (const fs::path& p : {env.bin / "mosctl", env.bin / "mosrun", env.bin / "mosps", env.workloads / "cpu_work",
                              env.workloads / "mem_pattern"})
      if (::access(p.c_str(), X_OK) != 0)
        throw roam::UserError(fmt::format("{} is missing: build everything first ('make')", p.string()));
    env.dir = fs::absolute(dir).lexically_normal();
    if (!keep_logs.empty()) env.keep_logs = fs::absolute(keep_logs);
    ::setenv(roam::cluster::kDirEnv, env.dir.c_str(), 1);
    ScratchDir scratch;
    env.scratch = scratch.path;

    Totals totals;
    std::printf("roam bench-balance: local clusters in %s; load average now %s (other work on these CPUs skews the times)\n",
                env.dir.c_str(), load_average().c_str());
    if (no_policy)
      std::printf("(--no-policy-settings: the policy.* settings are left out; where mosd has no policies, 'with' runs "
                  "measure the same as 'without')\n");
    std::fflush(stdout);
    double w = 0, w_wall = 0;
    if (!skip_cpu) {
      cpu_case(env, {2, {"--cpus-per-node", "1"}}, jobs, units, w, w_wall, !no_policy, target_s, totals);
      std::printf("  W = %.2f s: the CPU time of one job of cpu_work %llu (calibrated to about %.1f s; %.2f s wall, start "
                  "to exit, alone on node1)\n",
                  w, static_cast<unsigned long long>(units), target_s, w_wall);
      if (w_wall > 1.1 * w)
        std::printf("  (warning: alone, the job got only %.0f%% of node1's CPU: other work shares these CPUs, and every "
                    "makespan above includes it)\n",
                    100 * w / w_wall);
      std::fflush(stdout);
      if (!skip_four) {
        // --cpus-per-node 1 on 4 nodes gives nodes 1,3 the first CPU and 2,4
        // the second (round robin over the available CPUs), which is the
        // sharing wanted; run unpinned only where pinning is refused.
        CpuCase four{4, {"--cpus-per-node", "1"}};
        try {
          cpu_case(env, four, jobs, units, w, w_wall, !no_policy, target_s, totals);
        } catch (const roam::UserError& e) {
          if (std::string(e.what()).find("cpus-per-node") == std::string::npos) throw;
          std::printf("(4 nodes cannot be pinned here: %s; running them unpinned)\n", e.what());
          four.flags.clear();
          cpu_case(env, four, jobs, units, w, w_wall, !no_policy, target_s, totals);
        }
      }
    }
    if (!skip_memory) memory_case(env, !no_policy, settle_s, totals);
    if (totals.wrong) {
      std::printf("bench-balance: some job gave a wrong result or did not pass (see above)\n");
      return 1;
    }
    return 0;
  } catch (const Interrupted& e) {
    std::fprintf(stderr, "bench-balance: %s; clusters taken down\n", e.what());
    return 130;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench-balance: %s\n", e.what());
    return 2;
  }
}
