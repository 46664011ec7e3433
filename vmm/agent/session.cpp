// AgentSession; the theory of operation is in session.hpp.
#include "vmm/agent/session.hpp"

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>

namespace causeway::agent {
namespace {

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Guest text is untrusted: keep log lines printable and short.
std::string printable(std::string_view s) {
  std::string out;
  out.reserve(std::min<size_t>(s.size(), 512));
  for (char c : s.substr(0, 512)) out.push_back((c >= 0x20 && c < 0x7f) || c == '\t' ? c : '?');
  return out;
}

}  // namespace

std::string_view to_string(EndReason r) {
  switch (r) {
    case EndReason::Completed: return "completed";
    case EndReason::Stopped: return "stopped";
    case EndReason::ReadyTimeout: return "ready timeout";
    case EndReason::VersionMismatch: return "version mismatch";
    case EndReason::ProtocolViolation: return "protocol violation";
    case EndReason::StreamClosed: return "stream closed";
    case EndReason::ShutdownTimeout: return "shutdown timeout";
    case EndReason::Aborted: return "aborted";
  }
  return "?";
}

AgentSession::AgentSession(boost::asio::any_io_executor ex, std::shared_ptr<vmm::VsockStream> stream,
                           AgentCallbacks callbacks, AgentSessionOptions options)
    : ex_(std::move(ex)), stream_(std::move(stream)), cb_(std::move(callbacks)), opts_(options), timer_(ex_) {}

AgentSession::~AgentSession() {
  *self_ = nullptr;
  timer_.cancel();
  if (stream_) {
    stream_->set_on_data(nullptr);
    stream_->set_on_writable(nullptr);
    stream_->set_on_eof(nullptr);
    stream_->set_on_closed(nullptr);
  }
}

void AgentSession::start() {
  if (state_ != State::Idle) return;
  std::weak_ptr<AgentSession*> weak = self_;
  auto with = [weak](auto fn) {
    return [weak, fn](auto&&... args) {
      if (auto s = weak.lock(); s && *s) fn(**s, std::forward<decltype(args)>(args)...);
    };
  };
  stream_->set_on_data(with([](AgentSession& s, std::span<const uint8_t> b) { s.on_data(b); }));
  stream_->set_on_writable(with([](AgentSession& s) { s.flush(); }));
  stream_->set_on_eof(with([](AgentSession& s) { s.on_stream_end("the guest closed the agent connection"); }));
  stream_->set_on_closed(with([](AgentSession& s, std::string_view why) { s.on_stream_end(why); }));
  state_ = State::AwaitingReady;
  send(Hello{kProtocolVersion});
  timer_.expires_after(opts_.ready_timeout);
  timer_.async_wait([weak, this](boost::system::error_code ec) {
    auto s = weak.lock();
    if (ec || !s || !*s || state_ != State::AwaitingReady) return;
    end(EndReason::ReadyTimeout,
        "the guest agent did not answer within " + std::to_string(opts_.ready_timeout.count()) +
            " ms of connecting (agent wedged or incompatible guest image? see the console log)");
  });
}

bool AgentSession::can_send() const {
  return state_ == State::AwaitingReady || state_ == State::Ready || state_ == State::Exited;
}

std::error_code AgentSession::configure_network(const NetConfig& cfg) {
  if (auto ec = validate(cfg)) return ec;
  if (!can_send()) return std::make_error_code(std::errc::not_connected);
  send(cfg);
  return {};
}

std::error_code AgentSession::run(const Run& r) {
  if (auto ec = validate(r)) return ec;
  // validate() bounds each field; their sum must fit one frame too.
  size_t total = 64 + r.cwd.size() + r.user.size();
  for (const auto& a : r.argv) total += 2 + a.size();
  for (const auto& e : r.env) total += 2 + e.size();
  if (total > kMaxPayload) return make_error_code(ProtocolError::Oversized);
  if (run_sent_) return std::make_error_code(std::errc::operation_in_progress);
  if (!can_send()) return std::make_error_code(std::errc::not_connected);
  run_sent_ = true;
  send(r);
  return {};
}

size_t AgentSession::send_stdin(std::span<const uint8_t> data) {
  if (!can_send() || stdin_closed_ || data.empty()) return 0;
  const size_t room = queued() < opts_.max_stdin_queue ? opts_.max_stdin_queue - queued() : 0;
  const size_t take = std::min(room, data.size());
  if (take < data.size()) stdin_blocked_ = true;
  if (take == 0) return 0;
  encode_chunks(MessageType::Stdin, data.first(take), queue_);
  counters_.stdin_bytes += take;
  counters_.messages_out += (take + kMaxChunk - 1) / kMaxChunk;
  flush();
  return take;
}

void AgentSession::pause_receive(bool paused) {
  if (state_ == State::Ended) return;
  stream_->set_receive_paused(paused);
}

void AgentSession::close_stdin() {
  if (stdin_closed_ || !can_send()) return;
  stdin_closed_ = true;
  send(StdinEof{});
}

void AgentSession::signal(int signo) {
  if (signo < 1 || signo > kMaxSignal || !can_send()) return;
  send(Signal{signo});
}

void AgentSession::resize(uint16_t rows, uint16_t cols) {
  if (!can_send()) return;
  send(Resize{rows, cols});
}

void AgentSession::shutdown() {
  if (!can_send()) return;
  send(Shutdown{});
  state_ = State::ShuttingDown;
  std::weak_ptr<AgentSession*> weak = self_;
  timer_.expires_after(opts_.shutdown_timeout);
  timer_.async_wait([weak, this](boost::system::error_code ec) {
    auto s = weak.lock();
    if (ec || !s || !*s || state_ != State::ShuttingDown) return;
    end(EndReason::ShutdownTimeout,
        "the guest did not shut down within " + std::to_string(opts_.shutdown_timeout.count()) + " ms of the request");
  });
}

void AgentSession::abort(std::string why) { end(EndReason::Aborted, std::move(why)); }

// ---------------------------------------------------------------- sending
std::error_code AgentSession::mirror_apply(const MirrorApply& m) {
  if (!can_send()) return std::make_error_code(std::errc::not_connected);
  if (auto ec = encode_checked(m, queue_)) return ec;
  ++counters_.messages_out;
  flush();
  return {};
}

std::error_code AgentSession::dns_config(const DnsConfig& d) {
  if (auto ec = validate(d)) return ec;
  if (!can_send()) return std::make_error_code(std::errc::not_connected);
  send(d);
  return {};
}

void AgentSession::send(const Message& m) {
  encode_into(m, queue_);
  ++counters_.messages_out;
  flush();
}

void AgentSession::flush() {
  while (queued() > 0 && state_ != State::Ended) {
    const size_t n = stream_->write(std::span<const uint8_t>(queue_.data() + queue_off_, queued()));
    if (n == 0) {
      ++counters_.write_stalls;
      break;  // no credit: on_writable resumes us
    }
    queue_off_ += n;
  }
  if (queue_off_ == queue_.size()) {
    queue_.clear();
    queue_off_ = 0;
  } else if (queue_off_ > 64 * 1024) {
    queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(queue_off_));
    queue_off_ = 0;
  }
  // Hysteresis: report room once the queue is half empty, not at every byte.
  if (stdin_blocked_ && queued() <= opts_.max_stdin_queue / 2 && state_ != State::Ended) {
    stdin_blocked_ = false;
    if (cb_.on_stdin_writable) cb_.on_stdin_writable();
  }
}

