// mosrun PROG ARGS...: run PROG at this node as a roam job. mosrun asks the
// local mosd to put it into a job cgroup, then execs PROG in its own place:
// no wrapper process stays, so exit status, signals, $!, job control and the
// terminal are exactly what they would be without mosrun.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "roam/control.hpp"
#include "roam/error.hpp"

namespace {
// As env(1) and nohup(1): 125 mosrun itself failed, 126 found but could not
// run, 127 not found.
constexpr int kOwnFailure = 125;
}

int main(int argc, char** argv) {
  CLI::App app{"mosrun: run a program at this node as a migratable roam job", "mosrun"};
  app.prefix_command();
  app.footer("Exit status: PROG's own; 125 when roam cannot start the job, 126/127 when PROG cannot be run.");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::fprintf(stderr, "mosrun: %s (usage: mosrun PROG [ARGS...])\n", e.what());
    return kOwnFailure;
  }
  // Everything from PROG on belongs to PROG, flags included.
  std::vector<std::string> command = app.remaining();
  if (command.empty()) {
    std::fprintf(stderr, "mosrun: no program given (usage: mosrun PROG [ARGS...])\n");
    return kOwnFailure;
  }
  std::string joined;
  for (auto& a : command) joined += (joined.empty() ? "" : " ") + a;
  try {
    roam::ControlClient mosd;
    mosd.call<roam::msg::RegisterJobReply>(roam::msg::RegisterJob{joined});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mosrun: %s\n", e.what());
    return kOwnFailure;
  }
  std::vector<char*> args;
  for (auto& a : command) args.push_back(a.data());
  args.push_back(nullptr);
  execvp(args[0], args.data());
  int err = errno;
  std::fprintf(stderr, "mosrun: cannot run %s: %s\n", args[0], std::strerror(err));
  return err == ENOENT ? 127 : 126;
}
