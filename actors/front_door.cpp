#include "actors/front_door.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <list>
#include <stdexcept>
#include <vector>

#include <spdlog/spdlog.h>

namespace glam {

std::string check_basp_header(const unsigned char* h, const front_door_limits& limits) {
  if (h[0] > basp_max_operation) return "unknown BASP operation " + std::to_string(h[0]);
  std::uint32_t len = (std::uint32_t{h[4]} << 24) | (std::uint32_t{h[5]} << 16) | (std::uint32_t{h[6]} << 8) | h[7];
  if (len > limits.max_payload)
    return "BASP payload of " + std::to_string(len) + " bytes exceeds the bound of " +
           std::to_string(limits.max_payload);
  return {};
}

namespace {

void set_nonblocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

struct pipe_buffer {
  std::vector<char> data;
  std::size_t begin = 0;
  std::size_t size() const { return data.size() - begin; }
  void compact() {
    if (begin > 0 && begin == data.size()) {
      data.clear();
      begin = 0;
    }
  }
};

// One relayed connection: outer (the peer) and inner (CAF on loopback).
struct relay {
  int outer = -1;
  int inner = -1;
  pipe_buffer to_inner;  // checked bytes waiting for CAF
  pipe_buffer to_outer;  // CAF's bytes waiting for the peer
  // Inbound framing: header bytes collected, then payload bytes to pass through.
  unsigned char header[basp_header_size];
  std::size_t header_have = 0;
  std::uint64_t payload_left = 0;
  bool closing = false;
};

// Moves bytes from the peer through the framing check into to_inner; false: close.
bool feed_inbound(relay& r, const char* p, std::size_t n, const front_door_limits& limits,
                  front_door_counters& c) {
  while (n > 0) {
    if (r.payload_left > 0) {
      auto k = static_cast<std::size_t>(std::min<std::uint64_t>(r.payload_left, n));
      r.to_inner.data.insert(r.to_inner.data.end(), p, p + k);
      r.payload_left -= k;
      p += k;
      n -= k;
      continue;
    }
    auto k = std::min(basp_header_size - r.header_have, n);
    std::memcpy(r.header + r.header_have, p, k);
    r.header_have += k;
    p += k;
    n -= k;
    if (r.header_have < basp_header_size) break;
    auto why = check_basp_header(r.header, limits);
    if (!why.empty()) {
      ++c.refused_frames;
      spdlog::warn("front door: closing a connection: {}", why);
      return false;
    }
    r.to_inner.data.insert(r.to_inner.data.end(), reinterpret_cast<char*>(r.header),
                           reinterpret_cast<char*>(r.header) + basp_header_size);
    r.payload_left = (std::uint32_t{r.header[4]} << 24) | (std::uint32_t{r.header[5]} << 16) |
                     (std::uint32_t{r.header[6]} << 8) | r.header[7];
    r.header_have = 0;
  }
  return true;
}

// Writes what buf holds to fd; false on a hard error.
bool drain(int fd, pipe_buffer& buf) {
  while (buf.size() > 0) {
    auto n = ::send(fd, buf.data.data() + buf.begin, buf.size(), MSG_NOSIGNAL);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
    buf.begin += static_cast<std::size_t>(n);
  }
  buf.compact();
  return true;
}

}  // namespace

front_door::front_door(const std::string& host, int port, int inner_port, front_door_limits limits)
    : inner_port_(inner_port), limits_(limits), counters_(std::make_unique<front_door_counters>()) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1) {
    ::close(listen_fd_);
    throw std::runtime_error("listen address '" + host + "' is not an IPv4 address (e.g. 127.0.0.1)");
  }
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listen_fd_, 64) != 0) {
    auto err = std::string(std::strerror(errno));
    ::close(listen_fd_);
    throw std::runtime_error("cannot listen on " + host + ":" + std::to_string(port) + ": " + err +
                             " (port in use? give another --listen)");
  }
  socklen_t len = sizeof a;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
  set_nonblocking(listen_fd_);
  if (::pipe(wake_) != 0) throw std::runtime_error("front door: pipe() failed");
  thread_ = std::thread([this] { run(); });
}

front_door::~front_door() {
  char x = 0;
  if (::write(wake_[1], &x, 1) < 0) { /* the thread also stops on its own when the fd closes */ }
  if (thread_.joinable()) thread_.join();
  ::close(listen_fd_);
  ::close(wake_[0]);
  ::close(wake_[1]);
}

void front_door::run() {
  std::list<relay> relays;
  auto& c = *counters_;
  std::vector<char> buf(64 * 1024);
  for (;;) {
    std::vector<pollfd> fds;
    fds.push_back({wake_[0], POLLIN, 0});
    fds.push_back({listen_fd_, POLLIN, 0});
    std::vector<relay*> owners;
    for (auto& r : relays) {
      short out_ev = 0, in_ev = 0;
      // Backpressure: read from a side only while the other side's buffer has room.
      if (!r.closing && r.to_inner.size() < limits_.buffer_bytes) out_ev |= POLLIN;
      if (r.to_outer.size() > 0) out_ev |= POLLOUT;
      if (!r.closing && r.to_outer.size() < limits_.buffer_bytes) in_ev |= POLLIN;
      if (r.to_inner.size() > 0) in_ev |= POLLOUT;
      fds.push_back({r.outer, out_ev, 0});
      fds.push_back({r.inner, in_ev, 0});
      owners.push_back(&r);
    }
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[0].revents) break;
    if (fds[1].revents & POLLIN) {
      for (;;) {
        int fd = ::accept(listen_fd_, nullptr, nullptr);
        if (fd < 0) break;
        if (static_cast<int>(relays.size()) >= limits_.max_connections) {
          ++c.refused_connections;
          ::close(fd);
          continue;
        }
        int in = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(static_cast<std::uint16_t>(inner_port_));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(in, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
          ::close(in);
          ::close(fd);
          continue;
        }
        int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        ::setsockopt(in, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        set_nonblocking(fd);
        set_nonblocking(in);
        relays.emplace_back();
        relays.back().outer = fd;
        relays.back().inner = in;
        ++c.accepted;
      }
    }
    for (std::size_t i = 0; i < owners.size(); ++i) {
      relay& r = *owners[i];
      auto& fo = fds[2 + 2 * i];
      auto& fi = fds[2 + 2 * i + 1];
      bool ok = true;
      if (fo.revents & (POLLIN | POLLHUP | POLLERR)) {
        auto n = ::recv(r.outer, buf.data(), buf.size(), 0);
        if (n > 0) {
          c.bytes_in += n;
          ok = feed_inbound(r, buf.data(), static_cast<std::size_t>(n), limits_, c);
        } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
          r.closing = true;  // peer gone (possibly mid-message): flush nothing more, close
          ok = false;
        }
      }
      if (ok && (fi.revents & (POLLIN | POLLHUP | POLLERR))) {
        auto n = ::recv(r.inner, buf.data(), buf.size(), 0);
        if (n > 0) {
          c.bytes_out += n;
          r.to_outer.data.insert(r.to_outer.data.end(), buf.data(), buf.data() + n);
        } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
          ok = false;
        }
      }
      if (ok) ok = drain(r.inner, r.to_inner) && drain(r.outer, r.to_outer);
      if (!ok) {
        ::close(r.outer);
        ::close(r.inner);
        r.outer = r.inner = -1;
      }
    }
    relays.remove_if([](const relay& r) { return r.outer < 0; });
  }
  for (auto& r : relays) {
    ::close(r.outer);
    ::close(r.inner);
  }
}

}  // namespace glam
