#include "actors/http_server.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include <nlohmann/json.hpp>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>

namespace glam {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

// Static files larger than this are refused (500): the dashboard's libraries are well under.
constexpr std::uintmax_t max_static_file_bytes = 32u << 20;
// After a response that closes the connection, the request bytes still arriving are read and
// dropped for this long (or this many bytes) before the close, so the client receives the
// response instead of a reset (the lingering close of other servers).
constexpr std::chrono::milliseconds linger_time{2'000};
constexpr std::size_t linger_bytes = 1u << 20;
constexpr std::size_t peek_bytes = 4096;

std::string to_string(beast::string_view v) { return std::string(v.data(), v.size()); }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

bool is_token_char(char c) {
  if (std::isalnum(static_cast<unsigned char>(c))) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// Empty when the handler's extra header may be sent, else why not.
std::string check_header(const std::string& name, const std::string& value) {
  if (name.empty() || !std::all_of(name.begin(), name.end(), is_token_char))
    return "header name '" + name + "' is not an HTTP token";
  for (char c : value)
    if (c == '\r' || c == '\n' || c == '\0') return "header '" + name + "' has a line break or NUL in its value";
  static const char* framing[] = {"content-length", "transfer-encoding", "connection", "keep-alive",
                                  "upgrade", "te", "trailer", "server", "content-type"};
  for (const char* f : framing)
    if (iequals(name, f)) return "header '" + name + "' is written by the server";
  return {};
}

std::string check_response(int status, const std::string& content_type, const http_headers& headers) {
  if (status < 200 || status > 599) return "status " + std::to_string(status) + " is not a final status (200-599)";
  for (char c : content_type)
    if (c == '\r' || c == '\n' || c == '\0') return "Content-Type has a line break or NUL";
  for (const auto& [name, value] : headers)
    if (auto why = check_header(name, value); !why.empty()) return why;
  return {};
}

int status_class(int status) { return std::clamp(status / 100, 1, 5); }

bool status_has_body(int status) { return status != 204 && status != 304; }

// The status line and headers. content_length: a fixed-length body; nullopt: a stream.
std::string serialize_head(int status, const std::string& content_type, const http_headers& headers,
                           int version, bool keep_alive, std::optional<std::size_t> content_length) {
  std::string reason = to_string(bhttp::obsolete_reason(bhttp::int_to_status(static_cast<unsigned>(status))));
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\nServer: glam\r\n";
  if (status_has_body(status)) {
    if (!content_type.empty()) out += "Content-Type: " + content_type + "\r\n";
    if (content_length)
      out += "Content-Length: " + std::to_string(*content_length) + "\r\n";
    else if (version >= 11)
      out += "Transfer-Encoding: chunked\r\n";
  }
  if (!keep_alive)
    out += "Connection: close\r\n";
  else if (version < 11)
    out += "Connection: keep-alive\r\n";
  for (const auto& [name, value] : headers) out += name + ": " + value + "\r\n";
  out += "\r\n";
  return out;
}

std::string serialize_response(const http_response& r, int version, bool keep_alive, bool head_only) {
  bool body = status_has_body(r.status);
  std::string out = serialize_head(r.status, r.content_type, r.headers, version, keep_alive,
                                   body ? std::optional<std::size_t>(r.body.size()) : std::nullopt);
  if (body && !head_only) out += r.body;
  return out;
}

std::string error_json_type(int status) { return status >= 500 ? "server_error" : "invalid_request_error"; }

http_response error_response(int status, const std::string& message) {
  return openai_error(status, message, error_json_type(status));
}

std::string hex(std::size_t n) {
  std::ostringstream s;
  s << std::hex << n;
  return s.str();
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      int hi = hex_digit(s[i + 1]), lo = hex_digit(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

struct atomic_counters {
  std::atomic<std::int64_t> connections_accepted{0}, connections_refused{0}, connections_open{0}, requests{0},
      bad_requests{0}, idle_timeouts{0}, read_timeouts{0}, write_timeouts{0}, slow_stream_clients{0},
      client_disconnects{0}, streams{0}, handler_errors{0};
  std::array<std::atomic<std::int64_t>, 6> responses_by_class{};
};

class connection;

}  // namespace

struct http_server_core : std::enable_shared_from_this<http_server_core> {
  explicit http_server_core(http_server_options o) : options(std::move(o)) {}

  http_server_options options;
  struct route {
    std::string method;
    http_handler handler;
  };
  std::map<std::string, std::vector<route>> routes;  // by path; fixed after start()
  atomic_counters counters;

  std::mutex mutex;  // guards what follows until ioc
  std::condition_variable threads_done;
  int threads_running = 0;
  bool started = false;
  bool stopped = false;
  std::unordered_map<std::uint64_t, std::weak_ptr<connection>> connections;
  std::uint64_t next_connection = 0;
  std::vector<std::thread> threads;
  int bound_port = 0;
  std::string bound_host;

  // Declared after everything a pending handler may touch, so that it is destroyed first: its
  // destructor destroys the handlers (and with them the connections) while the rest lives.
  asio::io_context ioc;
  std::optional<tcp::acceptor> acceptor;  // destroyed before ioc
  std::optional<asio::steady_timer> accept_retry;

  void accept_next();
  void on_accept(const boost::system::error_code& ec, tcp::socket socket);
  void refuse(tcp::socket& socket);
};

namespace {

enum class read_phase { idle, request, linger };

// One client connection. Every member is used on the connection's strand only, except
// `backlog` (atomic), which responders on other threads check before they queue bytes.
class connection : public std::enable_shared_from_this<connection> {
 public:
  connection(http_server_core* core, tcp::socket socket, std::uint64_t id, std::string remote)
      : core_(core),
        socket_(std::move(socket)),
        read_timer_(socket_.get_executor()),
        write_timer_(socket_.get_executor()),
        buffer_(core->options.limits.max_header_bytes + 65536),
        id_(id),
        remote_(std::move(remote)) {}

  ~connection() {
    if (!closed_) core_->counters.connections_open.fetch_sub(1);
    std::lock_guard<std::mutex> lock(core_->mutex);
    core_->connections.erase(id_);
  }

  const http_limits& limits() const { return core_->options.limits; }
  atomic_counters& counters() { return core_->counters; }
  template <class F>
  void post(F&& f) {
    asio::post(socket_.get_executor(), std::forward<F>(f));
  }

  void start() { begin_idle_wait(); }

  // --- called (posted) by the exchange ---
  void send_final(std::string bytes, int status, bool counted);
  void send_stream_start(std::string bytes, int status, bool keep_alive);
  void send_more(std::string bytes) { queue_write(std::move(bytes)); }
  void close_slow() {
    if (closed_) return;
    counters().slow_stream_clients.fetch_add(1);
    close();
  }
  void close();

  std::atomic<std::size_t> backlog{0};

 private:
  void begin_idle_wait();
  void start_peek();
  void on_peek(const boost::system::error_code& ec, std::size_t n);
  void read_header();
  void on_header(const boost::system::error_code& ec);
  void on_body(const boost::system::error_code& ec);
  void handle_read_error(const boost::system::error_code& ec);
  void reply_error(int status, const std::string& message);
  void on_request();
  void queue_write(std::string bytes);
  void write_next();
  void on_write(const boost::system::error_code& ec);
  void after_drain();
  void finish_exchange();
  void graceful_close();
  void arm_read_timer(std::chrono::milliseconds d, read_phase phase);
  void disarm_read_timer();
  void arm_write_timer();
  void disarm_write_timer();

  http_server_core* core_;  // outlives every connection (see http_server_core::ioc)
  tcp::socket socket_;
  asio::steady_timer read_timer_;
  asio::steady_timer write_timer_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::deque<std::string> out_;
  std::vector<std::string> in_flight_;
  std::uint64_t id_;
  std::string remote_;
  std::uint64_t read_generation_ = 0;
  std::uint64_t write_generation_ = 0;
  read_phase read_phase_ = read_phase::idle;
  bool reading_ = false;
  bool writing_ = false;
  bool closed_ = false;
  bool lingering_ = false;
  std::size_t lingered_ = 0;
  bool resume_after_cancel_ = false;
  bool exchange_active_ = false;  // a request is being answered
  bool final_queued_ = false;     // its last bytes are queued
  bool keep_alive_ = true;
  bool close_after_write_ = false;
  std::weak_ptr<http_exchange> exchange_;
};

}  // namespace

// One request's answer in progress, shared by the handler's responders. The connection holds
// it weakly (to tell it of a disconnect); the responders own it.
struct http_exchange {
  enum class state { waiting, streaming, done };

  http_exchange(std::shared_ptr<http_server_core> c, std::shared_ptr<connection> conn, int version,
                bool keep_alive, bool head_only)
      : core(std::move(c)), conn(std::move(conn)), version(version), keep_alive(keep_alive), head_only(head_only) {}

  ~http_exchange() {
    if (disconnected) return;
    if (st == state::waiting) {
      core->counters.handler_errors.fetch_add(1);
      std::string bytes = serialize_response(error_response(500, "the handler returned no response"), version,
                                             keep_alive, head_only);
      conn->backlog.fetch_add(bytes.size());
      conn->post([c = conn, bytes = std::move(bytes)]() mutable { c->send_final(std::move(bytes), 500, true); });
    } else if (st == state::streaming) {
      std::string end = version >= 11 ? "0\r\n\r\n" : "";
      conn->backlog.fetch_add(end.size());
      conn->post([c = conn, end = std::move(end)]() mutable { c->send_final(std::move(end), 0, false); });
    }
  }

  // On the connection's strand.
  void notify_disconnect() {
    std::function<void()> callback;
    {
      std::lock_guard<std::mutex> lock(mutex);
      disconnected = true;
      callback = std::move(on_disconnect);
      on_disconnect = nullptr;
    }
    if (callback) {
      try {
        callback();
      } catch (const std::exception& e) {
        spdlog::warn("http: a disconnect callback threw: {}", e.what());
      }
    }
  }
  // On the connection's strand, once the response is written in full.
  void complete() {
    std::lock_guard<std::mutex> lock(mutex);
    on_disconnect = nullptr;  // it may hold a responder: drop it so the exchange can end
  }

  bool queue_chunk(std::string_view bytes) {
    std::lock_guard<std::mutex> lock(mutex);
    if (st != state::streaming || disconnected || refused) return false;
    if (bytes.empty() || head_only) return true;  // an empty chunk would end the stream
    std::string framed = version >= 11 ? hex(bytes.size()) + "\r\n" + std::string(bytes) + "\r\n" : std::string(bytes);
    std::size_t before = conn->backlog.fetch_add(framed.size());
    if (before + framed.size() > core->options.limits.max_stream_backlog) {
      conn->backlog.fetch_sub(framed.size());
      refused = true;
      conn->post([c = conn] { c->close_slow(); });
      return false;
    }
    conn->post([c = conn, framed = std::move(framed)]() mutable { c->send_more(std::move(framed)); });
    return true;
  }

  // Members in this order: conn is released before core (core may be the last owner of the
  // io_context that conn's socket belongs to).
  std::shared_ptr<http_server_core> core;
  std::shared_ptr<connection> conn;
  const int version;
  const bool keep_alive;
  const bool head_only;
  std::mutex mutex;
  state st = state::waiting;
  bool disconnected = false;
  bool refused = false;  // the stream overflowed its backlog
  std::function<void()> on_disconnect;
};

// ---------------------------------------------------------------------------------------------
// connection

namespace {

void connection::begin_idle_wait() {
  arm_read_timer(limits().idle_timeout, read_phase::idle);
  start_peek();
}

void connection::start_peek() {
  std::size_t room = buffer_.max_size() - buffer_.size();
  if (room == 0 || reading_) return;
  reading_ = true;
  socket_.async_read_some(buffer_.prepare(std::min(room, peek_bytes)),
                          [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
                            self->on_peek(ec, n);
                          });
}

void connection::on_peek(const boost::system::error_code& ec, std::size_t n) {
  reading_ = false;
  if (closed_) return;
  if (lingering_) {
    if (ec) return close();
    lingered_ += n;
    buffer_.consume(buffer_.size());
    if (lingered_ > linger_bytes) return close();
    return start_peek();
  }
  if (ec == asio::error::operation_aborted && resume_after_cancel_) {
    resume_after_cancel_ = false;
    return read_header();
  }
  if (ec) {
    if (exchange_active_) counters().client_disconnects.fetch_add(1);
    return close();
  }
  buffer_.commit(n);
  if (exchange_active_) return start_peek();  // keep watching for the client leaving
  read_header();
}

void connection::read_header() {
  resume_after_cancel_ = false;
  parser_.emplace();
  parser_->header_limit(static_cast<std::uint32_t>(limits().max_header_bytes));
  parser_->body_limit(static_cast<std::uint64_t>(limits().max_body_bytes));
  arm_read_timer(limits().read_timeout, read_phase::request);
  reading_ = true;
  bhttp::async_read_header(socket_, buffer_, *parser_,
                           [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
                             self->on_header(ec);
                           });
}

void connection::on_header(const boost::system::error_code& ec) {
  reading_ = false;
  if (closed_) return;
  if (ec) return handle_read_error(ec);
  const auto& req = parser_->get();
  if (req.version() >= 11 && iequals(to_string(req[bhttp::field::expect]), "100-continue") && !parser_->is_done()) {
    std::string cont = "HTTP/1.1 100 Continue\r\n\r\n";
    backlog.fetch_add(cont.size());
    queue_write(std::move(cont));
  }
  if (parser_->is_done()) return on_request();
  reading_ = true;
  bhttp::async_read(socket_, buffer_, *parser_,
                    [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) { self->on_body(ec); });
}

void connection::on_body(const boost::system::error_code& ec) {
  reading_ = false;
  if (closed_) return;
  if (ec) return handle_read_error(ec);
  on_request();
}

void connection::handle_read_error(const boost::system::error_code& ec) {
  if (ec == asio::error::operation_aborted) return;  // closed by a timer or stop()
  if (ec.category() != bhttp::make_error_code(bhttp::error::end_of_stream).category() ||
      ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message) {
    return close();  // the client closed or reset the connection
  }
  if (ec == bhttp::error::body_limit)
    return reply_error(413, "request body larger than the limit of " + std::to_string(limits().max_body_bytes) +
                                " bytes");
  if (ec == bhttp::error::header_limit || ec == bhttp::error::buffer_overflow)
    return reply_error(431, "request header larger than the limit of " +
                                std::to_string(limits().max_header_bytes) + " bytes");
  reply_error(400, "malformed HTTP request: " + ec.message());
}

void connection::reply_error(int status, const std::string& message) {
  disarm_read_timer();
  counters().bad_requests.fetch_add(1);
  counters().responses_by_class[status_class(status)].fetch_add(1);
  keep_alive_ = false;
  close_after_write_ = true;
  std::string bytes = serialize_response(error_response(status, message), 11, false, false);
  backlog.fetch_add(bytes.size());
  queue_write(std::move(bytes));
}

void connection::on_request() {
  disarm_read_timer();
  counters().requests.fetch_add(1);
  auto message = parser_->release();
  parser_.reset();

  http_request request;
  request.method = to_string(message.method_string());
  request.target = to_string(message.target());
  auto q = request.target.find('?');
  request.path = request.target.substr(0, q);
  if (q != std::string::npos) request.query = request.target.substr(q + 1);
  request.version = static_cast<int>(message.version());
  for (const auto& field : message) request.headers.emplace_back(to_string(field.name_string()), to_string(field.value()));
  request.body = std::move(message.body());
  request.remote_address = remote_;

  keep_alive_ = message.keep_alive();
  const bool head_only = request.method == "HEAD";
  exchange_active_ = true;
  final_queued_ = false;
  auto exchange = std::make_shared<http_exchange>(
      core_->shared_from_this(), shared_from_this(),
      request.version, keep_alive_, head_only);
  exchange_ = exchange;
  start_peek();  // notice a client that leaves while the handler works
  http_responder responder(std::move(exchange));

  if (request.path.empty() || request.path[0] != '/') {
    responder.respond(error_response(400, "request target must start with '/'"));
    return;
  }
  auto it = core_->routes.find(request.path);
  if (it == core_->routes.end()) {
    responder.respond(error_response(404, "no route for " + request.path));
    return;
  }
  const http_handler* handler = nullptr;
  std::string allow;
  for (const auto& r : it->second) {
    if (r.method == request.method) handler = &r.handler;
    allow += (allow.empty() ? "" : ", ") + r.method;
  }
  if (!handler) {
    auto r = error_response(405, "method " + request.method + " is not allowed on " + request.path + " (allowed: " +
                                     allow + ")");
    r.headers.emplace_back("Allow", allow);
    responder.respond(std::move(r));
    return;
  }
  try {
    (*handler)(request, responder);
  } catch (const std::exception& e) {
    counters().handler_errors.fetch_add(1);
    spdlog::warn("http: handler for {} {} threw: {}", request.method, request.path, e.what());
    responder.respond(error_response(500, std::string("internal error: ") + e.what()));
  }
}

void connection::send_final(std::string bytes, int status, bool counted) {
  if (closed_) return;
  if (counted) counters().responses_by_class[status_class(status)].fetch_add(1);
  final_queued_ = true;
  if (!keep_alive_) close_after_write_ = true;
  queue_write(std::move(bytes));
}

void connection::send_stream_start(std::string bytes, int status, bool keep_alive) {
  if (closed_) return;
  counters().responses_by_class[status_class(status)].fetch_add(1);
  counters().streams.fetch_add(1);
  keep_alive_ = keep_alive;
  queue_write(std::move(bytes));
}

void connection::queue_write(std::string bytes) {
  if (closed_) return;
  out_.push_back(std::move(bytes));
  if (!writing_) write_next();
}

void connection::write_next() {
  if (out_.empty()) {
    writing_ = false;
    disarm_write_timer();
    return after_drain();
  }
  writing_ = true;
  std::vector<asio::const_buffer> buffers;
  while (!out_.empty() && in_flight_.size() < 64) {
    in_flight_.push_back(std::move(out_.front()));
    out_.pop_front();
  }
  for (const auto& s : in_flight_) buffers.emplace_back(asio::buffer(s));
  arm_write_timer();
  asio::async_write(socket_, buffers, [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
    self->on_write(ec);
  });
}

void connection::on_write(const boost::system::error_code& ec) {
  std::size_t n = 0;
  for (const auto& s : in_flight_) n += s.size();
  in_flight_.clear();
  backlog.fetch_sub(n);
  if (closed_) return;
  if (ec) {
    if (exchange_active_) counters().client_disconnects.fetch_add(1);
    return close();
  }
  write_next();
}

void connection::after_drain() {
  if (exchange_active_ && final_queued_) return finish_exchange();
  if (!exchange_active_ && close_after_write_) return graceful_close();
}

void connection::finish_exchange() {
  exchange_active_ = false;
  final_queued_ = false;
  if (auto ex = exchange_.lock()) ex->complete();
  exchange_.reset();
  if (close_after_write_ || !keep_alive_) return graceful_close();
  if (reading_) {
    // The watch read is still out. With bytes of the next request already here, cut it short
    // (no write is out now, so cancel() touches nothing else); else it becomes the idle wait.
    if (buffer_.size() > 0) {
      resume_after_cancel_ = true;
      boost::system::error_code ignored;
      socket_.cancel(ignored);
    } else {
      arm_read_timer(limits().idle_timeout, read_phase::idle);
    }
    return;
  }
  if (buffer_.size() > 0) return read_header();
  begin_idle_wait();
}

void connection::graceful_close() {
  if (closed_ || lingering_) return;
  lingering_ = true;
  boost::system::error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_send, ignored);
  arm_read_timer(linger_time, read_phase::linger);
  buffer_.consume(buffer_.size());
  start_peek();
}

void connection::close() {
  if (closed_) return;
  closed_ = true;
  counters().connections_open.fetch_sub(1);
  ++read_generation_;
  ++write_generation_;
  read_timer_.cancel();
  write_timer_.cancel();
  boost::system::error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
  out_.clear();
  if (exchange_active_) {
    exchange_active_ = false;
    if (auto ex = exchange_.lock()) ex->notify_disconnect();
  }
  exchange_.reset();
}

void connection::arm_read_timer(std::chrono::milliseconds d, read_phase phase) {
  std::uint64_t generation = ++read_generation_;
  read_phase_ = phase;
  read_timer_.expires_after(d);
  read_timer_.async_wait([self = shared_from_this(), generation](const boost::system::error_code& ec) {
    if (ec || generation != self->read_generation_ || self->closed_) return;
    if (self->read_phase_ == read_phase::idle)
      self->counters().idle_timeouts.fetch_add(1);
    else if (self->read_phase_ == read_phase::request)
      self->counters().read_timeouts.fetch_add(1);
    self->close();
  });
}

void connection::disarm_read_timer() {
  ++read_generation_;
  read_timer_.cancel();
}

void connection::arm_write_timer() {
  std::uint64_t generation = ++write_generation_;
  write_timer_.expires_after(limits().write_timeout);
  write_timer_.async_wait([self = shared_from_this(), generation](const boost::system::error_code& ec) {
    if (ec || generation != self->write_generation_ || self->closed_) return;
    self->counters().write_timeouts.fetch_add(1);
    self->close();
  });
}

void connection::disarm_write_timer() {
  ++write_generation_;
  write_timer_.cancel();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// server core

void http_server_core::accept_next() {
  acceptor->async_accept(asio::make_strand(ioc), [this](const boost::system::error_code& ec, tcp::socket socket) {
    on_accept(ec, std::move(socket));
  });
}

void http_server_core::on_accept(const boost::system::error_code& ec, tcp::socket socket) {
  if (ec == asio::error::operation_aborted) return;
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (stopped) return;
  }
  if (ec) {
    // Out of descriptors, or an aborted handshake: try again shortly rather than spin.
    spdlog::warn("http: accept on {}:{} failed: {}", bound_host, bound_port, ec.message());
    accept_retry->expires_after(std::chrono::milliseconds(100));
    accept_retry->async_wait([this](const boost::system::error_code& e) {
      if (!e) accept_next();
    });
    return;
  }
  if (counters.connections_open.load() >= options.limits.max_connections) {
    counters.connections_refused.fetch_add(1);
    refuse(socket);
    return accept_next();
  }
  boost::system::error_code remote_ec;
  auto remote = socket.remote_endpoint(remote_ec);
  std::string remote_address = remote_ec ? std::string() : remote.address().to_string();
  std::shared_ptr<connection> conn;
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (stopped) return;
    counters.connections_accepted.fetch_add(1);
    counters.connections_open.fetch_add(1);
    std::uint64_t id = next_connection++;
    conn = std::make_shared<connection>(this, std::move(socket), id, std::move(remote_address));
    connections.emplace(id, conn);
  }
  conn->post([conn] { conn->start(); });
  accept_next();
}

void http_server_core::refuse(tcp::socket& socket) {
  static const std::string body = openai_error_body(
      "the server has too many open connections; retry shortly", "server_error", std::nullopt, "server_busy");
  static const std::string bytes =
      serialize_head(503, json_content_type, {{"Retry-After", "1"}}, 11, false, body.size()) + body;
  boost::system::error_code ignored;
  socket.non_blocking(true, ignored);
  // Whatever the client already sent is read first, so closing does not turn into a reset
  // that could discard the answer before the client reads it.
  char sink[4096];
  for (int i = 0; i < 16 && socket.available(ignored) > 0; ++i) socket.read_some(asio::buffer(sink), ignored);
  socket.write_some(asio::buffer(bytes), ignored);
  socket.shutdown(tcp::socket::shutdown_send, ignored);
  socket.close(ignored);
}

// ---------------------------------------------------------------------------------------------
// http_server

http_server::http_server(http_server_options options)
    : core_(std::make_shared<http_server_core>(std::move(options))) {
  const auto& o = core_->options;
  if (o.threads < 1) throw std::invalid_argument("http server: threads must be at least 1");
  if (o.limits.max_connections < 1) throw std::invalid_argument("http server: max_connections must be at least 1");
  if (o.limits.max_header_bytes < 256 || o.limits.max_header_bytes > (64u << 20))
    throw std::invalid_argument("http server: max_header_bytes must be between 256 and 64 MiB");
  if (o.limits.read_timeout.count() <= 0 || o.limits.idle_timeout.count() <= 0 || o.limits.write_timeout.count() <= 0)
    throw std::invalid_argument("http server: timeouts must be positive");
  if (o.port < 0 || o.port > 65535) throw std::invalid_argument("http server: port must be 0-65535");
}

http_server::~http_server() {
  try {
    stop();
  } catch (const std::exception& e) {
    spdlog::error("http: {}", e.what());
  }
}

void http_server::add_route(std::string method, std::string path, http_handler handler) {
  std::lock_guard<std::mutex> lock(core_->mutex);
  if (core_->started) throw std::logic_error("http server: routes must be added before start()");
  if (method.empty() || !std::all_of(method.begin(), method.end(), is_token_char))
    throw std::invalid_argument("http server: method '" + method + "' is not an HTTP token");
  if (path.empty() || path[0] != '/' || path.find('?') != std::string::npos)
    throw std::invalid_argument("http server: route path '" + path + "' must start with '/' and have no query");
  if (!handler) throw std::invalid_argument("http server: route " + method + " " + path + " has no handler");
  auto& list = core_->routes[path];
  for (const auto& r : list)
    if (r.method == method) throw std::logic_error("http server: route " + method + " " + path + " added twice");
  list.push_back({std::move(method), std::move(handler)});
}

void http_server::add_static_files(const std::string& url_prefix, const std::string& directory,
                                   const std::vector<std::string>& allowed_names) {
  if (url_prefix.empty() || url_prefix[0] != '/')
    throw std::invalid_argument("http server: static prefix '" + url_prefix + "' must start with '/'");
  std::string prefix = url_prefix.back() == '/' ? url_prefix : url_prefix + "/";
  for (const auto& name : allowed_names) {
    bool ok = !name.empty() && name.front() != '/' && name.back() != '/';
    for (char c : name)
      if (c == '\\' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '?' || c == '#' || c == '%') ok = false;
    std::size_t start = 0;
    while (ok && start <= name.size()) {
      std::size_t end = name.find('/', start);
      if (end == std::string::npos) end = name.size();
      std::string_view segment(name.data() + start, end - start);
      if (segment.empty() || segment == "." || segment == "..") ok = false;
      start = end + 1;
    }
    if (!ok)
      throw std::invalid_argument("http server: static file name '" + name +
                                  "' must be a relative path without '.', '..' or empty segments, "
                                  "backslashes, '%', '?', '#' or control characters");
    std::string file = (std::filesystem::path(directory) / name).string();
    std::string type = content_type_for(name);
    add_route("GET", prefix + name, [file, type](const http_request&, http_responder responder) {
      std::error_code ec;
      if (!std::filesystem::is_regular_file(file, ec)) {
        responder.respond(error_response(404, "file not found"));
        return;
      }
      auto size = std::filesystem::file_size(file, ec);
      if (ec || size > max_static_file_bytes) {
        responder.respond(error_response(500, "static file unreadable or too large"));
        return;
      }
      std::ifstream in(file, std::ios::binary);
      std::string body(static_cast<std::size_t>(size), '\0');
      if (!in.read(body.data(), static_cast<std::streamsize>(size))) {
        responder.respond(error_response(500, "static file unreadable"));
        return;
      }
      http_response r;
      r.content_type = type;
      r.body = std::move(body);
      r.headers = {{"X-Content-Type-Options", "nosniff"}, {"Cache-Control", "no-cache"}};
      responder.respond(std::move(r));
    });
  }
}

void http_server::start() {
  auto& c = *core_;
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    if (c.started || c.stopped) throw std::logic_error("http server: start() called twice, or after stop()");
    c.started = true;
  }
  const std::string where = c.options.host + ":" + std::to_string(c.options.port);
  try {
    tcp::resolver resolver(c.ioc);
    auto results = resolver.resolve(c.options.host, std::to_string(c.options.port),
                                    tcp::resolver::passive | tcp::resolver::numeric_service);
    if (results.empty()) throw std::runtime_error("no address");
    tcp::endpoint endpoint = results.begin()->endpoint();
    // On a strand of its own: with several threads, an accept completing and stop() closing
    // the acceptor must not touch it at the same time.
    c.acceptor.emplace(asio::make_strand(c.ioc));
    c.acceptor->open(endpoint.protocol());
    c.acceptor->set_option(asio::socket_base::reuse_address(true));
    c.acceptor->bind(endpoint);
    c.acceptor->listen(asio::socket_base::max_listen_connections);
    auto bound = c.acceptor->local_endpoint();
    c.bound_port = bound.port();
    c.bound_host = bound.address().to_string();
  } catch (const std::exception& e) {
    std::lock_guard<std::mutex> lock(c.mutex);
    c.stopped = true;
    throw std::runtime_error("http server: cannot listen on " + where + ": " + e.what() +
                             " (is the port in use, or the address not local?)");
  }
  c.accept_retry.emplace(c.acceptor->get_executor());
  c.accept_next();
  std::lock_guard<std::mutex> lock(c.mutex);
  c.threads_running = c.options.threads;
  for (int i = 0; i < c.options.threads; ++i) {
    c.threads.emplace_back([core = core_.get()] {
      for (;;) {
        try {
          core->ioc.run();
          break;
        } catch (const std::exception& e) {
          spdlog::error("http: server thread caught: {}", e.what());
        }
      }
      std::lock_guard<std::mutex> lock(core->mutex);
      --core->threads_running;
      core->threads_done.notify_all();
    });
  }
}

void http_server::stop() {
  auto& c = *core_;
  std::vector<std::shared_ptr<connection>> open;
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    for (const auto& t : c.threads)
      if (t.get_id() == std::this_thread::get_id())
        throw std::logic_error("http server: stop() called from a server thread (a handler); it would wait for itself");
    if (!c.started || c.stopped) {
      c.stopped = true;
      return;
    }
    c.stopped = true;
    for (auto& [id, weak] : c.connections)
      if (auto conn = weak.lock()) open.push_back(std::move(conn));
  }
  asio::post(c.acceptor->get_executor(), [core = core_.get()] {
    boost::system::error_code ignored;
    if (core->acceptor) core->acceptor->close(ignored);
    if (core->accept_retry) core->accept_retry->cancel();
  });
  for (auto& conn : open) conn->post([conn] { conn->close(); });
  open.clear();  // outside the lock: the last reference may end a connection, which locks it
  {
    std::unique_lock<std::mutex> lock(c.mutex);
    if (!c.threads_done.wait_for(lock, c.options.stop_timeout, [&] { return c.threads_running == 0; })) {
      spdlog::warn("http: server on {}:{} did not finish closing within {} ms; abandoning its work", c.bound_host,
                   c.bound_port, c.options.stop_timeout.count());
      c.ioc.stop();
    }
  }
  for (auto& t : c.threads)
    if (t.joinable()) t.join();
  c.threads.clear();
}

int http_server::port() const {
  std::lock_guard<std::mutex> lock(core_->mutex);
  return core_->bound_port;
}

std::string http_server::host() const {
  std::lock_guard<std::mutex> lock(core_->mutex);
  return core_->bound_host;
}

http_counters http_server::counters() const {
  const auto& a = core_->counters;
  http_counters c;
  c.connections_accepted = a.connections_accepted.load();
  c.connections_refused = a.connections_refused.load();
  c.connections_open = a.connections_open.load();
  c.requests = a.requests.load();
  for (std::size_t i = 0; i < c.responses_by_class.size(); ++i) c.responses_by_class[i] = a.responses_by_class[i].load();
  c.bad_requests = a.bad_requests.load();
  c.idle_timeouts = a.idle_timeouts.load();
  c.read_timeouts = a.read_timeouts.load();
  c.write_timeouts = a.write_timeouts.load();
  c.slow_stream_clients = a.slow_stream_clients.load();
  c.client_disconnects = a.client_disconnects.load();
  c.streams = a.streams.load();
  c.handler_errors = a.handler_errors.load();
  return c;
}

// ---------------------------------------------------------------------------------------------
// http_request, http_responder

std::string http_request::header(std::string_view name) const {
  for (const auto& [n, v] : headers)
    if (iequals(n, name)) return v;
  return {};
}

std::optional<std::string> http_request::query_parameter(std::string_view name) const {
  std::size_t start = 0;
  while (start <= query.size()) {
    std::size_t end = query.find('&', start);
    if (end == std::string::npos) end = query.size();
    std::string_view pair(query.data() + start, end - start);
    auto eq = pair.find('=');
    auto key = percent_decode(pair.substr(0, eq));
    if (key && *key == name) return eq == std::string_view::npos ? std::string() : percent_decode(pair.substr(eq + 1));
    start = end + 1;
  }
  return std::nullopt;
}

http_responder::http_responder(std::shared_ptr<http_exchange> exchange) : exchange_(std::move(exchange)) {}

bool http_responder::respond(http_response response) const {
  auto& ex = *exchange_;
  std::lock_guard<std::mutex> lock(ex.mutex);
  if (ex.st != http_exchange::state::waiting || ex.disconnected) return false;
  if (auto why = check_response(response.status, response.content_type, response.headers); !why.empty()) {
    ex.core->counters.handler_errors.fetch_add(1);
    spdlog::warn("http: a handler's response was refused: {}", why);
    response = error_response(500, "the handler's response was invalid: " + why);
  }
  ex.st = http_exchange::state::done;
  std::string bytes = serialize_response(response, ex.version, ex.keep_alive, ex.head_only);
  ex.conn->backlog.fetch_add(bytes.size());
  ex.conn->post([c = ex.conn, bytes = std::move(bytes), status = response.status]() mutable {
    c->send_final(std::move(bytes), status, true);
  });
  return true;
}

bool http_responder::begin_stream(int status, std::string content_type, http_headers headers) const {
  auto& ex = *exchange_;
  std::lock_guard<std::mutex> lock(ex.mutex);
  if (ex.st != http_exchange::state::waiting || ex.disconnected) return false;
  if (auto why = check_response(status, content_type, headers); !why.empty()) {
    ex.core->counters.handler_errors.fetch_add(1);
    spdlog::warn("http: a handler's stream was refused: {}", why);
    ex.st = http_exchange::state::done;
    std::string bytes = serialize_response(error_response(500, "the handler's stream was invalid: " + why),
                                           ex.version, ex.keep_alive, ex.head_only);
    ex.conn->backlog.fetch_add(bytes.size());
    ex.conn->post([c = ex.conn, bytes = std::move(bytes)]() mutable { c->send_final(std::move(bytes), 500, true); });
    return false;
  }
  // HTTP/1.0 has no chunked encoding: the body runs to the close.
  const bool keep_alive = ex.keep_alive && ex.version >= 11;
  headers.emplace_back("Cache-Control", "no-cache");
  ex.st = http_exchange::state::streaming;
  std::string bytes = serialize_head(status, content_type, headers, ex.version, keep_alive, std::nullopt);
  ex.conn->backlog.fetch_add(bytes.size());
  ex.conn->post([c = ex.conn, bytes = std::move(bytes), status, keep_alive]() mutable {
    c->send_stream_start(std::move(bytes), status, keep_alive);
  });
  return true;
}

bool http_responder::send_event(std::string_view data) const {
  // Every line of the data (CR, LF or CRLF ends one) becomes a "data:" field of one event.
  std::string event;
  std::size_t start = 0;
  for (;;) {
    std::size_t end = data.find_first_of("\r\n", start);
    event += "data: ";
    event += data.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    event += '\n';
    if (end == std::string_view::npos) break;
    start = end + ((data[end] == '\r' && end + 1 < data.size() && data[end + 1] == '\n') ? 2 : 1);
    if (start == data.size()) {
      event += "data: \n";
      break;
    }
  }
  event += '\n';
  return exchange_->queue_chunk(event);
}

bool http_responder::send_chunk(std::string_view bytes) const { return exchange_->queue_chunk(bytes); }

void http_responder::end_stream() const {
  auto& ex = *exchange_;
  std::lock_guard<std::mutex> lock(ex.mutex);
  if (ex.st != http_exchange::state::streaming) return;
  ex.st = http_exchange::state::done;
  if (ex.disconnected) return;
  std::string end = ex.version >= 11 && !ex.head_only ? "0\r\n\r\n" : "";
  ex.conn->backlog.fetch_add(end.size());
  ex.conn->post([c = ex.conn, end = std::move(end)]() mutable { c->send_final(std::move(end), 0, false); });
}

bool http_responder::client_connected() const {
  std::lock_guard<std::mutex> lock(exchange_->mutex);
  return !exchange_->disconnected;
}

void http_responder::on_disconnect(std::function<void()> callback) const {
  bool now = false;
  {
    std::lock_guard<std::mutex> lock(exchange_->mutex);
    if (exchange_->disconnected)
      now = true;
    else
      exchange_->on_disconnect = std::move(callback);
  }
  if (now && callback) callback();
}

// ---------------------------------------------------------------------------------------------
// helpers

std::string openai_error_body(const std::string& message, const std::string& type,
                              const std::optional<std::string>& param, const std::optional<std::string>& code) {
  nlohmann::json error = {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}};
  if (param) error["param"] = *param;
  if (code) error["code"] = *code;
  return nlohmann::json{{"error", error}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

http_response openai_error(int status, const std::string& message, const std::string& type,
                           const std::optional<std::string>& param, const std::optional<std::string>& code) {
  http_response r;
  r.status = status;
  r.content_type = json_content_type;
  r.body = openai_error_body(message, type, param, code);
  return r;
}

namespace {
std::array<unsigned char, 32> sha256(const std::string& s) {
  std::array<unsigned char, 32> digest{};
  unsigned int n = 0;
  if (EVP_Digest(s.data(), s.size(), digest.data(), &n, EVP_sha256(), nullptr) != 1 || n != digest.size())
    throw std::runtime_error("SHA-256 failed");
  return digest;
}
}  // namespace

bool token_matches(const std::string& given, const std::string& key) {
  // Comparing digests hides the key's length as well as where the two differ.
  auto a = sha256(given), b = sha256(key);
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0 && !key.empty();
}

bool bearer_token_matches(const http_request& request, const std::string& key) {
  std::string value = request.header("Authorization");
  if (value.size() < 7 || !iequals(std::string_view(value).substr(0, 7), "Bearer ")) return false;
  std::size_t start = value.find_first_not_of(' ', 7);
  std::string given = start == std::string::npos ? std::string() : value.substr(start);
  while (!given.empty() && (given.back() == ' ' || given.back() == '\t')) given.pop_back();
  return token_matches(given, key);
}

http_handler require_bearer_token(std::string key, http_handler handler) {
  if (key.empty()) throw std::invalid_argument("require_bearer_token: the key is empty");
  return [key = std::move(key), handler = std::move(handler)](const http_request& request, http_responder responder) {
    if (!bearer_token_matches(request, key)) {
      auto r = openai_error(401, "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                            "invalid_request_error", std::nullopt, "invalid_api_key");
      r.headers.emplace_back("WWW-Authenticate", "Bearer");
      responder.respond(std::move(r));
      return;
    }
    handler(request, std::move(responder));
  };
}

std::string read_api_key_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw std::runtime_error("API key file " + path + " does not exist or cannot be read: create it with one key on one line, mode 0600");
  if (st.st_mode & (S_IRWXG | S_IRWXO))
    throw std::runtime_error("API key file " + path + " is accessible to group or others: run chmod 600 " + path);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("API key file " + path + " cannot be read: check its owner and mode 0600");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string key = ss.str();
  auto first = key.find_first_not_of(" \t\r\n");
  auto last = key.find_last_not_of(" \t\r\n");
  key = first == std::string::npos ? std::string() : key.substr(first, last - first + 1);
  if (key.empty()) throw std::runtime_error("API key file " + path + " is empty: write one key on one line");
  for (char c : key)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
      throw std::runtime_error("API key file " + path +
                               " holds whitespace or control characters inside the key: write one key on one line");
  return key;
}

std::string content_type_for(const std::string& file_name) {
  static const std::pair<const char*, const char*> types[] = {
      {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"}, {".css", "text/css; charset=utf-8"},
      {".json", "application/json"}, {".map", "application/json"},
      {".svg", "image/svg+xml"}, {".png", "image/png"},
      {".ico", "image/x-icon"}, {".txt", "text/plain; charset=utf-8"}};
  for (const auto& [ext, type] : types) {
    std::string_view e(ext);
    if (file_name.size() >= e.size() && file_name.compare(file_name.size() - e.size(), e.size(), e) == 0) return type;
  }
  return "application/octet-stream";
}

}  // namespace glam
