// The deputy/body split on one machine: see split.hpp.
#include "roam/split.hpp"

#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/core.h>

#include <future>
#include <thread>

#include "roam/channel.hpp"
#include "roam/error.hpp"
#include "roam/mig_messages.hpp"
#include "roam/mig_util.hpp"
#include "roam/migration.hpp"

namespace roam::split {

class SplitAgent {
 public:
  explicit SplitAgent(pid_t original) : pid_(original) {}

  void start() {
    int sv[2];
    check_sys(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), "socketpair");
    Channel home(FileDesc(sv[0]), nullptr, msg::kMigMaxFrame);
    Channel body(FileDesc(sv[1]), nullptr, msg::kMigMaxFrame);
    wake_ = FileDesc(check_sys(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd"));
    std::promise<pid_t> body_ready;
    std::future<pid_t> body_pid = body_ready.get_future();
    body_thread_ = std::thread([this, ch = std::move(body), p = std::move(body_ready)]() mutable {
      mig::BodyOptions o;
      o.link_timeout = std::chrono::milliseconds(60000);
      bool told = false;
      o.on_ready = [&](pid_t b) {
        p.set_value(b);
        told = true;
      };
      body_out_ = mig::serve_body(std::move(ch), o);
      if (!told) p.set_value(-1);
    });
    std::promise<SplitSetup> ready;
    std::future<SplitSetup> setup = ready.get_future();
    home_thread_ = std::thread([this, ch = std::move(home), r = std::move(ready)]() mutable {
      mig::HomeAgent agent(pid_, {.self_node = 0, .link_timeout = std::chrono::milliseconds(60000)});
      SplitSetup s;
      try {
        mig::MoveStats st = agent.move_out(std::move(ch));
        s.deputy = pid_;
        s.deputy_rss_kib = st.deputy_rss_kib;
      } catch (...) {
        r.set_exception(std::current_exception());
        return;
      }
      r.set_value(s);
      home_out_ = agent.serve(wake_.get(), [&] {
        uint64_t v;
        if (::read(wake_.get(), &v, sizeof v) == sizeof v) agent.come_home("asked home");
      });
    });
    try {
      setup_ = setup.get();
    } catch (...) {
      home_thread_.join();
      body_thread_.join();
      throw;
    }
    setup_.body = body_pid.get();
    setup_.body_fds_after_setup = mig::list_fds(setup_.body);
  }

  const SplitSetup& setup() const { return setup_; }

  void bring_home() {
    uint64_t one = 1;
    if (::write(wake_.get(), &one, sizeof one) != sizeof one) throw SysError("eventfd write", errno);
  }

  SplitOutcome wait() {
    join();
    SplitOutcome o;
    o.body_status = body_out_.body_status;
    o.served = body_out_.served;
    for (const auto& [name, n] : home_out_.served) o.served["home:" + name] += n;
    o.log = home_out_.log;
    o.log.insert(o.log.end(), body_out_.log.begin(), body_out_.log.end());
    o.signals_forwarded = home_out_.signals_forwarded;
    switch (home_out_.end) {
      case mig::HomeOutcome::End::exited:
        o.deputy_replayed = true;
        break;
      case mig::HomeOutcome::End::home:
        o.went_home = body_out_.message.empty() ? home_out_.message : body_out_.message;
        break;
      case mig::HomeOutcome::End::deputy_died:
        o.deputy_status = home_out_.deputy_status;
        o.log.push_back(home_out_.message);
        break;
      default:
        o.error = home_out_.message;
        if (!body_out_.message.empty()) o.error += "; body: " + body_out_.message;
        o.deputy_status = home_out_.deputy_status;
        break;
    }
    return o;
  }

  void abort() {
    if (!home_thread_.joinable()) return;
    if (setup_.body > 0) ::kill(setup_.body, SIGKILL);
    join();
  }

 private:
  void join() {
    if (home_thread_.joinable()) home_thread_.join();
    if (body_thread_.joinable()) body_thread_.join();
  }

  pid_t pid_;
  FileDesc wake_;
  SplitSetup setup_;
  mig::HomeOutcome home_out_;
  mig::BodyOutcome body_out_;
  std::thread home_thread_, body_thread_;
};

Split::Split(pid_t original) : agent_(std::make_unique<SplitAgent>(original)) {
  agent_->start();
  setup_ = agent_->setup();
}

Split::~Split() { agent_->abort(); }

void Split::bring_home() { agent_->bring_home(); }

SplitOutcome Split::wait() { return agent_->wait(); }

}  // namespace roam::split
