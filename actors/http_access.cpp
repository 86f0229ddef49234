#include "actors/http_access.hpp"

#include <stdexcept>

#include "actors/security.hpp"

namespace glam {

http_auth parse_http_auth(const std::string& value) {
  if (value == "auto") return http_auth::automatic;
  if (value == "token") return http_auth::token;
  throw std::invalid_argument("--http-auth '" + value + "': give auto (the token off loopback) or token (always)");
}

std::string http_access_token(const std::string& secret) {
  // A label of its own: the token is never a valid proof of the relay or the node gate.
  return hmac_hex(secret, "glam http access token v1");
}

bool is_loopback_host(const std::string& host) {
  if (host == "localhost" || host == "::1" || host == "[::1]") return true;
  // 127.0.0.0/8 as a dotted quad of decimal numbers.
  if (host.rfind("127.", 0) != 0) return false;
  int parts = 0, value = -1;
  for (char c : host + ".") {
    if (c == '.') {
      if (value < 0 || value > 255) return false;
      ++parts;
      value = -1;
    } else if (c >= '0' && c <= '9') {
      value = (value < 0 ? 0 : value * 10) + (c - '0');
      if (value > 255) return false;
    } else {
      return false;
    }
  }
  return parts == 4;
}

http_access http_access::for_bind(const std::string& host, http_auth mode, const std::string& secret) {
  http_access a;
  a.needs_token = mode == http_auth::token || !is_loopback_host(host);
  a.token = http_access_token(secret);
  a.cookie_name = "glam_token_" + hmac_hex(a.token, "cookie name").substr(0, 12);
  return a;
}

namespace {

// The value of cookie `name` in a Cookie header ("a=1; b=2"); empty when absent.
std::string cookie_value(const std::string& header, const std::string& name) {
  std::size_t at = 0;
  while (at < header.size()) {
    std::size_t end = header.find(';', at);
    if (end == std::string::npos) end = header.size();
    std::string pair = header.substr(at, end - at);
    pair.erase(0, pair.find_first_not_of(' '));
    const auto eq = pair.find('=');
    if (eq != std::string::npos && pair.substr(0, eq) == name) return pair.substr(eq + 1);
    at = end + 1;
  }
  return {};
}

}  // namespace

bool http_access::sent_token_in_query(const http_request& request) const {
  auto given = request.query_parameter("token");
  return given && token_matches(*given, token);
}

bool http_access::allows(const http_request& request) const {
  if (!needs_token) return true;
  if (bearer_token_matches(request, token)) return true;
  if (token_matches(cookie_value(request.header("Cookie"), cookie_name), token)) return true;
  return sent_token_in_query(request);
}

std::string http_access::set_cookie_header() const {
  // HttpOnly: the page's scripts never see it; SameSite=Strict: no other site's page sends it.
  return cookie_name + "=" + token + "; Path=/; HttpOnly; SameSite=Strict";
}

http_handler guarded(const http_access& access, http_handler handler) {
  return [access, handler = std::move(handler)](const http_request& request, http_responder responder) {
    if (!access.allows(request)) {
      http_response r;
      r.status = 401;
      r.headers.emplace_back("WWW-Authenticate", "Bearer");
      r.body =
          "this port needs the cluster's access token: open the URL `glam status --dashboard-url` prints, "
          "or send 'Authorization: Bearer <token>'\n";
      responder.respond(std::move(r));
      return;
    }
    handler(request, std::move(responder));
  };
}

void write_http_metrics(prometheus_writer& w, const http_counters& h) {
  w.counter("glam_http_connections_accepted_total", "HTTP connections accepted.", double(h.connections_accepted));
  w.counter("glam_http_connections_refused_total", "HTTP connections refused over the connection bound.",
            double(h.connections_refused));
  w.gauge("glam_http_connections_open", "HTTP connections open.", double(h.connections_open));
  w.counter("glam_http_requests_total", "HTTP requests handed to a route.", double(h.requests));
  for (int k = 1; k <= 5; ++k)
    w.counter("glam_http_responses_total", "HTTP responses begun, by status class.", double(h.responses_by_class[k]),
              {{"class", std::to_string(k) + "xx"}});
  w.counter("glam_http_bad_requests_total", "Requests refused as malformed or over a limit.", double(h.bad_requests));
  w.counter("glam_http_timeouts_total", "Connections cut off by a timeout.", double(h.timeouts()));
  w.counter("glam_http_client_disconnects_total", "Clients that left before their response was complete.",
            double(h.client_disconnects));
  w.counter("glam_http_handler_errors_total", "Handlers that failed.", double(h.handler_errors));
}

}  // namespace glam