// ---------------------------------------------------------------- receiving
void AgentSession::on_data(std::span<const uint8_t> bytes) {
  if (state_ == State::Ended) return;
  decoder_.feed(bytes);
  while (state_ != State::Ended) {
    auto m = decoder_.next();
    if (!m) break;
    ++counters_.messages_in;
    on_message(*m);
  }
  if (decoder_.error() && state_ != State::Ended)
    violation("malformed message from the guest agent: " + decoder_.error().message());
}

void AgentSession::on_message(Message& m) {
  const MessageType type = type_of(m);
  switch (type) {
    case MessageType::Ready: {
      if (state_ != State::AwaitingReady) return violation("second Ready from the guest agent");
      auto& r = std::get<Ready>(m);
      if (r.version != kProtocolVersion) {
        return end(EndReason::VersionMismatch, "the guest agent speaks protocol version " + std::to_string(r.version) +
                                                   ", this causeway " + std::to_string(kProtocolVersion) +
                                                   ": rebuild the guest image (scripts/build-guest.sh)");
      }
      timer_.cancel();
      state_ = State::Ready;
      ready_ = r;
      if (cb_.on_ready) cb_.on_ready(*ready_);
      return;
    }
    case MessageType::Log:
    case MessageType::Error: {
      const bool is_error = type == MessageType::Error;
      const std::string& text = is_error ? std::get<Error>(m).text : std::get<Log>(m).text;
      ++(is_error ? counters_.guest_errors : counters_.guest_logs);
      auto& user = is_error ? cb_.on_guest_error : cb_.on_log;
      if (user) {
        user(text);
      } else if (guest_log_limit_.allow(now_ms())) {
        if (is_error) {
          spdlog::warn("guest agent: {}", printable(text));
        } else {
          spdlog::debug("guest agent: {}", printable(text));
        }
      }
      return;
    }
    case MessageType::ListenerAppeared:
    case MessageType::ListenerGone:
      if (state_ == State::AwaitingReady) return violation(std::string(name_of(type)) + " before Ready");
      if (type == MessageType::ListenerAppeared && cb_.on_listener_appeared)
        cb_.on_listener_appeared(std::get<ListenerAppeared>(m));
      if (type == MessageType::ListenerGone && cb_.on_listener_gone) cb_.on_listener_gone(std::get<ListenerGone>(m));
      return;
    case MessageType::MirrorReport:
      if (state_ == State::AwaitingReady) return violation("MirrorReport before Ready");
      if (cb_.on_mirror_report) cb_.on_mirror_report(std::get<MirrorReport>(m));
      return;
    case MessageType::Stdout:
    case MessageType::Stderr:
    case MessageType::Exited:
      if (!run_sent_ || state_ == State::AwaitingReady)
        return violation(std::string(name_of(type)) + " before the command was started");
      if (exit_) return violation(std::string(name_of(type)) + " after Exited");
      if (type == MessageType::Exited) {
        exit_ = std::get<Exited>(m);
        if (state_ == State::Ready) state_ = State::Exited;
        if (cb_.on_exited) cb_.on_exited(*exit_);
      } else if (type == MessageType::Stdout) {
        const auto& d = std::get<Stdout>(m).data;
        counters_.stdout_bytes += d.size();
        if (cb_.on_stdout) cb_.on_stdout(d);
      } else {
        const auto& d = std::get<Stderr>(m).data;
        counters_.stderr_bytes += d.size();
        if (cb_.on_stderr) cb_.on_stderr(d);
      }
      return;
    default:
      // The decoder accepts guest→host types only; anything else is our bug.
      return violation("unexpected " + std::string(name_of(type)));
  }
}

