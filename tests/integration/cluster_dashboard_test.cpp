// The coordinator's HTTP port against real daemons training a job: /metrics (and a worker's)
// parsed by the strict parser of the text format, access by token, the dashboard's JSON
// endpoints, and the page itself rendered by headless Chromium, with its charts holding
// that job's data and no request leaving for another host.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <optional>
#include <regex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "../unit/prometheus_parser_testing.hpp"
#include "actors/http_access.hpp"
#include "actors/security.hpp"
#include "cluster_harness.hpp"
#include "tests/http_test_client.hpp"

namespace glam::test {
namespace {

using prometheus_testing::parse_exposition;
using prometheus_testing::parsed_family;
using testing::http_client;
using testing::http_reply;

// One GET on a fresh connection, which the server closes after the answer.
std::optional<http_reply> http_get(int port, const std::string& target, const std::string& extra_headers = "") {
  http_client c(port);
  if (!c.connected() || !c.send("GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + extra_headers + "\r\n"))
    return std::nullopt;
  return c.read_reply();
}

std::string bearer(const std::string& token) { return "Authorization: Bearer " + token + "\r\n"; }

// The port of "... dashboard on http://127.0.0.1:PORT/" or "... metrics on http://127.0.0.1:PORT/metrics".
int http_port_of(process& p, const std::string& what) {
  const std::string needle = what + " on http://127.0.0.1:";
  const auto out = p.wait_stdout(needle, 20s);
  const auto at = out.find(needle);
  return at == std::string::npos ? 0 : std::stoi(out.substr(at + needle.size()));
}

const parsed_family* family(const std::vector<parsed_family>& fs, const std::string& name) {
  for (const auto& f : fs)
    if (f.name == name) return &f;
  return nullptr;
}

double value_of(const std::vector<parsed_family>& fs, const std::string& name,
                const std::map<std::string, std::string>& labels) {
  if (const auto* f = family(fs, name))
    for (const auto& s : f->samples)
      if (s.labels == labels) return s.value;
  return std::nan("");
}

// The value of attribute `attr` of the element with id `id` in a serialised DOM.
std::string attribute(const std::string& dom, const std::string& id, const std::string& attr) {
  const auto at = dom.find("id=\"" + id + "\"");
  if (at == std::string::npos) return {};
  const auto open = dom.rfind('<', at), close = dom.find('>', at);
  const std::string tag = dom.substr(open, close - open);
  const auto a = tag.find(" " + attr + "=\"");
  if (a == std::string::npos) return {};
  const auto start = a + attr.size() + 3;
  return tag.substr(start, tag.find('"', start) - start);
}

long number_attribute(const std::string& dom, const std::string& id, const std::string& attr) {
  const auto v = attribute(dom, id, attr);
  return v.empty() ? -1 : std::stol(v);
}

// The part of the DOM inside the element with that id (up to its closing tag).
std::string inside(const std::string& dom, const std::string& id, const std::string& closing) {
  const auto at = dom.find("id=\"" + id + "\"");
  if (at == std::string::npos) return {};
  const auto end = dom.find(closing, at);
  return dom.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

std::optional<std::string> chromium_binary() {
  for (const char* p : {"/usr/bin/chromium", "/usr/bin/chromium-browser"})
    if (::access(p, X_OK) == 0) return std::string(p);
  return std::nullopt;
}

// A job that trains until it is stopped, evaluating every 2 steps, so that the loss and
// validation-loss curves both have points.
const std::string dashboard_job = R"(name = "dash"
[model]
vocab_size = 256
layers = 2
d_model = 16
d_ff = 32
heads = 2
d_head = 8
experts = 4
seq_len = 16
[train]
steps = 1000000
eval_every = 2
eval_batches = 1
[data]
synthetic = true
[cluster]
shards = 2
)";

TEST(ClusterDashboard, MetricsDashboardAndBrowserAgainstATrainingJob) {
  // The token is needed even on loopback (--http-auth token), so that refusals can be tested.
  cluster c("dashboard", 3000, 0, {"--http", "127.0.0.1:0", "--http-auth", "token"});
  ASSERT_GT(c.port, 0) << c.coordinator->err();
  const int http = http_port_of(*c.coordinator, "dashboard");
  ASSERT_GT(http, 0) << c.coordinator->out();
  const std::string token = http_access_token(read_secret_file(c.dir + "/state/secret"));

  auto& w1 = c.add_worker("w1", {}, {"--http", "127.0.0.1:0", "--http-auth", "token"});
  c.add_worker("w2");
  ASSERT_GT(w1.wait_port(), 0) << w1.err();
  const int w1_http = http_port_of(w1, "metrics");
  ASSERT_GT(w1_http, 0) << w1.out();
  write_file(c.dir + "/job.toml", dashboard_job);
  auto [rc, out] = c.client({"submit", "--coordinator", c.endpoint(), c.dir + "/job.toml"});
  ASSERT_EQ(rc, 0) << out;
  const std::string job = out.substr(0, out.find('\n'));
  auto job_of = [&](const nlohmann::json& s) -> nlohmann::json {
    for (const auto& j : s.value("jobs", nlohmann::json::array()))
      if (j["id"] == job) return j;
    return {};
  };
  auto s = c.wait_status([&](const nlohmann::json& s) {
    auto j = job_of(s);
    return !j.empty() && j["step"].get<int>() >= 4 && j["progress"].contains("val_loss");
  }, 90s);
  ASSERT_GE(job_of(s)["step"].get<int>(), 4) << s.dump();
  // A worker joins while the job runs: an event for the timeline.
  c.add_worker("w3");
  s = c.wait_status([&](const nlohmann::json& s) {
    auto j = job_of(s);
    return s["workers"].size() == 3 && j["progress"]["events"].value("join", 0) >= 1;
  }, 90s);
  const auto joined = job_of(s);
  ASSERT_GE(joined["progress"]["events"].value("join", 0), 1) << s.dump();
  s = c.wait_status([&](const nlohmann::json& s) { return job_of(s)["step"].get<int>() >= joined["step"].get<int>() + 3; },
                    60s);

  // --- /metrics: the token is needed; the text parses strictly and holds the job ---------
  for (const std::string& headers : {std::string(), bearer("wrong"), bearer(token + "0")}) {
    auto r = http_get(http, "/metrics", headers);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401) << headers;
    EXPECT_NE(r->body.find("glam status --dashboard-url"), std::string::npos);
  }
  auto r = http_get(http, "/metrics", bearer(token));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_NE(r->header("content-type").find("text/plain; version=0.0.4"), std::string::npos) << r->header("content-type");
  std::vector<parsed_family> families;
  ASSERT_NO_THROW(families = parse_exposition(r->body)) << r->body;
  for (const auto& f : families) EXPECT_TRUE(f.help && f.typed) << f.name;
  EXPECT_EQ(value_of(families, "glam_workers", {}), 3);
  EXPECT_GE(value_of(families, "glam_epoch", {}), 2);  // the start and the join
  EXPECT_GE(value_of(families, "glam_job_steps_committed_total", {{"job", job}}), 7);
  EXPECT_GT(value_of(families, "glam_job_tokens_total", {{"job", job}}), 0);
  EXPECT_GE(value_of(families, "glam_job_events_total", {{"job", job}, {"event", "join"}}), 1);
  EXPECT_EQ(value_of(families, "glam_job_state", {{"job", job}, {"state", "running"}}), 1);
  EXPECT_TRUE(std::isfinite(value_of(families, "glam_job_loss", {{"job", job}})));
  EXPECT_TRUE(std::isfinite(value_of(families, "glam_job_validation_loss", {{"job", job}})));
  EXPECT_GT(value_of(families, "glam_job_mfu", {{"job", job}}), 0);
  EXPECT_GT(value_of(families, "glam_job_tokens_per_second", {{"job", job}}), 0);
  for (const char* w : {"w1", "w2", "w3"}) {
    EXPECT_GT(value_of(families, "glam_worker_resident_bytes", {{"worker", w}}), 0) << w;
    EXPECT_GE(value_of(families, "glam_worker_refused_messages_total", {{"worker", w}, {"reason", "stale"}}), 0) << w;
  }
  EXPECT_GT(value_of(families, "glam_worker_tokens_computed_total", {{"worker", "w1"}}), 0);
  EXPECT_GT(value_of(families, "glam_coordinator_resident_bytes", {}), 0);
  EXPECT_GE(value_of(families, "glam_http_requests_total", {}), 4);

  // A worker's own /metrics.
  EXPECT_EQ(http_get(w1_http, "/metrics")->status, 401);
  auto wr = http_get(w1_http, "/metrics", bearer(token));
  ASSERT_TRUE(wr);
  ASSERT_EQ(wr->status, 200) << wr->body;
  std::vector<parsed_family> worker_families;
  ASSERT_NO_THROW(worker_families = parse_exposition(wr->body)) << wr->body;
  EXPECT_GT(value_of(worker_families, "glam_worker_tokens_computed_total", {{"worker", "w1"}}), 0);
  EXPECT_GT(value_of(worker_families, "glam_worker_peers", {{"worker", "w1"}}), 0);

  // --- the JSON endpoints -----------------------------------------------------------------
  auto st = http_get(http, "/api/status", bearer(token));
  ASSERT_TRUE(st && st->status == 200);
  EXPECT_EQ(nlohmann::json::parse(st->body)["workers"].size(), 3u);
  auto lines = http_get(http, "/api/metrics?job=" + job + "&from=0", bearer(token));
  ASSERT_TRUE(lines && lines->status == 200);
  const auto m = nlohmann::json::parse(lines->body);
  ASSERT_GE(m["lines"].size(), 7u);
  EXPECT_EQ(m["lines"][0]["step"], 0);
  EXPECT_EQ(http_get(http, "/api/metrics?job=..", bearer(token))->status, 400);
  EXPECT_EQ(http_get(http, "/api/metrics?job=nosuch-9", bearer(token))->status, 404);
  EXPECT_EQ(http_get(http, "/api/metrics?job=" + job + "&from=-1", bearer(token))->status, 400);
  EXPECT_EQ(http_get(http, "/api/status")->status, 401);

  // --- the page: nothing in it points at another host; the URL status prints opens it -----
  for (const char* path : {"/", "/dashboard.js"}) {
    auto p = http_get(http, path, bearer(token));
    ASSERT_TRUE(p && p->status == 200) << path;
    EXPECT_EQ(p->body.find("http://"), std::string::npos) << path;
    EXPECT_EQ(p->body.find("https://"), std::string::npos) << path;
    EXPECT_EQ(p->body.find("//cdn"), std::string::npos) << path;
  }
  EXPECT_EQ(http_get(http, "/")->status, 401);
  EXPECT_EQ(http_get(http, "/static/chart.min.js")->status, 401);
  auto [url_rc, url_out] = c.client({"status", "--coordinator", c.endpoint(), "--dashboard-url"});
  ASSERT_EQ(url_rc, 0) << url_out;
  const std::string url = url_out.substr(0, url_out.find('\n'));
  EXPECT_EQ(url, "http://127.0.0.1:" + std::to_string(http) + "/?token=" + token);
  auto page = http_get(http, url.substr(url.find('/', 7)));
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_EQ(page->header("set-cookie").rfind("glam_token_", 0), 0u) << page->header("set-cookie");
  EXPECT_NE(page->header("set-cookie").find("HttpOnly"), std::string::npos) << page->header("set-cookie");
  EXPECT_EQ(page->header("content-security-policy").rfind("default-src 'self'", 0), 0u)
      << page->header("content-security-policy");

  // --- headless Chromium renders it -----------------------------------------------------
  const auto chromium = chromium_binary();
  if (!chromium)
    GTEST_SKIP() << "chromium is not installed (Debian package chromium, installed by scripts/install-deps.sh): "
                    "the browser half of this test did not run";
  // Every host name but 127.0.0.1 resolves to nothing: a request for another host fails.
  process browser({*chromium, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
                   "--disable-dev-shm-usage", "--user-data-dir=" + c.dir + "/chromium", "--enable-logging=stderr",
                   "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", "--virtual-time-budget=8000",
                   "--dump-dom", url},
                  c.dir, "chromium", {"HOME=" + c.dir});
  ASSERT_EQ(browser.wait_exit(90s), 0) << browser.err();
  const std::string dom = browser.out();
  // The browser's console: no load refused by the page's policy, no host it could not
  // resolve (every other host), no script error.
  for (const char* bad : {"Content Security Policy", "ERR_NAME_NOT_RESOLVED", "Uncaught"})
    EXPECT_EQ(browser.err().find(bad), std::string::npos) << bad << " in the browser's log:\n" << browser.err();
  ASSERT_EQ(attribute(dom, "problem", "class"), "problem");
  EXPECT_NE(dom.find("data-rendered=\"1\""), std::string::npos) << dom.substr(0, 4000);
  EXPECT_EQ(inside(dom, "problem", "</span>"), "id=\"problem\" class=\"problem\">") << "the page reported a problem";
  EXPECT_EQ(inside(dom, "charts-problem", "</p>"), "id=\"charts-problem\" class=\"problem\">")
      << "Chart.js did not load";
  const auto workers = inside(dom, "workers", "</table>");
  for (const char* w : {"w1", "w2", "w3"})
    EXPECT_NE(workers.find("data-worker=\"" + std::string(w) + "\""), std::string::npos) << w << "\n" << workers;
  EXPECT_NE(inside(dom, "jobs", "</table>").find("data-job=\"" + job + "\""), std::string::npos);
  EXPECT_NE(dom.find("<span id=\"job-id\" class=\"muted\">" + job + "</span>"), std::string::npos);
  // The charts hold this job's steps: loss at every step, validation loss every 2 steps.
  const long loss_points = number_attribute(dom, "loss-chart", "data-points");
  EXPECT_GE(loss_points, 7) << dom;
  EXPECT_GE(number_attribute(dom, "loss-chart", "data-val-points"), 3);
  EXPECT_LE(number_attribute(dom, "loss-chart", "data-val-points"), loss_points / 2 + 1);
  EXPECT_GE(number_attribute(dom, "speed-chart", "data-points"), 7);
  EXPECT_GE(number_attribute(dom, "speed-chart", "data-mfu-points"), 7);
  // Chart.js drew them (it sets the canvas's size from its box).
  EXPECT_NE(attribute(dom, "loss-chart", "style").find("height"), std::string::npos) << dom;
  EXPECT_EQ(number_attribute(dom, "expert-heatmap", "data-experts"), 4);
  EXPECT_GE(number_attribute(dom, "expert-heatmap", "data-steps"), 7);
  EXPECT_EQ(number_attribute(dom, "expert-heatmap", "data-first-step"), 0);
  const auto placement = inside(dom, "placement", "</table>");
  EXPECT_NE(placement.find("data-worker=\"w3\""), std::string::npos) << placement;
  EXPECT_GE(number_attribute(dom, "timeline", "data-events"), 1);
  EXPECT_NE(inside(dom, "events", "</table>").find("data-event=\"join\""), std::string::npos);
  // Every address the page fetched is on this server.
  const auto resources = inside(dom, "resources", "</pre>");
  std::istringstream in(resources.substr(resources.find('>') + 1));
  const std::string origin = "http://127.0.0.1:" + std::to_string(http) + "/";
  int fetched = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    EXPECT_EQ(line.rfind(origin, 0), 0u) << line;
    ++fetched;
  }
  EXPECT_GE(fetched, 5) << resources;  // the page, two scripts, status and metrics
  EXPECT_NE(resources.find(origin + "static/chart.min.js"), std::string::npos) << resources;
  EXPECT_NE(resources.find(origin + "api/metrics?job=" + job), std::string::npos) << resources;
}

}  // namespace
}  // namespace glam::test
