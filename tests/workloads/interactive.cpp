// Workload: an interactive prompt loop (meant for a terminal).
//   interactive
// Prints "READY <pid>", then repeatedly prints the prompt "> ", reads a line
// from stdin and answers "echo: LINE"; on "quit" it prints "bye" and exits 0.
// At EOF on stdin it exits 0 without answering further. A trailing '\r' is
// dropped from each line.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

namespace {

void say(const std::string& text) {
  const char* p = text.data();
  size_t len = text.size();
  while (len > 0) {
    ssize_t n = ::write(1, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) _exit(2);
    p += n;
    len -= static_cast<size_t>(n);
  }
}

// One line from stdin without its '\n'; false at EOF with nothing read.
bool read_line(std::string& line) {
  line.clear();
  char c;
  for (;;) {
    ssize_t n = ::read(0, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) return !line.empty();
    if (c == '\n') break;
    line.push_back(c);
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return true;
}

}  // namespace

int main() {
  char ready[64];
  std::snprintf(ready, sizeof ready, "READY %d\n", static_cast<int>(getpid()));
  say(ready);
  std::string line;
  for (;;) {
    say("> ");
    if (!read_line(line)) return 0;
    if (line == "quit") {
      say("bye\n");
      return 0;
    }
    say("echo: " + line + "\n");
  }
}
