// The parts of the dashboard, /metrics and cluster discovery that need no daemon: who may
// read an HTTP port, how clients find their cluster, how a job's metrics file is read in
// pieces, and that the /metrics pages pass the strict parser of the text format. The same
// endpoints against real daemons are in tests/integration/cluster_dashboard_test.cpp.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/cluster_discovery.hpp"
#include "actors/http_access.hpp"
#include "actors/security.hpp"
#include "coordinator/coordinator_http.hpp"
#include "prometheus_parser_testing.hpp"
#include "worker/worker_http.hpp"

namespace glam {
namespace {

namespace fs = std::filesystem;
using prometheus_testing::parse_exposition;
using prometheus_testing::parsed_family;

// --- who may read an HTTP port ---------------------------------------------------------------

struct loopback_case {
  std::string host;
  bool loopback;
};

class LoopbackHosts : public ::testing::TestWithParam<loopback_case> {};

TEST_P(LoopbackHosts, OnlyTheLoopbackRangeCounts) { EXPECT_EQ(is_loopback_host(GetParam().host), GetParam().loopback); }

INSTANTIATE_TEST_SUITE_P(Table, LoopbackHosts,
                         ::testing::Values(loopback_case{"127.0.0.1", true}, loopback_case{"127.1.2.3", true},
                                           loopback_case{"localhost", true}, loopback_case{"::1", true},
                                           loopback_case{"[::1]", true}, loopback_case{"0.0.0.0", false},
                                           loopback_case{"10.0.0.1", false}, loopback_case{"127.0.0.256", false},
                                           loopback_case{"127.0.0", false}, loopback_case{"127.0.0.1.5", false},
                                           loopback_case{"127.evil.com", false}, loopback_case{"", false},
                                           loopback_case{"::", false}, loopback_case{"128.0.0.1", false}));

const std::string secret = "0123456789abcdef0123456789abcdef";

http_request request_with(const std::string& query, const http_headers& headers) {
  http_request r;
  r.method = "GET";
  r.path = "/";
  r.query = query;
  r.target = "/" + (query.empty() ? "" : "?" + query);
  r.headers = headers;
  return r;
}

struct access_case {
  std::string name;
  std::string host;
  http_auth mode;
  std::string query;
  http_headers headers;
  bool allowed;
};

class HttpAccess : public ::testing::TestWithParam<access_case> {};

TEST_P(HttpAccess, NeedsTheTokenOffLoopbackOrWhenAskedTo) {
  const auto& c = GetParam();
  const auto access = http_access::for_bind(c.host, c.mode, secret);
  // Placeholders in the table stand for the real token and cookie name.
  auto fill = [&](std::string s) {
    for (const auto& [from, to] : {std::pair<std::string, std::string>{"TOKEN", access.token},
                                   std::pair<std::string, std::string>{"COOKIE", access.cookie_name}})
      for (auto at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
    return s;
  };
  http_headers headers;
  for (const auto& [k, v] : c.headers) headers.emplace_back(k, fill(v));
  EXPECT_EQ(access.allows(request_with(fill(c.query), headers)), c.allowed);
}

INSTANTIATE_TEST_SUITE_P(
    Table, HttpAccess,
    ::testing::Values(
        access_case{"loopback_auto_open", "127.0.0.1", http_auth::automatic, "", {}, true},
        access_case{"loopback_token_missing", "127.0.0.1", http_auth::token, "", {}, false},
        access_case{"loopback_token_query", "127.0.0.1", http_auth::token, "token=TOKEN", {}, true},
        access_case{"loopback_token_wrong_query", "127.0.0.1", http_auth::token, "token=TOKENx", {}, false},
        access_case{"loopback_token_bearer", "127.0.0.1", http_auth::token, "", {{"Authorization", "Bearer TOKEN"}}, true},
        access_case{"loopback_token_wrong_bearer", "127.0.0.1", http_auth::token, "",
                    {{"Authorization", "Bearer 0123"}}, false},
        access_case{"loopback_token_cookie", "127.0.0.1", http_auth::token, "", {{"Cookie", "a=1; COOKIE=TOKEN; b=2"}}, true},
        access_case{"loopback_token_cookie_other_name", "127.0.0.1", http_auth::token, "",
                    {{"Cookie", "glam_token_x=TOKEN"}}, false},
        access_case{"loopback_token_secret_itself", "127.0.0.1", http_auth::token, "token=" + secret, {}, false},
        access_case{"any_address_auto_missing", "0.0.0.0", http_auth::automatic, "", {}, false},
        access_case{"any_address_auto_query", "0.0.0.0", http_auth::automatic, "token=TOKEN", {}, true},
        access_case{"lan_auto_empty_token", "10.1.2.3", http_auth::automatic, "token=", {}, false}),
    [](const auto& info) { return info.param.name; });

TEST(HttpAccess, TheTokenIsDerivedNotTheSecretAndDiffersBetweenClusters) {
  const auto a = http_access_token(secret), b = http_access_token(secret + "x");
  EXPECT_EQ(a.size(), 64u);
  EXPECT_EQ(a, http_access_token(secret));
  EXPECT_NE(a, b);
  EXPECT_EQ(a.find(secret), std::string::npos);
  EXPECT_NE(http_access::for_bind("127.0.0.1", http_auth::token, secret).cookie_name,
            http_access::for_bind("127.0.0.1", http_auth::token, secret + "x").cookie_name);
  EXPECT_THROW(parse_http_auth("open"), std::invalid_argument);
}

// --- how clients find their cluster ---------------------------------------------------------

struct resolve_case {
  std::string name;
  std::string given;
  std::optional<std::string> environment;
  std::vector<std::string> recorded;
  std::string expected;   // the endpoint, or
  std::string error_has;  // a part of the error
};

class ResolveCoordinator : public ::testing::TestWithParam<resolve_case> {};

TEST_P(ResolveCoordinator, GivenThenEnvironmentThenTheOneRecorded) {
  const auto& c = GetParam();
  std::vector<recorded_cluster> recorded;
  for (const auto& e : c.recorded) recorded.push_back(recorded_cluster{e, "/state/" + e, 42, "/records/" + e});
  const char* env = c.environment ? c.environment->c_str() : nullptr;
  if (c.error_has.empty()) {
    EXPECT_EQ(resolve_coordinator(c.given, env, recorded), c.expected);
    return;
  }
  try {
    resolve_coordinator(c.given, env, recorded);
    ADD_FAILURE() << "resolved, but should have failed with " << c.error_has;
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(c.error_has), std::string::npos) << e.what();
    for (const auto& r : c.recorded) EXPECT_NE(std::string(e.what()).find(r), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, ResolveCoordinator,
    ::testing::Values(
        resolve_case{"given_wins", "10.0.0.1:7070", "127.0.0.1:1", {"127.0.0.1:2", "127.0.0.1:3"}, "10.0.0.1:7070", ""},
        resolve_case{"environment_next", "", "127.0.0.1:1", {"127.0.0.1:2", "127.0.0.1:3"}, "127.0.0.1:1", ""},
        resolve_case{"empty_environment_ignored", "", "", {"127.0.0.1:2"}, "127.0.0.1:2", ""},
        resolve_case{"one_recorded", "", std::nullopt, {"127.0.0.1:2"}, "127.0.0.1:2", ""},
        resolve_case{"none", "", std::nullopt, {}, "", "give --coordinator HOST:PORT, set GLAM_COORDINATOR"},
        resolve_case{"several", "", std::nullopt, {"127.0.0.1:2", "127.0.0.1:3"}, "",
                     "pick one with --coordinator HOST:PORT"}),
    [](const auto& info) { return info.param.name; });

// A HOME of its own for each test that touches ~/.glam.
class ClusterRecords : public ::testing::Test {
 protected:
  void SetUp() override {
    home_ = fs::temp_directory_path() / ("glam-records-" + std::to_string(::getpid()));
    fs::remove_all(home_);
    fs::create_directories(home_);
    if (const char* h = std::getenv("HOME")) old_home_ = h;
    ::setenv("HOME", home_.c_str(), 1);
  }
  void TearDown() override {
    for (pid_t p : children_) {
      ::kill(p, SIGKILL);
      ::waitpid(p, nullptr, 0);
    }
    if (old_home_)
      ::setenv("HOME", old_home_->c_str(), 1);
    else
      ::unsetenv("HOME");
    fs::remove_all(home_);
  }
  void write_record(const std::string& name, const std::string& text) {
    fs::create_directories(cluster_records_dir());
    std::ofstream(cluster_records_dir() + "/" + name) << text;
  }
  // A process that runs until the test ends, named like a coordinator (the records check the
  // command line, so that a process id the system gave to another program does not count).
  pid_t running_coordinator_process() {
    pid_t p = ::fork();
    if (p == 0) {
      ::execl("/bin/sleep", "glam-coordinator", "60", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    children_.push_back(p);
    // The command line is the child's own once exec has happened.
    for (int i = 0; i < 500; ++i) {
      std::ifstream in("/proc/" + std::to_string(p) + "/cmdline");
      std::string args;
      std::getline(in, args, '\0');
      if (args == "glam-coordinator") break;
      ::usleep(2000);
    }
    return p;
  }
  pid_t ended_process() {
    pid_t p = ::fork();
    if (p == 0) ::_exit(0);
    ::waitpid(p, nullptr, 0);
    return p;
  }

  fs::path home_;
  std::optional<std::string> old_home_;
  std::vector<pid_t> children_;
};

TEST_F(ClusterRecords, RunningCoordinatorsCountAndStaleRecordsDoNot) {
  EXPECT_TRUE(recorded_clusters().empty());  // no directory yet
  const pid_t live = running_coordinator_process();
  write_record("127.0.0.1_7070", "/s/secret\n/ckpt\n" + std::to_string(live) + "\n/state/a\n");
  write_record("127.0.0.1_7071", "/s/secret\n/ckpt\n" + std::to_string(ended_process()) + "\n/state/b\n");
  write_record("127.0.0.1_7072", "/s/secret\n/ckpt\n");             // an older record: no process named
  write_record("127.0.0.1_7073", "/s/secret\n/ckpt\n" + std::to_string(::getpid()) + "\n");  // not a coordinator
  write_record("not-a-record", "x\n");
  write_record("host_port", "x\n");
  const auto r = recorded_clusters();
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].endpoint, "127.0.0.1:7070");
  EXPECT_EQ(r[0].pid, live);
  EXPECT_EQ(r[0].state_dir, "/state/a");
  EXPECT_EQ(r[1].endpoint, "127.0.0.1:7072");
  EXPECT_EQ(r[1].pid, 0);
}

TEST_F(ClusterRecords, ACoordinatorForgetsOnlyItsOwnRecord) {
  record_cluster("127.0.0.1", 7080, "/s/secret", "/ckpt", "/state/mine");
  write_record("127.0.0.1_7081", "/s/secret\n/ckpt\n" + std::to_string(running_coordinator_process()) + "\n");
  std::ifstream in(cluster_record_path("127.0.0.1", 7080));
  std::string line, pid, state;
  std::getline(in, line);
  std::getline(in, line);
  std::getline(in, pid);
  std::getline(in, state);
  EXPECT_EQ(pid, std::to_string(::getpid()));
  EXPECT_EQ(state, "/state/mine");
  forget_cluster("127.0.0.1", 7081);  // another process's record stays
  forget_cluster("127.0.0.1", 7080);
  EXPECT_FALSE(fs::exists(cluster_record_path("127.0.0.1", 7080)));
  EXPECT_TRUE(fs::exists(cluster_record_path("127.0.0.1", 7081)));
}

// --- a job's metrics file, read in pieces ---------------------------------------------------

class MetricsLines : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (fs::temp_directory_path() / ("glam-metrics-" + std::to_string(::getpid()) + ".jsonl")).string();
  }
  void TearDown() override { fs::remove(path_); }
  void write(const std::string& text) { std::ofstream(path_, std::ios::binary) << text; }
  std::string path_;
};

TEST_F(MetricsLines, WholeLinesFromAnOffsetAndTheNextOffset) {
  const std::string a = R"({"step":1,"loss":3.5})" "\n", b = R"({"event":"join","from_step":1})" "\n",
                    c = R"({"step":2,"loss":3.25})" "\n", partial = R"({"step":3,"lo)";
  write(a + b + c + partial);
  struct step_case {
    std::uint64_t from;
    std::size_t max_bytes;
    std::size_t lines;
    std::uint64_t next;
    bool more, reset;
  };
  const std::vector<step_case> cases{
      {0, 1u << 20, 3, a.size() + b.size() + c.size(), false, false},  // the partial line waits
      {a.size(), 1u << 20, 2, a.size() + b.size() + c.size(), false, false},
      {0, a.size() + 5, 1, a.size(), true, false},                         // a limit cuts at a line end
      {a.size() + b.size() + c.size(), 1u << 20, 0, a.size() + b.size() + c.size(), false, false},
      {1u << 30, 1u << 20, 3, a.size() + b.size() + c.size(), false, true},  // past the end: from 0
  };
  for (const auto& k : cases) {
    const auto j = read_metrics_lines(path_, "job-1", k.from, k.max_bytes);
    EXPECT_EQ(j["lines"].size(), k.lines) << "from " << k.from;
    EXPECT_EQ(j["next"].get<std::uint64_t>(), k.next) << "from " << k.from;
    EXPECT_EQ(j["more"].get<bool>(), k.more) << "from " << k.from;
    EXPECT_EQ(j["reset"].get<bool>(), k.reset) << "from " << k.from;
    EXPECT_EQ(j["size"].get<std::uint64_t>(), a.size() + b.size() + c.size() + partial.size());
  }
  EXPECT_EQ(read_metrics_lines(path_, "job-1", 0)["lines"][1]["event"], "join");
}

TEST_F(MetricsLines, ACorruptLineIsSkippedAndAMissingFileIsEmpty) {
  write("{\"step\":1}\nnot json\n{\"step\":2}\n");
  const auto j = read_metrics_lines(path_, "job-1", 0);
  ASSERT_EQ(j["lines"].size(), 2u);
  EXPECT_EQ(j["lines"][1]["step"], 2);
  const auto none = read_metrics_lines(path_ + ".missing", "job-1", 0);
  EXPECT_TRUE(none["lines"].empty());
  EXPECT_EQ(none["next"], 0);
  EXPECT_FALSE(none["more"].get<bool>());
}

TEST(JobIds, OnlySafePathSegments) {
  for (const char* ok : {"tiny-1", "glam.tiny_2-10", "a"}) EXPECT_TRUE(valid_job_id(ok)) << ok;
  for (const char* bad : {"", ".", "..", "../x", "a/b", "a%2Fb", "a b", "a\nb"}) EXPECT_FALSE(valid_job_id(bad)) << bad;
  EXPECT_FALSE(valid_job_id(std::string(129, 'a')));
}

// --- the /metrics pages pass the strict parser ----------------------------------------------

std::map<std::string, const parsed_family*> by_name(const std::vector<parsed_family>& families) {
  std::map<std::string, const parsed_family*> m;
  for (const auto& f : families) m[f.name] = &f;
  return m;
}

double sample(const parsed_family& f, const std::map<std::string, std::string>& labels) {
  for (const auto& s : f.samples)
    if (s.labels == labels) return s.value;
  ADD_FAILURE() << "no sample of " << f.name << " with those labels";
  return std::nan("");
}

TEST(CoordinatorMetrics, EveryFamilyFromAStatusParsesStrictly) {
  const auto status = nlohmann::json::parse(R"({
    "coordinator": {"listen": "127.0.0.1:7070", "epoch": 4, "bytes_received": 100, "bytes_sent": 200,
                    "connections": {"accepted": 5, "authenticated": 4, "encrypted": 0},
                    "refused": {"unauthenticated": 1, "stale": 2},
                    "relay_refused": {"secret": 3}},
    "workers": [
      {"name": "w1", "units": ["shard0", "expert0"], "tokens_computed": 1000, "bytes_sent": 10, "bytes_received": 20,
       "memory_bytes": 4096, "memory_limit": 8192, "gflops": 12.5, "last_heard_ms": 250, "busy_seconds_per_step": 0.25,
       "refused": {"stale": 1}, "relay_refused": {"idle": 0}},
      {"name": "w \"2\"", "units": [], "tokens_computed": 0, "bytes_sent": 0, "bytes_received": 0,
       "memory_bytes": 1, "memory_limit": 0, "gflops": 0, "last_heard_ms": 0, "refused": {}, "relay_refused": {}}],
    "jobs": [
      {"id": "tiny-1", "state": "finished", "step": 10, "steps": 10, "loss": 3.5, "tokens_per_s": 0,
       "progress": {"steps_committed": 12, "tokens": 1536, "skipped_steps": 0, "dropped_choices": 3,
                    "events": {"recovery": 1}, "val_loss": 3.75, "mfu": 0.01}},
      {"id": "tiny-2", "state": "running", "epoch": 4, "step": 3, "steps": 100, "loss": 4.0, "tokens_per_s": 900,
       "balancedness": 0.75, "experts": [{"expert": 0, "worker": "w1", "load_share": 0.625},
                                         {"expert": 1, "worker": "w1", "load_share": 0.375}],
       "progress": {"steps_committed": 3, "tokens": 384, "skipped_steps": 1, "dropped_choices": 0,
                    "events": {"join": 2, "drain": 1, "rebalance": 1}}}]})");
  http_counters h;
  h.requests = 7;
  h.responses_by_class[2] = 6;
  const std::string text = coordinator_metrics_text(status, h, 123456);
  std::vector<parsed_family> families;
  ASSERT_NO_THROW(families = parse_exposition(text)) << text;
  const auto f = by_name(families);
  for (const auto& fam : families) {
    EXPECT_TRUE(fam.help.has_value()) << fam.name;
    EXPECT_TRUE(fam.typed) << fam.name;
  }
  EXPECT_EQ(f.at("glam_epoch")->samples[0].value, 4);
  EXPECT_EQ(f.at("glam_workers")->samples[0].value, 2);
  EXPECT_EQ(f.at("glam_coordinator_resident_bytes")->samples[0].value, 123456);
  EXPECT_EQ(f.at("glam_job_steps_committed_total")->type, "counter");
  EXPECT_EQ(sample(*f.at("glam_job_steps_committed_total"), {{"job", "tiny-1"}}), 12);
  EXPECT_EQ(sample(*f.at("glam_job_tokens_total"), {{"job", "tiny-2"}}), 384);
  EXPECT_EQ(sample(*f.at("glam_job_events_total"), {{"job", "tiny-1"}, {"event", "recovery"}}), 1);
  EXPECT_EQ(sample(*f.at("glam_job_events_total"), {{"job", "tiny-2"}, {"event", "join"}}), 2);
  EXPECT_EQ(sample(*f.at("glam_job_events_total"), {{"job", "tiny-2"}, {"event", "recovery"}}), 0);
  EXPECT_EQ(sample(*f.at("glam_job_state"), {{"job", "tiny-2"}, {"state", "running"}}), 1);
  EXPECT_EQ(sample(*f.at("glam_job_state"), {{"job", "tiny-2"}, {"state", "finished"}}), 0);
  EXPECT_EQ(sample(*f.at("glam_job_validation_loss"), {{"job", "tiny-1"}}), 3.75);
  EXPECT_EQ(f.at("glam_job_validation_loss")->samples.size(), 1u);  // only a job that evaluated
  EXPECT_EQ(sample(*f.at("glam_job_epoch"), {{"job", "tiny-2"}}), 4);
  EXPECT_EQ(sample(*f.at("glam_job_mfu"), {{"job", "tiny-1"}}), 0.01);
  EXPECT_EQ(sample(*f.at("glam_job_events_total"), {{"job", "tiny-2"}, {"event", "rebalance"}}), 1);
  EXPECT_EQ(sample(*f.at("glam_job_balancedness"), {{"job", "tiny-2"}}), 0.75);
  EXPECT_EQ(f.at("glam_job_balancedness")->samples.size(), 1u);  // only the running job has one
  EXPECT_EQ(sample(*f.at("glam_expert_load_share"), {{"job", "tiny-2"}, {"expert", "1"}, {"worker", "w1"}}), 0.375);
  EXPECT_EQ(sample(*f.at("glam_worker_busy_seconds_per_step"), {{"worker", "w1"}}), 0.25);
  EXPECT_EQ(f.at("glam_worker_busy_seconds_per_step")->samples.size(), 1u);
  EXPECT_EQ(sample(*f.at("glam_worker_tokens_computed_total"), {{"worker", "w1"}}), 1000);
  EXPECT_EQ(sample(*f.at("glam_worker_units"), {{"worker", "w1"}}), 2);
  EXPECT_EQ(sample(*f.at("glam_worker_resident_bytes"), {{"worker", "w \"2\""}}), 1);
  EXPECT_EQ(sample(*f.at("glam_coordinator_refused_messages_total"), {{"reason", "stale"}}), 2);
  EXPECT_EQ(sample(*f.at("glam_coordinator_connections_total"), {{"kind", "authenticated"}}), 4);
  EXPECT_EQ(sample(*f.at("glam_http_requests_total"), {}), 7);
  EXPECT_EQ(sample(*f.at("glam_http_responses_total"), {{"class", "2xx"}}), 6);
}