void AgentSession::on_stream_end(std::string_view why) {
  if (state_ == State::Ended) return;
  if (decoder_.buffered() > 0 && !decoder_.error()) {
    return violation("the guest agent's connection ended in the middle of a message (" + std::string(why) + ")");
  }
  if (exit_) return end(EndReason::Completed, std::string(why));
  if (state_ == State::ShuttingDown) return end(EndReason::Stopped, "stopped before the command exited");
  end(EndReason::StreamClosed,
      std::string(state_ == State::AwaitingReady ? "the guest agent's connection ended before Ready"
                                                 : "the guest agent's connection ended before the command exited") +
          " (" + std::string(why) + "): the agent or the guest died — see the guest console log");
}

void AgentSession::violation(std::string detail) {
  ++counters_.violations;
  end(EndReason::ProtocolViolation, std::move(detail));
}

void AgentSession::end(EndReason reason, std::string detail) {
  if (state_ == State::Ended) return;
  state_ = State::Ended;
  timer_.cancel();
  queue_.clear();
  queue_off_ = 0;
  // The stream's callbacks stay installed (we may be inside one of them); they
  // see state_ == Ended and do nothing. A protocol violation or timeout: reset the stream so the guest sees it too.
  // After a clean end the stream is finished already.
  if (reason != EndReason::Completed && reason != EndReason::Stopped) stream_->close();
  SessionEnd e{reason, std::move(detail), exit_};
  if (!e.ok()) spdlog::debug("agent session ended: {}: {}", to_string(reason), e.detail);
  std::weak_ptr<AgentSession*> weak = self_;
  boost::asio::post(ex_, [weak, e = std::move(e)] {
    auto s = weak.lock();
    if (s && *s && (*s)->cb_.on_end) (*s)->cb_.on_end(e);
  });
}

}  // namespace causeway::agent
