#pragma once
// A plain-socket HTTP/1.1 client for the tests of glam's HTTP servers (the HTTP module and
// glam serve): a small response reader written here, so the servers are checked against
// bytes on the wire rather than against a second implementation. Every read has a deadline.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <map>
#include <optional>
#include <string>

namespace glam::testing {

using namespace std::chrono_literals;

using http_clock = std::chrono::steady_clock;

// Generous: these bound waits for things that take milliseconds.
inline constexpr std::chrono::milliseconds http_wait_limit = 20s;

struct http_reply {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string header(const std::string& n) const {
    auto it = headers.find(n);
    return it == headers.end() ? std::string() : it->second;
  }
};

inline std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// One client connection with a deadline on every read.
class http_client {
 public:
  explicit http_client(int port, int receive_buffer = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (receive_buffer > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~http_client() { close(); }
  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;

  bool connected() const { return connected_; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  bool send(const std::string& bytes) {
    std::size_t off = 0;
    while (off < bytes.size()) {
      ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<std::size_t>(n);
    }
    return true;
  }

  // More bytes into buf_; false on close, error or deadline.
  bool fill(http_clock::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - http_clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) return false;
    char tmp[65536];
    ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    buf_.append(tmp, static_cast<std::size_t>(n));
    return true;
  }

  std::optional<std::string> read_line(http_clock::time_point deadline) {
    for (;;) {
      auto pos = buf_.find("\r\n");
      if (pos != std::string::npos) {
        std::string line = buf_.substr(0, pos);
        buf_.erase(0, pos + 2);
        return line;
      }
      if (!fill(deadline)) return std::nullopt;
    }
  }

  std::optional<std::string> read_exact(std::size_t n, http_clock::time_point deadline) {
    while (buf_.size() < n)
      if (!fill(deadline)) return std::nullopt;
    std::string out = buf_.substr(0, n);
    buf_.erase(0, n);
    return out;
  }

  // Status line and headers of the next response.
  std::optional<http_reply> read_head(http_clock::time_point deadline = http_clock::now() + http_wait_limit) {
    auto status_line = read_line(deadline);
    if (!status_line || status_line->rfind("HTTP/1.1 ", 0) != 0) return std::nullopt;
    http_reply r;
    r.status = std::stoi(status_line->substr(9, 3));
    for (;;) {
      auto line = read_line(deadline);
      if (!line) return std::nullopt;
      if (line->empty()) break;
      auto colon = line->find(':');
      if (colon == std::string::npos) return std::nullopt;
      std::string value = line->substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      r.headers[lower(line->substr(0, colon))] = value;
    }
    return r;
  }

  // One chunk of a chunked body; "" for the last.
  std::optional<std::string> read_chunk(http_clock::time_point deadline = http_clock::now() + http_wait_limit) {
    auto size_line = read_line(deadline);
    if (!size_line) return std::nullopt;
    std::size_t n = std::stoul(*size_line, nullptr, 16);
    auto data = read_exact(n, deadline);
    auto crlf = read_line(deadline);
    if (!data || !crlf || !crlf->empty()) return std::nullopt;
    return data;
  }

  std::optional<http_reply> read_reply(http_clock::time_point deadline = http_clock::now() + http_wait_limit) {
    auto r = read_head(deadline);
    if (!r) return std::nullopt;
    if (r->status == 100) return read_reply(deadline);
    if (r->status == 204 || r->status == 304) return r;
    if (!r->header("content-length").empty()) {
      auto body = read_exact(std::stoul(r->header("content-length")), deadline);
      if (!body) return std::nullopt;
      r->body = *body;
    } else if (lower(r->header("transfer-encoding")) == "chunked") {
      for (;;) {
        auto c = read_chunk(deadline);
        if (!c) return std::nullopt;
        if (c->empty()) break;
        r->body += *c;
      }
    } else {
      while (fill(deadline)) {
      }
      r->body = buf_;
      buf_.clear();
    }
    return r;
  }

  // The next server-sent event's data (its "data: " lines joined), from a chunked stream;
  // nullopt at the end of the stream or on timeout.
  std::optional<std::string> read_event(http_clock::time_point deadline = http_clock::now() + http_wait_limit) {
    for (;;) {
      const auto end = events_.find("\n\n");
      if (end != std::string::npos) {
        std::string event = events_.substr(0, end), data;
        events_.erase(0, end + 2);
        std::size_t at = 0;
        while (at < event.size()) {
          std::size_t line_end = event.find('\n', at);
          if (line_end == std::string::npos) line_end = event.size();
          const std::string line = event.substr(at, line_end - at);
          if (line.rfind("data: ", 0) == 0) data += (data.empty() ? "" : "\n") + line.substr(6);
          at = line_end + 1;
        }
        return data;
      }
      auto chunk = read_chunk(deadline);
      if (!chunk || chunk->empty()) return std::nullopt;
      events_ += *chunk;
    }
  }

  // True once the server has closed the connection (EOF or reset), within the limit.
  bool closed_by_server(std::chrono::milliseconds limit = http_wait_limit) {
    auto deadline = http_clock::now() + limit;
    while (!eof_) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - http_clock::now()).count();
      if (left <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left)) <= 0) return false;
      char tmp[4096];
      ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n <= 0) eof_ = true;
    }
    return true;
  }

  std::string& buffered() { return buf_; }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool eof_ = false;
  std::string buf_, events_;
};

}  // namespace glam::testing
