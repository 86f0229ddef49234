#pragma once
// The hostile peers of the security suite: raw TCP connections that send what they like, a
// client of the relay handshake with any secret, a forwarder that records what a real
// client sends (to replay it mutated), and proxies for arbitrary actor ids of a node.
// Everything binds and dials 127.0.0.1 only, and every wait is bounded.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/io/basp_broker.hpp>
#include <caf/io/network/multiplexer.hpp>

#include "actors/relay.hpp"
#include "actors/relay_handshake.hpp"

namespace glam::test {

// A connected TCP socket to 127.0.0.1:port (-1 when refused), with a 2 s receive timeout.
inline int connect_raw(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

inline bool send_all(int fd, const std::string& bytes) {
  std::size_t at = 0;
  while (at < bytes.size()) {
    auto n = ::send(fd, bytes.data() + at, bytes.size() - at, MSG_NOSIGNAL);
    if (n <= 0) return false;
    at += static_cast<std::size_t>(n);
  }
  return true;
}

// Reads exactly n bytes (empty on close or timeout).
inline std::string read_exact(int fd, std::size_t n) {
  std::string out(n, '\0');
  std::size_t at = 0;
  while (at < n) {
    auto k = ::recv(fd, out.data() + at, n - at, 0);
    if (k <= 0) return {};
    at += static_cast<std::size_t>(k);
  }
  return out;
}

// True when the peer closed the connection within the receive timeout.
inline bool closed_by_peer(int fd) {
  char buf[4096];
  for (int i = 0; i < 100; ++i) {
    auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0) return true;
    if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK;
  }
  return false;
}

// A BASP header as CAF 0.17 writes it (big-endian).
inline std::string basp_header(std::uint8_t op, std::uint32_t payload_len) {
  std::string h(basp_header_size, '\0');
  h[0] = static_cast<char>(op);
  for (int i = 0; i < 4; ++i) h[4 + i] = static_cast<char>((payload_len >> (24 - 8 * i)) & 0xff);
  return h;
}

// Runs the relay handshake as a client with `secret` on a fresh connection; returns the
// socket when the server accepted the proof (-1 otherwise). Loopback: no TLS.
inline int relay_client(int port, const std::string& secret) {
  int fd = connect_raw(port);
  if (fd < 0) return -1;
  relay_handshake hs(relay_handshake::role::client, secret, false);
  if (!send_all(fd, hs.hello())) return ::close(fd), -1;
  auto answer = read_exact(fd, relay_handshake::answer_size);
  if (answer.empty()) return ::close(fd), -1;
  auto proof = hs.proof(answer);
  if (proof.empty() || !send_all(fd, proof) || !hs.server_proved()) return ::close(fd), -1;
  if (read_exact(fd, relay_handshake::verdict_size) != "Y") return ::close(fd), -1;
  return fd;
}

// Relays one client connection to 127.0.0.1:target and records what the client sent.
class recording_forwarder {
 public:
  explicit recording_forwarder(int target) : target_(target) {
    listen_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listen_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(listen_, 4);
    socklen_t len = sizeof a;
    ::getsockname(listen_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~recording_forwarder() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    ::close(listen_);
  }
  int port() const { return port_; }
  // What the client sent, once its connection ended.
  std::string recorded() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    return sent_;
  }

 private:
  void run() {
    pollfd lp{listen_, POLLIN, 0};
    int client = -1;
    for (int i = 0; i < 3000 && !stop_ && client < 0; ++i)
      if (::poll(&lp, 1, 10) > 0) client = ::accept(listen_, nullptr, nullptr);
    if (client < 0) return;
    int server = connect_raw(target_);
    char buf[65536];
    for (bool open = true; open && !stop_;) {
      pollfd fds[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
      if (::poll(fds, 2, 50) <= 0) continue;
      for (int side = 0; side < 2; ++side) {
        if (!(fds[side].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        auto n = ::recv(fds[side].fd, buf, sizeof buf, 0);
        if (n <= 0) {
          open = false;
          break;
        }
        if (side == 0) sent_.append(buf, static_cast<std::size_t>(n));
        send_all(side == 0 ? server : client, std::string(buf, static_cast<std::size_t>(n)));
      }
    }
    ::close(client);
    ::close(server);
  }
  int target_, port_ = 0, listen_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::string sent_;
};

// Proxies for actor ids [first, last] of `node` (a node this system is connected to), as a
// peer that guesses actor ids would make them. Made on the calling thread: the proxy
// registry locks itself, and the multiplexer thread keeps a last-hop pointer that is only
// valid while it handles a message.
inline std::vector<caf::strong_actor_ptr> proxies_on(caf::actor_system& sys, const caf::node_id& node,
                                                     caf::actor_id first, caf::actor_id last) {
  auto basp = sys.middleman().named_broker<caf::io::basp_broker>(caf::atom("BASP"));
  auto* broker = static_cast<caf::io::basp_broker*>(caf::actor_cast<caf::abstract_actor*>(basp));
  std::vector<caf::strong_actor_ptr> out;
  for (auto id = first; id <= last; ++id) out.push_back(broker->instance.proxies().get_or_put(node, id));
  return out;
}

}  // namespace glam::test
