// Our end of one command in the guest; see command_io.hpp.
#include "cli/command_io.hpp"

#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

namespace causeway::cli {
namespace asio = boost::asio;

// Restores the terminal however we leave.
class RawTerminal {
 public:
  bool enter() {
    if (::tcgetattr(0, &saved_) != 0) return false;
    termios raw = saved_;
    ::cfmakeraw(&raw);
    active_ = ::tcsetattr(0, TCSANOW, &raw) == 0;
    return active_;
  }
  ~RawTerminal() {
    if (active_) ::tcsetattr(0, TCSANOW, &saved_);
  }

 private:
  termios saved_{};
  bool active_ = false;
};

CommandIo::CommandIo(asio::io_context& io, agent::Run run) : io_(io), run_(std::move(run)) {}

CommandIo::~CommandIo() { stop(); }

void CommandIo::install(agent::AgentCallbacks& cb, std::function<agent::AgentSession*()> session,
                        std::function<void(const agent::Exited&)> on_exited) {
  session_ = std::move(session);
  out_pump_.emplace(io_.get_executor(), 1, [this](bool) { on_output_pressure(); });
  err_pump_.emplace(io_.get_executor(), 2, [this](bool) { on_output_pressure(); });
  cb.on_stdout = [this](std::span<const uint8_t> d) { out_pump_->push(d); };
  cb.on_stderr = [this](std::span<const uint8_t> d) { err_pump_->push(d); };
  cb.on_stdin_writable = [this] { send_pending_stdin(); };
  cb.on_exited = [this, on_exited = std::move(on_exited)](const agent::Exited& e) {
    status_ = e.shell_status();
    exited_ = true;
    if (on_exited) on_exited(e);
  };
}

std::error_code CommandIo::start() {
  agent::AgentSession* s = session_();
  if (!s) return std::make_error_code(std::errc::not_connected);
  if (run_.tty) {
    winsize ws{};
    if (::ioctl(0, TIOCGWINSZ, &ws) == 0) run_.rows = ws.ws_row, run_.cols = ws.ws_col;
  }
  if (auto ec = s->run(run_)) return ec;
  forward_stdin();
  if (run_.tty) {
    winch_.add(SIGWINCH);
    wait_winch();
  }
  return {};
}

void CommandIo::forward_stdin() {
  struct stat st {};
  const bool pollable = ::fstat(0, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || ::isatty(0));
  boost::system::error_code aec;
  if (pollable) in_.assign(::dup(0), aec);
  if (!pollable || aec) {
    stdin_done_ = true;
    if (auto* s = session_()) s->close_stdin();
    return;
  }
  if (run_.tty) {
    term_ = std::make_unique<RawTerminal>();
    term_->enter();
  }
  read_stdin();
}

void CommandIo::read_stdin() {
  if (stopped_ || reading_ || stdin_done_) return;
  reading_ = true;
  in_.async_read_some(asio::buffer(inbuf_), [this](boost::system::error_code ec, size_t n) {
    reading_ = false;
    if (stopped_) return;
    if (ec) {
      stdin_done_ = true;
      if (auto* s = session_()) s->close_stdin();
      return;
    }
    in_off_ = 0;
    in_len_ = n;
    send_pending_stdin();
  });
}

// What was read goes to the session as fast as it takes it; the next read
// waits until all of it was taken (back-pressure to whoever feeds our stdin).
void CommandIo::send_pending_stdin() {
  auto* s = session_();
  if (!s || stopped_) return;
  while (in_off_ < in_len_) {
    const size_t took = s->send_stdin({inbuf_.data() + in_off_, in_len_ - in_off_});
    if (took == 0) return;  // full: on_stdin_writable calls again
    in_off_ += took;
  }
  read_stdin();
}

void CommandIo::on_output_pressure() {
  if (auto* s = session_())
    s->pause_receive((out_pump_ && out_pump_->pressured()) || (err_pump_ && err_pump_->pressured()));
}

void CommandIo::handle_signals(std::function<void(int count)> on_escalate) {
  on_escalate_ = std::move(on_escalate);
  signals_.add(SIGINT);
  signals_.add(SIGTERM);
  wait_signal();
}

void CommandIo::wait_signal() {
  signals_.async_wait([this](boost::system::error_code ec, int sig) {
    if (ec || stopped_) return;
    ++interrupts_;
    auto* s = session_();
    if (interrupts_ == 1 && s && !exited_)
      s->signal(sig);
    else if (on_escalate_)
      on_escalate_(interrupts_);
    wait_signal();
  });
}

void CommandIo::wait_winch() {
  winch_.async_wait([this](boost::system::error_code ec, int) {
    if (ec || stopped_) return;
    winsize ws{};
    if (::ioctl(0, TIOCGWINSZ, &ws) == 0)
      if (auto* s = session_()) s->resize(ws.ws_row, ws.ws_col);
    wait_winch();
  });
}

void CommandIo::stop() {
  if (stopped_) return;
  stopped_ = true;
  boost::system::error_code ignored;
  in_.close(ignored);
  signals_.cancel(ignored);
  winch_.cancel(ignored);
  term_.reset();
}

}  // namespace causeway::cli
