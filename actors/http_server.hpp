#pragma once
// A small HTTP/1.1 server (Boost.Beast on Boost.Asio) shared by the coordinator's dashboard and
// /metrics endpoint and by `glam serve`. It exists because every process that speaks HTTP
// needs the same defences: bounded bodies, headers and connections, timeouts for slow and idle
// clients, and a stop that never hangs. Handlers may answer later from any thread, and may
// stream (server-sent events); a client that leaves mid-response is noticed at once and the
// handler is told, so it can free what it holds. docs/http.md describes limits and counters.
//
// Beast and Asio stay inside http_server.cpp, so including this header costs nothing.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace glam {

using http_headers = std::vector<std::pair<std::string, std::string>>;

struct http_request {
  std::string method;          // as sent: "GET", "POST", ...
  std::string target;          // path and query, as sent
  std::string path;            // target before '?', not decoded
  std::string query;           // target after '?', not decoded
  int version = 11;            // 10 or 11
  http_headers headers;        // in arrival order, names as sent
  std::string body;
  std::string remote_address;  // the peer's IP address

  // The first header of that name (case-insensitive); empty when absent.
  std::string header(std::string_view name) const;
  // The first query parameter of that name, percent-decoded ('+' is a space); nullopt when
  // absent or not validly encoded.
  std::optional<std::string> query_parameter(std::string_view name) const;
};

struct http_response {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  // Extra headers. The server writes Content-Length, Transfer-Encoding, Connection and Server
  // itself; a handler that sets one of them (or a name or value that is not a valid header)
  // gets a 500 instead, because that is a bug in the handler.
  http_headers headers;
  std::string body;
};

struct http_exchange;

// The handle through which a handler answers one request. Copyable; every call is safe from
// any thread. A request gets exactly one of: respond(), or begin_stream() + send_*() +
// end_stream(). Dropping the last copy without answering sends 500 (or ends an open stream),
// so a request is never left hanging by a forgotten responder.
class http_responder {
 public:
  explicit http_responder(std::shared_ptr<http_exchange> exchange);

  // One complete response. False when the client is gone or this request was answered.
  bool respond(http_response response) const;

  // Starts a streamed response (chunked on HTTP/1.1; on HTTP/1.0 the body runs to the close).
  bool begin_stream(int status = 200, std::string content_type = "text/event-stream",
                    http_headers headers = {}) const;
  // One server-sent event: every line of data as "data: <line>\n", then a blank line. Returns
  // false when the client is gone, the stream is not open, or the client has fallen more than
  // http_limits::max_stream_backlog bytes behind (the connection is then closed).
  bool send_event(std::string_view data) const;
  // Raw body bytes on an open stream; same return value as send_event.
  bool send_chunk(std::string_view bytes) const;
  // Ends the stream; the connection then serves its next request (keep-alive).
  void end_stream() const;

  // False once the client has disconnected (or the server stopped) before the response ended.
  bool client_connected() const;
  // Called once, on a server thread, if the client disconnects or the server stops before the
  // response has been written in full; at once if that already happened. Keep it short.
  void on_disconnect(std::function<void()> callback) const;

 private:
  std::shared_ptr<http_exchange> exchange_;
};

// Runs on a server thread. A handler that has its answer at hand responds at once; one that
// waits for something (a model's tokens) keeps the responder and returns, and must not block.
using http_handler = std::function<void(const http_request&, http_responder)>;

