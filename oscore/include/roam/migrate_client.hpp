// Asking for a move, as `migrate` does: this node's mosd checks the request
// and starts the process's home agent; the agent moves the process and
// answers with one line. Shared by migrate, mosrun (-r/-b start) and
// mosctl bring.
#pragma once

#include <sys/types.h>

#include <string>

namespace roam {

struct MoveAnswer {
  bool ok = false;
  std::string message;  // what happened, or why not (one line)
};

// target: a node number, nodeN, home or best. Waits until the process is
// there (async: until the move started). Throws UserError when mosd cannot
// be asked or refuses the request (the line says why).
MoveAnswer request_move(pid_t pid, const std::string& target, bool async);

}  // namespace roam