TEST(CoordinatorMetrics, AnEmptyClusterStillParses) {
  const auto status = nlohmann::json::parse(R"({"coordinator": {"listen": "127.0.0.1:1", "epoch": 0, "refused": {}},
                                                "workers": [], "jobs": []})");
  std::vector<parsed_family> families;
  const auto text = coordinator_metrics_text(status, http_counters{}, 0);
  ASSERT_NO_THROW(families = parse_exposition(text)) << text;
  EXPECT_EQ(by_name(families).at("glam_workers")->samples[0].value, 0);
}

TEST(WorkerMetrics, EveryFamilyParsesStrictly) {
  worker_stats s;
  s.name = "w1";
  s.tokens_computed = 4096;
  s.bytes_sent = 1 << 20;
  s.memory_bytes = 50 << 20;
  s.gflops = 99.5;
  s.refused.stale = 3;
  s.relay.secret = 2;
  std::vector<parsed_family> families;
  const auto text = worker_metrics_text(s, http_counters{});
  ASSERT_NO_THROW(families = parse_exposition(text)) << text;
  const auto f = by_name(families);
  EXPECT_EQ(sample(*f.at("glam_worker_tokens_computed_total"), {{"worker", "w1"}}), 4096);
  EXPECT_EQ(sample(*f.at("glam_worker_refused_messages_total"), {{"worker", "w1"}, {"reason", "stale"}}), 3);
  EXPECT_EQ(sample(*f.at("glam_worker_relay_refused_total"), {{"worker", "w1"}, {"reason", "secret"}}), 2);
  EXPECT_EQ(sample(*f.at("glam_worker_gflops"), {{"worker", "w1"}}), 99.5);
}

}  // namespace
}  // namespace glam
