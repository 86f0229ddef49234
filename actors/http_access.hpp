#pragma once
// Who may read a daemon's HTTP port (the coordinator's dashboard and /metrics, a worker's
// /metrics): anyone who can reach it while it is bound to loopback, else only requests that
// carry a token derived from the cluster secret. The token is an HMAC of a fixed label, so
// every process that holds the secret (clients, `glam status --dashboard-url`) derives the
// same one, and it reveals nothing of the secret. docs/dashboard.md describes access.
#include <string>

#include "actors/http_server.hpp"
#include "actors/prometheus.hpp"

namespace glam {

// --http-auth: `auto` needs the token off loopback only; `token` needs it everywhere.
enum class http_auth { automatic, token };
http_auth parse_http_auth(const std::string& value);  // "auto" | "token"; invalid_argument otherwise

// The dashboard/metrics token of a cluster: HMAC-SHA256(secret, fixed label), hex.
std::string http_access_token(const std::string& secret);

// True for 127.0.0.0/8, ::1 and "localhost".
bool is_loopback_host(const std::string& host);

struct http_access {
  bool needs_token = false;
  std::string token;
  // The cookie the dashboard page sets, so that the browser sends the token with the
  // page's scripts and API calls; named after the token, so that the dashboards of two
  // clusters on one host keep their own.
  std::string cookie_name;

  static http_access for_bind(const std::string& host, http_auth mode, const std::string& secret);

  // The token arrives as "Authorization: Bearer T" (scrapers), the cookie, or ?token=T (the
  // URL `glam status --dashboard-url` prints). Always true when no token is needed.
  bool allows(const http_request& request) const;
  // A request that carries the right token in its query gets the cookie with its answer.
  bool sent_token_in_query(const http_request& request) const;
  std::string set_cookie_header() const;
};

// Wraps a handler: a request that access does not allow gets 401 with a body that says how
// to get the token.
http_handler guarded(const http_access& access, http_handler handler);

// The HTTP server's own counters as glam_http_* families.
void write_http_metrics(prometheus_writer& w, const http_counters& h);

}  // namespace glam
