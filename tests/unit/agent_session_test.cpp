// AgentSession driven the way the guest agent would drive it, through a
// FakeVsockStream: handshake, output, exit, timeouts, hostile guests and
// flow control. Timeouts are short and awaited by polling the io_context.
#include "vmm/agent/session.hpp"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include "tests/support/fake_vsock_stream.hpp"
#include "tests/support/fakes.hpp"

namespace causeway::agent {
namespace {

using causeway::testing::FakeVsockStream;
using causeway::testing::run_until;
using namespace std::chrono_literals;

class AgentSessionTest : public ::testing::Test {
 protected:
  void make(AgentSessionOptions opts = {}) {
    cb.on_ready = [this](const Ready& r) { ready = r; };
    cb.on_stdout = [this](std::span<const uint8_t> d) { out.append(d.begin(), d.end()); };
    cb.on_stderr = [this](std::span<const uint8_t> d) { err.append(d.begin(), d.end()); };
    cb.on_exited = [this](const Exited& e) { exited = e; };
    cb.on_log = [this](std::string_view t) { logs.emplace_back(t); };
    cb.on_guest_error = [this](std::string_view t) { errors.emplace_back(t); };
    cb.on_stdin_writable = [this] { ++writable; };
    cb.on_end = [this](const SessionEnd& e) { ended = e; };
    session = std::make_unique<AgentSession>(io.get_executor(), stream, cb, opts);
  }
  void start_ready(AgentSessionOptions opts = {}) {
    make(opts);
    session->start();
    stream->deliver(Ready{kProtocolVersion, "test", "6.1.0-test", 900});
  }
  bool wait_end(std::chrono::milliseconds d = 2s) {
    return run_until(
        io, [this] { return ended.has_value(); }, d);
  }

