// libFuzzer target: the host's ends of the agent's vsock streams, fed by a hostile guest —
// AgentSession (the protocol state machine: Hello → Ready → Run → output → Exited, listener
// events, mirror reports, shutdown) and the relay channel (VsockRelayConnector's handshake and
// the bridge it hands over to, VsockRelayDatagramChannel's framed datagrams).
//
// Input: u8 mode (% 3: 0 session, 1 relay connector, 2 datagram channel), then a program of
// ops (u8 op % 8) on the current guest stream (tests/support/fake_vsock_stream.hpp):
//   0 deliver: u16 length, bytes (what the guest agent sends)
//   1 grant: u16 credit (the guest reads)    2 guest EOF    3 guest reset
//   4 host action: u8 (session: run / send_stdin / close_stdin / signal / resize /
//     shutdown / pause / resume / mirror_apply / dns_config / abort; relay: a new connection
//     or flow, host bytes into the bridge, close a flow)
//   5 the next connect() the guest answers with: u8 (0 a stream, else ECONNREFUSED)
//   6 switch to stream: u8 index    7 run the loop
// A fresh session/connector per input; the loop runs until idle after every op.
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include <spdlog/spdlog.h>

#include "tests/fuzz/fuzz_input.hpp"
#include "tests/support/fake_vsock_stream.hpp"
#include "vmm/agent/relay.hpp"
#include "vmm/agent/relay_client.hpp"
#include "vmm/agent/session.hpp"

using namespace causeway;
using testing::FakeVsockStream;

namespace {

class FakeVsockHost final : public vmm::VsockHost {
 public:
  explicit FakeVsockHost(boost::asio::io_context& io) : io_(io) {}
  void listen(uint32_t, vmm::VsockAcceptHandler) override {}
  void connect(uint32_t, vmm::VsockConnectHandler on_connect) override {
    const bool refuse = refuse_next;
    boost::asio::post(io_, [this, refuse, h = std::move(on_connect)] {
      if (refuse) return h(boost::asio::error::connection_refused, nullptr);
      auto s = std::make_shared<FakeVsockStream>();
      s->credit = 4096;
      if (streams.size() < 32) streams.push_back(s);
      h({}, s);
    });
  }
  bool refuse_next = false;
  std::vector<std::shared_ptr<FakeVsockStream>> streams;

 private:
  boost::asio::io_context& io_;
};

void settle(boost::asio::io_context& io) {
  for (int i = 0; i < 4; ++i) {
    io.poll();
    io.restart();
  }
}

agent::Run some_run(fuzz::FuzzInput& in) {
  agent::Run r;
  r.argv = {"/bin/sh", "-c", "true"};
  r.tty = in.u8() & 1;
  r.rows = 24;
  r.cols = 80;
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static auto* io = new boost::asio::io_context;
  fuzz::FuzzInput in(data, size);
  const uint8_t mode = in.u8() % 3;
  FakeVsockHost host(*io);
  std::unique_ptr<agent::AgentSession> session;
  std::unique_ptr<agent::VsockRelayConnector> connector;
  std::unique_ptr<agent::VsockRelayDatagramChannel> channel;
  std::vector<portfwd::StreamSocket> sockets;
  std::vector<uint16_t> flows;
  size_t current = 0;
  if (mode == 0) {
    auto s = std::make_shared<FakeVsockStream>();
    host.streams.push_back(s);
    agent::AgentCallbacks cb;
    cb.on_stdout = [&](std::span<const uint8_t>) {};
    cb.on_end = [&](const agent::SessionEnd&) {};
    session = std::make_unique<agent::AgentSession>(io->get_executor(), s, std::move(cb));
    session->start();
    (void)session->configure_network(agent::NetConfig{});
  } else if (mode == 1) {
    connector = std::make_unique<agent::VsockRelayConnector>(*io, host, 4);
  } else {
    channel = std::make_unique<agent::VsockRelayDatagramChannel>(*io, host, 4);
  }
  auto stream = [&]() -> FakeVsockStream* {
    if (host.streams.empty()) return nullptr;
    return host.streams[current % host.streams.size()].get();
  };
  while (!in.empty()) {
    const uint8_t op = in.u8() % 8;
    auto* s = stream();
    switch (op) {
      case 0: {
        const auto b = in.bytes(in.u16());
        if (s) s->deliver(b);
        break;
      }
      case 1: {
        const uint16_t n = in.u16();
        if (s) s->grant(n);
        break;
      }
      case 2:
        if (s) s->guest_eof();
        break;
      case 3:
        if (s) s->guest_reset("reset by the guest");
        break;
      case 4: {
        const uint8_t a = in.u8();
        if (session) {
          switch (a % 11) {
            case 0: (void)session->run(some_run(in)); break;
            case 1: (void)session->send_stdin(in.bytes(in.u16())); break;
            case 2: session->close_stdin(); break;
            case 3: session->signal(in.u8()); break;
            case 4: session->resize(in.u16(), in.u16()); break;
            case 5: session->shutdown(); break;
            case 6: session->pause_receive(true); break;
            case 7: session->pause_receive(false); break;
            case 8: (void)session->mirror_apply(agent::MirrorApply{}); break;
            case 9: (void)session->dns_config(agent::DnsConfig{}); break;
            default: session->abort(); break;
          }
        } else if (connector) {
          if (a & 1) {
            connector->async_connect(portfwd::GuestTarget(static_cast<uint16_t>(1 + in.u16() % 65535)),
                                     [&](boost::system::error_code ec, portfwd::StreamSocket sock) {
                                       if (!ec && sockets.size() < 8) sockets.push_back(std::move(sock));
                                     });
          } else if (!sockets.empty()) {
            const auto b = in.bytes(in.u16());
            boost::system::error_code ec;
            (void)sockets.back().write_some(boost::asio::buffer(b.data(), b.size()), ec);
            if (a & 2) sockets.back().shutdown(boost::asio::socket_base::shutdown_send, ec);
            if (a & 4) sockets.pop_back();
          }
        } else {
          if (a % 3 == 0) {
            if (auto f =
                    channel->open_flow(static_cast<uint16_t>(1 + in.u16() % 65535), [](std::span<const uint8_t>) {}))
              flows.push_back(*f);
          } else if (!flows.empty()) {
            const uint16_t f = flows[in.u8() % flows.size()];
            if (a % 3 == 1) {
              (void)channel->send_on_flow(f, in.bytes(in.u16()));
            } else {
              channel->close_flow(f);
            }
          }
        }
        break;
      }
      case 5: host.refuse_next = in.u8() != 0; break;
      case 6: current = in.u8(); break;
      default: break;
    }
    settle(*io);
  }
  settle(*io);
  session.reset();
  sockets.clear();
  connector.reset();
  channel.reset();
  settle(*io);
  host.streams.clear();
  return 0;
}