struct http_limits {
  std::size_t max_body_bytes = 1u << 20;     // larger: 413
  std::size_t max_header_bytes = 16u << 10;  // request line + headers; larger: 431
  int max_connections = 64;                  // more: answered 503 and closed at once
  // From the first byte of a request to its last; a client slower than that is cut off.
  std::chrono::milliseconds read_timeout{10'000};
  // How long an open connection may wait for its next request (and a new one for its first).
  std::chrono::milliseconds idle_timeout{30'000};
  // How long one write may wait for a client that does not read.
  std::chrono::milliseconds write_timeout{30'000};
  // Bytes a stream may queue for a client that reads more slowly than the handler writes.
  std::size_t max_stream_backlog = 4u << 20;
};

struct http_server_options {
  std::string host = "127.0.0.1";  // loopback unless told otherwise
  int port = 0;                    // 0: any free port (see http_server::port())
  int threads = 1;
  http_limits limits;
  // How long stop() waits for the server threads to finish closing connections before it
  // abandons the remaining work; stop() returns within about this time.
  std::chrono::milliseconds stop_timeout{5'000};
};

// A copy of the server's counters. Every accepted connection ends in exactly one way.
struct http_counters {
  std::int64_t connections_accepted = 0;
  std::int64_t connections_refused = 0;  // over max_connections (answered 503, not counted below)
  std::int64_t connections_open = 0;
  std::int64_t requests = 0;             // complete requests handed to a route (or 404/405)
  std::array<std::int64_t, 6> responses_by_class{};  // [1] = 1xx ... [5] = 5xx; [0] unused
  std::int64_t bad_requests = 0;         // malformed, or over a limit (also in the 4xx count)
  std::int64_t idle_timeouts = 0;        // no next request within idle_timeout
  std::int64_t read_timeouts = 0;        // a request not complete within read_timeout
  std::int64_t write_timeouts = 0;       // a client that stopped reading
  std::int64_t slow_stream_clients = 0;  // a stream's backlog over max_stream_backlog
  std::int64_t client_disconnects = 0;   // left before its response was complete
  std::int64_t streams = 0;              // streamed responses begun
  std::int64_t handler_errors = 0;       // handler threw, dropped its responder, or bad headers

  std::int64_t timeouts() const { return idle_timeouts + read_timeouts + write_timeouts; }
};

struct http_server_core;

class http_server {
 public:
  explicit http_server(http_server_options options = {});
  ~http_server();  // stop()
  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  // Routes are exact (method, path) pairs, registered before start(). A path served under
  // another method gets 405 with Allow; an unknown path gets 404. Throws std::logic_error
  // after start() or for a duplicate route.
  void add_route(std::string method, std::string path, http_handler handler);
  // Serves each allowed file of directory as url_prefix + its relative name, GET only, and
  // nothing else: a request path must equal one of those names byte for byte, so no path
  // (encoded dots, slashes, symlinks outside the list) reaches the disk unless listed. The
  // names are checked here (relative, no "." or ".." segment, no empty segment, no
  // backslash, no control character): std::invalid_argument otherwise. Files are read per
  // request, so a package upgrade is picked up; a listed file that is missing gets 404.
  void add_static_files(const std::string& url_prefix, const std::string& directory,
                        const std::vector<std::string>& allowed_names);

  // Binds and starts the server threads. Throws std::runtime_error naming the address when
  // it cannot listen, std::logic_error when called twice.
  void start();
  // Closes the listening socket and every connection (handlers holding a responder are told
  // through on_disconnect), then ends the threads: returns within options.stop_timeout plus
  // a little, whatever clients and handlers do (a handler that blocks a server thread
  // forever is the one exception). Idempotent; never from a handler (std::logic_error).
  void stop();

  int port() const;           // the bound port, after start()
  std::string host() const;   // the bound address, after start()
  http_counters counters() const;

 private:
  std::shared_ptr<http_server_core> core_;
};

// --- helpers for handlers ---

// Content types the server uses.
inline constexpr const char* json_content_type = "application/json";
inline constexpr const char* event_stream_content_type = "text/event-stream";

// An OpenAI-style error body: {"error": {"message", "type", "param", "code"}}; param and
// code are null when not given.
std::string openai_error_body(const std::string& message, const std::string& type,
                              const std::optional<std::string>& param = std::nullopt,
                              const std::optional<std::string>& code = std::nullopt);
// A JSON response with that body.
http_response openai_error(int status, const std::string& message, const std::string& type,
                           const std::optional<std::string>& param = std::nullopt,
                           const std::optional<std::string>& code = std::nullopt);

// True when given equals key (a non-empty key). The comparison takes the same time wherever
// the two differ, and whatever their lengths: for tokens that arrive some other way than the
// Authorization header (a dashboard's ?token= parameter, a cookie).
bool token_matches(const std::string& given, const std::string& key);
// True when the request carries "Authorization: Bearer <key>" with exactly this key
// (token_matches on the header's token).
bool bearer_token_matches(const http_request& request, const std::string& key);
// Wraps a handler so that a request without the right bearer key gets 401 with an
// OpenAI-style error and WWW-Authenticate: Bearer. An empty key is refused (invalid_argument):
// a server that should not check keys does not wrap its handlers.
http_handler require_bearer_token(std::string key, http_handler handler);
// The key in an --api-key-file: the file's content without surrounding whitespace. Throws
// std::runtime_error naming the file and the fix when it is missing, empty, has more than one
// line, or is readable by group or others.
std::string read_api_key_file(const std::string& path);

// The Content-Type served for a file name (by extension; application/octet-stream otherwise).
std::string content_type_for(const std::string& file_name);

}  // namespace glam