  boost::asio::io_context io;
  std::shared_ptr<FakeVsockStream> stream = std::make_shared<FakeVsockStream>();
  AgentCallbacks cb;
  std::unique_ptr<AgentSession> session;
  std::optional<Ready> ready;
  std::string out, err;
  std::optional<Exited> exited;
  std::vector<std::string> logs, errors;
  int writable = 0;
  std::optional<SessionEnd> ended;
};

agent::Run simple_run() { return agent::Run{{"sh", "-c", "exit 7"}, {"PATH=/bin"}, "/", false, 0, 0, ""}; }

TEST_F(AgentSessionTest, StartSendsHelloAndReadyCompletesTheHandshake) {
  make();
  session->start();
  const auto sent = stream->host_messages();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(std::get<Hello>(sent[0]).version, kProtocolVersion);
  EXPECT_EQ(session->state(), AgentSession::State::AwaitingReady);
  stream->deliver(Ready{kProtocolVersion, "0.1.0", "6.1.0-56-cloud-amd64", 1500});
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->kernel_release, "6.1.0-56-cloud-amd64");
  EXPECT_EQ(ready->uptime_ms, 1500u);
  EXPECT_EQ(session->state(), AgentSession::State::Ready);
}

TEST_F(AgentSessionTest, NetConfigAndRunAreQueuedBehindHelloWithoutWaitingForReady) {
  make();
  session->start();
  NetConfig net;
  net.addresses = {{IpAddr::v4(10, 0, 2, 15), 24}};
  net.routes = {{IpAddr::v4(0, 0, 0, 0), 0, IpAddr::v4(10, 0, 2, 2), 0}};
  EXPECT_FALSE(session->configure_network(net));
  EXPECT_FALSE(session->run(simple_run()));
  const auto sent = stream->host_messages();
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_TRUE(std::holds_alternative<Hello>(sent[0]));
  EXPECT_EQ(std::get<NetConfig>(sent[1]), net);
  EXPECT_EQ(std::get<agent::Run>(sent[2]), simple_run());
}

TEST_F(AgentSessionTest, OutputAndExitReachTheCallbacksAndACleanEndCarriesTheStatus) {
  start_ready();
  ASSERT_FALSE(session->run(simple_run()));
  stream->deliver(Stdout{{'h', 'i', '\n'}});
  stream->deliver(Stderr{{'o', 'o', 'p', 's'}});
  stream->deliver(Exited{Exited::Kind::Exited, 7, false});
  EXPECT_EQ(out, "hi\n");
  EXPECT_EQ(err, "oops");
  ASSERT_TRUE(exited);
  EXPECT_EQ(exited->shell_status(), 7);
  EXPECT_EQ(session->state(), AgentSession::State::Exited);
  session->shutdown();
  EXPECT_TRUE(std::holds_alternative<Shutdown>(stream->host_messages().back()));
  stream->guest_eof();
  ASSERT_TRUE(wait_end());
  EXPECT_EQ(ended->reason, EndReason::Completed);
  EXPECT_TRUE(ended->ok());
  ASSERT_TRUE(ended->exit);
  EXPECT_EQ(ended->exit->value, 7);
  EXPECT_EQ(session->counters().stdout_bytes, 3u);
  EXPECT_EQ(session->counters().stderr_bytes, 4u);
}

TEST_F(AgentSessionTest, KilledBySignalIsReportedAsShellStatus128PlusSignal) {
  start_ready();
  ASSERT_FALSE(session->run(simple_run()));
  stream->deliver(Exited{Exited::Kind::Signaled, 9, false});
  ASSERT_TRUE(exited);
  EXPECT_EQ(exited->shell_status(), 137);
}

TEST_F(AgentSessionTest, GuestMessagesSplitAtEveryByteAreHandledTheSame) {
  make();
  session->start();
  ASSERT_FALSE(session->run(simple_run()));
  std::vector<uint8_t> bytes;
  encode_into(Ready{kProtocolVersion, "v", "k", 1}, bytes);
  encode_into(Log{"hello from the guest"}, bytes);
  encode_into(Stdout{{'a', 'b', 'c'}}, bytes);
  encode_into(Exited{Exited::Kind::Exited, 0, false}, bytes);
  for (uint8_t b : bytes) stream->deliver(std::span<const uint8_t>(&b, 1));
  EXPECT_TRUE(ready);
  EXPECT_EQ(logs, std::vector<std::string>{"hello from the guest"});
  EXPECT_EQ(out, "abc");
  EXPECT_TRUE(exited);
}

TEST_F(AgentSessionTest, NoReadyWithinTheTimeoutEndsTheSessionAndResetsTheStream) {
  AgentSessionOptions o;
  o.ready_timeout = 30ms;
  make(o);
  session->start();
  ASSERT_TRUE(wait_end());
  EXPECT_EQ(ended->reason, EndReason::ReadyTimeout);
  EXPECT_NE(ended->detail.find("console log"), std::string::npos);
  EXPECT_TRUE(stream->closed);
}

TEST_F(AgentSessionTest, ReadyOfAnotherProtocolVersionIsAClearError) {
  make();
  session->start();
  stream->deliver(Ready{kProtocolVersion + 1, "future", "k", 0});
  ASSERT_TRUE(wait_end());
  EXPECT_EQ(ended->reason, EndReason::VersionMismatch);
  EXPECT_NE(ended->detail.find("build-guest.sh"), std::string::npos);
  EXPECT_FALSE(ready);
}

TEST_F(AgentSessionTest, MalformedBytesFromTheGuestEndTheSession) {
  start_ready();
  const std::vector<uint8_t> junk = {0xff, 0xff, 0xff, 0xff, 1, 0x42, 0, 0};  // 4 GiB Stdout
  stream->deliver(junk);
  ASSERT_TRUE(wait_end());
  EXPECT_EQ(ended->reason, EndReason::ProtocolViolation);
  EXPECT_EQ(session->counters().violations, 1u);
  EXPECT_TRUE(stream->closed);
  // Anything after the violation is ignored.
  stream->deliver(Stdout{{'x'}});
  EXPECT_EQ(out, "");
}

TEST_F(AgentSessionTest, AGuestSendingHostMessagesIsAViolation) {
  start_ready();
  stream->deliver(encode(simple_run()));
  ASSERT_TRUE(wait_end());
  EXPECT_EQ(ended->reason, EndReason::ProtocolViolation);
  EXPECT_NE(ended->detail.find("direction"), std::string::npos);
}

TEST_F(AgentSessionTest, OutputBeforeRunIsAViolation) {
  start_ready();
  stream->deliver(Stdout{{'x'}});
  ASSERT_TRUE(wait_end());
  EXPECT_EQ(ended->reason, EndReason::ProtocolViolation);
  EXPECT_EQ(out, "");
}

TEST_F(AgentSessionTest, OutputOrASecondExitAfterExitedIsAViolation) {
  start_ready();
  ASSERT_FALSE(session->run(simple_run()));
  stream->deliver(Exited{Exited::Kind::Exited, 0, false});
  stream->deliver(Stdout{{'l', 'a', 't', 'e'}});
  ASSERT_TRUE(wait_end());
  EXPECT_EQ(ended->reason, EndReason::ProtocolViolation);
  EXPECT_EQ(out, "");
}

TEST_F(AgentSessionTest, MirrorApplyIsSentAndTheReportReachesItsCallback) {
  std::vector<MirrorReport> reports;
  cb.on_mirror_report = [&reports](const MirrorReport& r) { reports.push_back(r); };
  start_ready();
  MirrorApply m;
  m.generation = 5;
  netstack::mirror::HostLink l;
  l.name = "lan0";
  l.mtu = 1500;
  m.desired.links.push_back(l);
  ASSERT_FALSE(session->mirror_apply(m));
  const auto sent = stream->host_messages();
  ASSERT_FALSE(sent.empty());
  EXPECT_EQ(std::get<MirrorApply>(sent.back()), m);
  MirrorReport r;
  r.generation = 5;
  r.converged = true;
  stream->deliver(r);
  ASSERT_TRUE(run_until(
      io, [&] { return !reports.empty(); }, 2s));
  EXPECT_EQ(reports.front(), r);
  // A plan over the protocol's limits is refused, not sent (and does not abort).
  m.desired.links.front().name = "a/b";
  EXPECT_EQ(session->mirror_apply(m), ProtocolError::BadValue);
  EXPECT_EQ(stream->host_messages().size(), sent.size());
}

TEST_F(AgentSessionTest, DnsConfigIsSentAndInvalidOnesAreRefused) {
  start_ready();
  const DnsConfig d{{IpAddr::v4(10, 0, 2, 3)}, {"corp.example"}};
  ASSERT_FALSE(session->dns_config(d));
  auto sent = stream->host_messages();
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(std::get<DnsConfig>(sent.back()), d);
  EXPECT_EQ(session->dns_config(DnsConfig{{}, {"bad domain"}}), ProtocolError::BadValue);
  EXPECT_EQ(stream->host_messages().size(), 2u);
}

TEST_F(AgentSessionTest, AMirrorReportBeforeReadyIsAViolation) {
  make();
  session->start();
  stream->deliver(MirrorReport{});
  ASSERT_TRUE(wait_end());
  EXPECT_EQ(ended->reason, EndReason::ProtocolViolation);
}

TEST_F(AgentSessionTest, ASecondReadyIsAViolation) {
  start_ready();
  stream->deliver(Ready{kProtocolVersion, "again", "k", 0});
  ASSERT_TRUE(wait_end());
  EXPECT_EQ(ended->reason, EndReason::ProtocolViolation);
}

TEST_F(AgentSessionTest, TheStreamEndingBeforeExitedIsAClearErrorNotAHang) {
  start_ready();
  ASSERT_FALSE(session->run(simple_run()));
  stream->deliver(Stdout{{'p', 'a', 'r', 't'}});
  stream->guest_reset("device reset");
  ASSERT_TRUE(wait_end());
  EXPECT_EQ(ended->reason, EndReason::StreamClosed);
  EXPECT_NE(ended->detail.find("device reset"), std::string::npos);
  EXPECT_NE(ended->detail.find("console log"), std::string::npos);
  EXPECT_FALSE(ended->exit);
}

TEST_F(AgentSessionTest, TheStreamEndingInTheMiddleOfAMessageIsAViolation) {
  start_ready();
  ASSERT_FALSE(session->run(simple_run()));
  const auto bytes = encode(Stdout{{'a', 'b'}});
  stream->deliver(std::span(bytes).first(bytes.size() - 1));
  stream->guest_eof();
  ASSERT_TRUE(wait_end());
  EXPECT_EQ(ended->reason, EndReason::ProtocolViolation);
}

TEST_F(AgentSessionTest, ShutdownWithoutTheStreamEndingTimesOut) {
  AgentSessionOptions o;
  o.shutdown_timeout = 30ms;
  start_ready(o);
  session->shutdown();
  EXPECT_EQ(session->state(), AgentSession::State::ShuttingDown);
  ASSERT_TRUE(wait_end());
  EXPECT_EQ(ended->reason, EndReason::ShutdownTimeout);
}

TEST_F(AgentSessionTest, ShutdownBeforeTheCommandExitedEndsAsStopped) {
  start_ready();
  ASSERT_FALSE(session->run(simple_run()));
  session->shutdown();
  stream->guest_reset("guest powered off");
  ASSERT_TRUE(wait_end());
  EXPECT_EQ(ended->reason, EndReason::Stopped);
  EXPECT_TRUE(ended->ok());
}

TEST_F(AgentSessionTest, ControlMessagesAreSentInOrder) {
  start_ready();
  ASSERT_FALSE(session->run(agent::Run{{"sh"}, {}, "", true, 24, 80, ""}));
  const std::vector<uint8_t> keys = {'l', 's', '\n'};
  EXPECT_EQ(session->send_stdin(keys), 3u);
  session->resize(50, 132);
  session->signal(2);
  session->signal(0);  // out of range: dropped, not encoded (encode would abort)
  session->signal(99);
  session->close_stdin();
  session->close_stdin();  // once only
  const auto sent = stream->host_messages();
  ASSERT_EQ(sent.size(), 6u);
  EXPECT_EQ(std::get<Stdin>(sent[2]).data, keys);
  EXPECT_EQ(std::get<Resize>(sent[3]), (Resize{50, 132}));
  EXPECT_EQ(std::get<Signal>(sent[4]).signo, 2);
  EXPECT_TRUE(std::holds_alternative<StdinEof>(sent[5]));
  EXPECT_EQ(session->send_stdin(keys), 0u);  // after close_stdin
}

TEST_F(AgentSessionTest, StdinIsBoundedWithoutCreditAndResumesOnWritable) {
  AgentSessionOptions o;
  o.max_stdin_queue = 100 * 1024;
  stream->credit = 0;
  start_ready(o);
  ASSERT_FALSE(session->run(simple_run()));
  std::vector<uint8_t> data(1 << 20);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 31 + 7);
  size_t sent = session->send_stdin(data);
  EXPECT_GT(sent, 0u);
  EXPECT_LE(sent, o.max_stdin_queue);
  EXPECT_EQ(session->send_stdin(std::span(data).subspan(sent)), 0u);
  EXPECT_GE(session->counters().write_stalls, 1u);
  // The guest grants credit in slices; the owner resumes on every on_stdin_writable.
  int rounds = 0;
  while (sent < data.size() && rounds++ < 1000) {
    const int before = writable;
    stream->grant(16 * 1024);
    if (writable > before) sent += session->send_stdin(std::span(data).subspan(sent));
  }
  stream->grant(std::numeric_limits<size_t>::max() / 2);
  ASSERT_EQ(sent, data.size());
  std::vector<uint8_t> got;
  for (const auto& m : stream->host_messages())
    if (const auto* s = std::get_if<Stdin>(&m)) got.insert(got.end(), s->data.begin(), s->data.end());
  EXPECT_EQ(got, data);
  EXPECT_GT(writable, 0);
}

