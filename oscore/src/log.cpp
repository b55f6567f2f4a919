#include "roam/log.hpp"

#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <mutex>

namespace roam {
namespace {
std::atomic<LogLevel> g_level{LogLevel::info};
std::string g_tag = "roam";
std::mutex g_mutex;
const char* level_name(LogLevel l) {
  switch (l) {
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info";
    case LogLevel::warn: return "warn";
    case LogLevel::error: return "error";
  }
  return "?";
}
}  // namespace

void set_log_level(LogLevel level) { g_level = level; }
LogLevel log_level() { return g_level; }
void set_log_tag(std::string tag) {
  std::lock_guard lock(g_mutex);
  g_tag = std::move(tag);
}

void log_line(LogLevel level, std::string_view text) {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm {};
  localtime_r(&ts.tv_sec, &tm);
  std::lock_guard lock(g_mutex);
  std::fprintf(stderr, "%02d:%02d:%02d.%03ld %s[%d] %s: %.*s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
               ts.tv_nsec / 1000000, g_tag.c_str(), static_cast<int>(getpid()), level_name(level),
               static_cast<int>(text.size()), text.data());
  std::fflush(stderr);
}

}  // namespace roam
