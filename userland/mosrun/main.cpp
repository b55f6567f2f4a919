// mosrun [PLACEMENT] PROG ARGS...: run PROG as a roam job of this node.
// mosrun asks the local mosd to put it into a job cgroup (with the job's
// placement, which every descendant shares), then execs PROG in its own
// place: no wrapper process stays, so exit status, signals, $!, job control
// and the terminal are exactly what they would be without mosrun.
//
// A job that is to start elsewhere (-r, -b, or a home that lacks its tag or
// memory) starts here and is moved right after the exec, by a helper outside
// the job (see start_move.hpp).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>

#include "roam/control.hpp"
#include "roam/error.hpp"
#include "start_move.hpp"

namespace {
// As env(1) and nohup(1): 125 mosrun itself failed, 126 found but could not
// run, 127 not found.
constexpr int kOwnFailure = 125;
constexpr const char* kUsage = "usage: mosrun [-r NODE|-b] [-h|-L|-l] [-t TAG] [-m MB] PROG [ARGS...]";

// "3" or "node3".
std::optional<uint32_t> node_number(const std::string& s) {
  std::string digits = s.rfind("node", 0) == 0 ? s.substr(4) : s;
  if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  return static_cast<uint32_t>(std::stoul(digits));
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mosrun: run a program at this node as a migratable roam job", "mosrun"};
  app.prefix_command();
  app.set_help_flag("--help", "print this help and exit");  // -h is MOSIX's "stay home"
  app.footer("Exit status: PROG's own; 125 when roam cannot start the job, 126/127 when PROG cannot be run.");
  std::string start_node, tag;
  uint64_t mem_mb = 0;
  bool stay_home = false, best = false, manual_only = false, may_move = false;
  auto* r = app.add_option("-r", start_node, "start at NODE (a number or nodeN): moved there right after the exec");
  auto* b = app.add_flag("-b", best, "start at the best node now (least loaded that fits -t/-m)");
  auto* h = app.add_flag("-h", stay_home, "stay home: never moves, migrate refuses");
  auto* L = app.add_flag("-L", manual_only, "never move automatically (migrate still may)");
  auto* l = app.add_flag("-l", may_move, "may move automatically (the default)");
  app.add_option("-t", tag, "run only on nodes with TAG (from the cluster map)");
  app.add_option("-m", mem_mb, "memory the job needs, in MB: nodes with less free are not chosen")->check(CLI::Range(uint64_t{1}, uint64_t{1} << 40));
  h->excludes(r)->excludes(b)->excludes(L)->excludes(l);
  L->excludes(l);
  r->excludes(b);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::fprintf(stderr, "mosrun: %s (%s)\n", e.what(), kUsage);
    return kOwnFailure;
  }
  // Everything from PROG on belongs to PROG, flags included.
  std::vector<std::string> command = app.remaining();
  if (command.empty()) {
    std::fprintf(stderr, "mosrun: no program given (%s)\n", kUsage);
    return kOwnFailure;
  }
  if (command.front().size() > 1 && command.front()[0] == '-') {
    std::fprintf(stderr, "mosrun: unknown option %s (%s)\n", command.front().c_str(), kUsage);
    return kOwnFailure;
  }
  roam::msg::RegisterJob req;
  for (auto& a : command) req.command += (req.command.empty() ? "" : " ") + a;
  auto& p = req.placement;
  if (!start_node.empty()) {
    auto n = node_number(start_node);
    if (!n || *n == 0) {
      std::fprintf(stderr, "mosrun: -r wants a node number or nodeN, not '%s'\n", start_node.c_str());
      return kOwnFailure;
    }
    p.start_node = *n;
  }
  if (tag.find_first_of(" \t\n") != std::string::npos) {
    std::fprintf(stderr, "mosrun: -t wants one tag word, not '%s'\n", tag.c_str());
    return kOwnFailure;
  }
  p.start_best = best;
  p.tag = tag;
  p.mem_mb = mem_mb;
  p.mobility = stay_home     ? roam::placement::Mobility::stay_home
               : manual_only ? roam::placement::Mobility::manual_only
                             : roam::placement::Mobility::may_move;

  // Only a job that may start elsewhere needs the helper.
  std::optional<roam::mosrun::StartMove> start;
  if (p.start_node || p.start_best || !p.tag.empty() || p.mem_mb) {
    try {
      start.emplace(getpid());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "mosrun: %s\n", e.what());
      return kOwnFailure;
    }
  }
  try {
    roam::ControlClient mosd;
    auto reply = mosd.call<roam::msg::RegisterJobReply>(req);
    if (start) start->go_to(reply.start_target);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mosrun: %s\n", e.what());
    return kOwnFailure;
  }
  std::vector<char*> args;
  for (auto& a : command) args.push_back(a.data());
  args.push_back(nullptr);
  execvp(args[0], args.data());
  int err = errno;
  if (start) start->cancel();
  std::fprintf(stderr, "mosrun: cannot run %s: %s\n", args[0], std::strerror(err));
  return err == ENOENT ? 127 : 126;
}