TEST_F(AgentSessionTest, RunOverTheProtocolLimitsIsRefusedAndNothingIsSent) {
  start_ready();
  agent::Run r = simple_run();
  r.argv.assign(kMaxArgs + 1, "x");
  EXPECT_EQ(session->run(r), ProtocolError::TooMany);
  r = simple_run();
  r.env.assign(200, "BIG=" + std::string(1000, 'v'));  // each fine, 200 KB together: over one frame
  EXPECT_EQ(session->run(r), ProtocolError::Oversized);
  EXPECT_EQ(stream->host_messages().size(), 1u);  // just the Hello
  EXPECT_FALSE(session->run(simple_run()));       // a valid one still goes
  EXPECT_EQ(session->run(simple_run()), std::errc::operation_in_progress);
}

TEST_F(AgentSessionTest, GuestLogAndErrorReachTheirCallbacks) {
  start_ready();
  stream->deliver(Log{"network: eth0: 10.0.2.15/24"});
  stream->deliver(Error{"module virtio_rng: finit_module: No such file"});
  EXPECT_EQ(logs, std::vector<std::string>{"network: eth0: 10.0.2.15/24"});
  EXPECT_EQ(errors.size(), 1u);
  EXPECT_EQ(session->counters().guest_errors, 1u);
  EXPECT_FALSE(ended);
}

TEST_F(AgentSessionTest, ListenerEventsReachTheirCallbacks) {
  std::vector<Listener> seen;
  cb.on_listener_appeared = [&](const ListenerAppeared& l) { seen.push_back(l); };
  make();
  // make() keeps our on_listener_appeared since it only sets the other callbacks.
  session->start();
  stream->deliver(Ready{kProtocolVersion, "v", "k", 0});
  ListenerAppeared la;
  la.addr = IpAddr::v4(0, 0, 0, 0);
  la.port = 8080;
  stream->deliver(la);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].port, 8080);
}

TEST_F(AgentSessionTest, TheOwnerMayDestroyTheSessionFromOnEnd) {
  make();
  bool called = false;
  // Rebuild with an on_end that destroys the session.
  cb.on_end = [&](const SessionEnd&) {
    called = true;
    session.reset();
  };
  session = std::make_unique<AgentSession>(io.get_executor(), stream, cb, AgentSessionOptions{});
  session->start();
  stream->guest_reset("gone");
  ASSERT_TRUE(run_until(io, [&] { return called; }));
  EXPECT_FALSE(session);
  stream->deliver(Log{"late"});  // the stream outlives the session: must be harmless
}

TEST_F(AgentSessionTest, DestroyingTheSessionCancelsItsTimers) {
  AgentSessionOptions o;
  o.ready_timeout = 10ms;
  make(o);
  session->start();
  session.reset();
  run_until(
      io, [] { return false; }, 50ms);
  EXPECT_FALSE(ended);
}

}  // namespace
}  // namespace causeway::agent
