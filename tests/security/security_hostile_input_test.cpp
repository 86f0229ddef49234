// The hostile-input suite (docs/runtime.md, "Security"): real daemons on loopback with a
// training job running, attacked by strangers and by peers that hold too little or send
// nonsense. Every case checks that the daemons stay up, that their resident memory stays
// within the documented bound, that every refusal is counted in `glam status`, and, once the
// job is stopped, that every step's loss equals the single-process reference bit for bit.
#include <gtest/gtest.h>

#include <random>

#include "actors/coordinator_protocol.hpp"
#include "actors/daemon.hpp"
#include "actors/errors.hpp"
#include "actors/unit_protocol.hpp"
#include "hostile_peers.hpp"
#include "tests/integration/cluster_harness.hpp"
#include "tests/integration/reference_run.hpp"
#include "tests/survivor_job.hpp"

namespace glam::test {
namespace {

// docs/runtime.md, "Limits": whatever strangers send, a daemon's resident memory grows by
// at most this much (the relay holds ~130 KiB per connection, 64 connections at most).
constexpr long rss_bound_kb = 16 * 1024;

// The fault suite's tiny job, running until it is stopped, without validation or checkpoints.
config security_job() {
  config c = testing::survivor_job("guarded");
  const config defaults;
  c.train.steps = 1000000;
  c.train.seed = 5;
  c.train.eval_every = defaults.train.eval_every;
  c.train.eval_batches = defaults.train.eval_batches;
  c.fault.checkpoint_every = defaults.fault.checkpoint_every;
  return c;
}

// A coordinator and two workers training security_job().
struct guarded_cluster {
  cluster c;
  process* w0 = nullptr;
  process* w1 = nullptr;
  std::string secret;
  std::string job;
  long rss_coordinator = 0, rss_w0 = 0, rss_w1 = 0;

  explicit guarded_cluster(const std::string& tag) : c(tag) {
    w0 = &c.add_worker("w0");
    w1 = &c.add_worker("w1");
    EXPECT_GT(w0->wait_port(), 0) << w0->err();
    EXPECT_GT(w1->wait_port(), 0) << w1->err();
    secret = slurp(c.dir + "/state/secret");
    secret = secret.substr(0, secret.find('\n'));
    write_file(c.dir + "/job.toml", to_toml(security_job()), 0644);
    auto [rc, out] = c.client({"submit", "--coordinator", c.endpoint(), c.dir + "/job.toml"});
    EXPECT_EQ(rc, 0) << out;
    job = out.substr(0, out.find('\n'));
    auto s = c.wait_status([](const nlohmann::json& s) { return !s["jobs"].empty() && s["jobs"][0]["step"] >= 20; }, 60s);
    EXPECT_GE(s["jobs"][0]["step"].get<int>(), 20) << s.dump() << c.coordinator->err();
    rss_coordinator = c.coordinator->rss_kb();
    rss_w0 = w0->rss_kb();
    rss_w1 = w1->rss_kb();
  }
  int coordinator_port() const { return c.port; }
  std::vector<int> ports() { return {c.port, w0->wait_port(), w1->wait_port()}; }

  // The daemons are up, the job still trains, and memory stayed within the bound.
  nlohmann::json expect_unharmed(const std::string& after) {
    EXPECT_FALSE(c.coordinator->exited()) << after << ": " << c.coordinator->err();
    EXPECT_FALSE(w0->exited()) << after << ": " << w0->err();
    EXPECT_FALSE(w1->exited()) << after << ": " << w1->err();
    auto s = c.status();
    EXPECT_FALSE(s.empty()) << after << ": no status";
    if (s.empty()) return s;
    const int step = s["jobs"][0]["step"].get<int>();
    s = c.wait_status([&](const nlohmann::json& x) { return x["jobs"][0]["step"].get<int>() >= step + 5; }, 30s);
    EXPECT_EQ(s["jobs"][0]["state"], "running") << after << ": " << s.dump();
    EXPECT_GE(s["jobs"][0]["step"].get<int>(), step + 5) << after << ": the job stalled: " << s.dump();
    EXPECT_EQ(s["workers"].size(), 2u) << after << ": " << s.dump();
    std::printf("%s: RSS coordinator %ld -> %ld kB, w0 %ld -> %ld kB, w1 %ld -> %ld kB\n", after.c_str(), rss_coordinator,
                c.coordinator->rss_kb(), rss_w0, w0->rss_kb(), rss_w1, w1->rss_kb());
    EXPECT_LT(c.coordinator->rss_kb(), rss_coordinator + rss_bound_kb) << after;
    EXPECT_LT(w0->rss_kb(), rss_w0 + rss_bound_kb) << after;
    EXPECT_LT(w1->rss_kb(), rss_w1 + rss_bound_kb) << after;
    return s;
  }

  // Stops the job; every committed step equals the reference.
  void expect_losses_unchanged() {
    auto [rc, out] = c.client({"stop", "--coordinator", c.endpoint(), job});
    EXPECT_EQ(rc, 0) << out;
    const auto metrics = c.dir + "/state/jobs/" + job + "/metrics.jsonl";
    std::int64_t lines = 0;
    {
      std::ifstream in(metrics);
      std::string line;
      while (std::getline(in, line)) ++lines;
    }
    ASSERT_GT(lines, 20);
    const auto want = run_reference(security_job(), lines);
    EXPECT_EQ(expect_metrics_equal(metrics, want), lines);
  }
};

std::int64_t sum_of(const nlohmann::json& counts) {
  std::int64_t n = 0;
  for (const auto& [what, v] : counts.items()) n += v.get<std::int64_t>();
  return n;
}

TEST(Security, StrangersAtEveryPortAchieveNothing) {
  guarded_cluster g("strangers");
  std::mt19937_64 rng(2026);
  const auto ports = g.ports();
  for (int port : ports) {
    // 10,000 random frames, five per connection: refused at the first bytes.
    for (int conn = 0; conn < 2000; ++conn) {
      int fd = connect_raw(port);
      ASSERT_GE(fd, 0) << "port " << port << " refused connection " << conn;
      std::string frames;
      for (int f = 0; f < 5; ++f) {
        std::string frame(1 + rng() % 200, '\0');
        for (auto& ch : frame) ch = static_cast<char>(rng());
        frames += frame;
      }
      send_all(fd, frames);
      ::close(fd);
    }
    // Forged BASP headers of every operation, announcing up to 4 GiB, as the first bytes
    // and after a relay hello with a wrong secret's proof.
    for (int op = 0; op < 256; op += (op < 8 ? 1 : 37))
      for (std::uint32_t len : {0u, 1u << 20, 16u << 20, 0xFFFFFFF0u}) {
        int fd = connect_raw(port);
        send_all(fd, basp_header(static_cast<std::uint8_t>(op), len) + std::string(1000, 'x'));
        EXPECT_TRUE(closed_by_peer(fd)) << "port " << port << " op " << op;
        ::close(fd);
      }
    int fd = relay_client(port, "not-the-cluster-secret-0123456789");
    EXPECT_LT(fd, 0) << "a wrong secret passed the relay on port " << port;
  }
  // A CAF node that speaks CAF's own protocol to each port gets nowhere (the relay waits
  // for its handshake, then closes), and neither does one with a wrong secret.
  {
    runtime_config cfg{runtime_options{1}};
    caf::actor_system sys{cfg};
    std::vector<std::future<bool>> tries;
    for (int port : ports)
      tries.push_back(std::async(std::launch::async, [&sys, port] {
        return static_cast<bool>(sys.middleman().remote_actor("127.0.0.1", static_cast<std::uint16_t>(port)));
      }));
    for (auto& t : tries) EXPECT_FALSE(t.get()) << "plain CAF reached an actor";
    relay wrong("not-the-cluster-secret-0123456789");
    auto connector = spawn_connector(sys, wrong, 10s);
    auto found = connect_through(sys, connector, "127.0.0.1", g.coordinator_port(), 10s);
    ASSERT_FALSE(found);
    EXPECT_NE(error_text(found.error()).find("could not prove the cluster secret"), std::string::npos)
        << error_text(found.error());
    caf::scoped_actor self{sys};
    self->send_exit(connector, caf::exit_reason::user_shutdown);
  }
  // 62 connections holding 16 MiB frame headers half-sent, and 63 idle connections, all
  // open at once: a client still gets through (idle and slow connections are evicted).
  std::vector<int> held;
  for (int i = 0; i < 62; ++i) {
    int fd = connect_raw(g.coordinator_port());
    send_all(fd, basp_header(1, 16u << 20) + std::string(4000, 'p'));
    held.push_back(fd);
  }
  for (int i = 0; i < 63; ++i) held.push_back(connect_raw(g.coordinator_port()));
  auto [rc, out] = g.c.client({"status", "--coordinator", g.c.endpoint()});
  EXPECT_EQ(rc, 0) << "a client could not get through: " << out;
  for (int fd : held)
    if (fd >= 0) ::close(fd);

  auto s = g.expect_unharmed("strangers");
  const auto& relay = s["coordinator"]["relay_refused"];
  EXPECT_GE(relay["handshake"].get<std::int64_t>(), 2000) << s.dump();
  EXPECT_GE(relay["secret"].get<std::int64_t>(), 2) << s.dump();
  for (const auto& w : s["workers"]) {
    EXPECT_GE(w["relay_refused"]["handshake"].get<std::int64_t>(), 2000) << s.dump();
    EXPECT_GE(w["relay_refused"]["secret"].get<std::int64_t>(), 1) << s.dump();
  }
  g.expect_losses_unchanged();
}

TEST(Security, MutatedSessionsOfARealClientAreRefused) {
  guarded_cluster g("mutated");
  // A real client's session, recorded: the relay handshake, then CAF's frames.
  recording_forwarder recorder(g.coordinator_port());
  auto [rc, out] = g.c.client({"status", "--coordinator", "127.0.0.1:" + std::to_string(recorder.port()),
                               "--secret-file", g.c.dir + "/state/secret"});
  ASSERT_EQ(rc, 0) << out;
  const auto session = recorder.recorded();
  const auto prefix = relay_handshake::hello_size + relay_handshake::proof_size;
  ASSERT_GT(session.size(), prefix + basp_header_size);
  const auto frames = session.substr(prefix);
  // Replayed as it was: the proof was for another connection's nonce.
  {
    int fd = connect_raw(g.coordinator_port());
    send_all(fd, session);
    EXPECT_TRUE(closed_by_peer(fd));
    ::close(fd);
  }
  // Its CAF frames with bytes flipped, each behind a fresh, valid relay handshake.
  std::mt19937_64 rng(7);
  for (int copy = 0; copy < 300; ++copy) {
    auto bytes = frames;
    const int flips = 1 + static_cast<int>(rng() % 8);
    for (int f = 0; f < flips; ++f) bytes[rng() % bytes.size()] ^= static_cast<char>(1 + rng() % 255);
    int fd = relay_client(g.coordinator_port(), g.secret);
    ASSERT_GE(fd, 0) << "copy " << copy;
    send_all(fd, bytes);
    timeval tv{0, 100000};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    closed_by_peer(fd);
    ::close(fd);
  }
  auto s = g.expect_unharmed("mutated sessions");
  EXPECT_GE(s["coordinator"]["relay_refused"]["secret"].get<std::int64_t>(), 1) << s.dump();
  EXPECT_GE(sum_of(s["coordinator"]["refused"]) + s["coordinator"]["relay_refused"]["frames"].get<std::int64_t>(), 1)
      << s.dump();
  g.expect_losses_unchanged();
}

TEST(Security, ANodeThatSkipsTheGateIsIgnoredEverywhere) {
  guarded_cluster g("gate");
  runtime_config cfg{runtime_options{1}};
  caf::actor_system sys{cfg};
  // Through the relay with the right secret, but without the actor-level handshake: the
  // node gate (the second wall) must drop everything it sends.
  relay r(g.secret);
  auto connector = spawn_connector(sys, r, 10s);
  auto coord_ptr = connect_through(sys, connector, "127.0.0.1", g.coordinator_port(), 10s);
  auto w0_ptr = connect_through(sys, connector, "127.0.0.1", g.w0->wait_port(), 10s);
  ASSERT_TRUE(coord_ptr) << error_text(coord_ptr.error());
  ASSERT_TRUE(w0_ptr) << error_text(w0_ptr.error());
  auto coordinator = caf::actor_cast<caf::actor>(*coord_ptr);
  auto worker = caf::actor_cast<caf::actor>(*w0_ptr);
  const job_tag tag{g.job, 0};
  caf::scoped_actor x{sys};
  // Every message of the coordinator's protocol, self-messages included.
  x->send(coordinator, heartbeat_atom::value, worker_stats{});
  x->send(coordinator, leave_atom::value);
  x->send(coordinator, step_report{tag, round_id::training(0), "w0/shard0", "w0", true, 0, 0, {}, {}});
  x->send(coordinator, applied_atom::value, tag, round_id::training(0), std::string("w0/shard0"));
  x->send(coordinator, checkpoint_report{tag, 777777, "w0/experts", {}, {}});
  x->send(coordinator, submit_atom::value, to_toml(security_job()), std::string("x.toml"));
  x->send(coordinator, status_atom::value);
  x->send(coordinator, job_status_atom::value, g.job);
  x->send(coordinator, stop_atom::value, g.job);
  x->send(coordinator, shutdown_atom::value);
  for (int i = 0; i < 1000; ++i) x->send(coordinator, tick_atom::value);
  for (std::int64_t serial = 0; serial < 50; ++serial) x->send(coordinator, deadline_atom::value, g.job, serial);
  x->send(coordinator, tensor_chunk{});
  infer_assignment session;
  session.checkpoint = "/";
  session.experts = 4;
  infer_request call;
  call.session = "serve-1";
  call.unit = "shard0";
  call.op = static_cast<std::int32_t>(infer_op::begin);
  x->send(coordinator, infer_start_atom::value, session);
  x->send(coordinator, infer_wait_atom::value, std::string("serve-1"));
  x->send(coordinator, infer_atom::value, call);
  x->send(coordinator, infer_end_atom::value, std::string("serve-1"));
  // CAF's system messages: an exit, a down naming a healthy worker.
  x->send_exit(coordinator, caf::exit_reason::user_shutdown);
  x->send(coordinator, caf::down_msg{worker.address(), caf::exit_reason::kill});
  // Every message of the worker's protocol.
  x->send(worker, shutdown_atom::value);
  x->send(worker, ping_atom::value);
  x->send(worker, host_atom::value, job_plan{});
  x->send(worker, release_atom::value, tag);
  x->send(worker, begin_atom::value, tag, round_id::training(999));
  x->send(worker, finish_atom::value, tag, round_id::training(0), true, false);
  x->send(worker, checkpoint_atom::value, tag, std::int64_t{777777});
  x->send(worker, tensor_chunk{});
  for (int i = 0; i < 1000; ++i) x->send(worker, tick_atom::value);
  x->send(worker, host_deadline_atom::value, g.job, std::int64_t{0});
  x->send(worker, infer_host_atom::value, session);
  x->send(worker, infer_atom::value, call);
  x->send(worker, infer_end_atom::value, std::string("serve-1"));
  x->send_exit(worker, caf::exit_reason::user_shutdown);
  x->send(worker, caf::down_msg{coordinator.address(), caf::exit_reason::kill});
  // Every actor id a worker's node might have, unit actors among them.
  for (auto& p : proxies_on(sys, worker.node(), 1, 80)) {
    auto a = caf::actor_cast<caf::actor>(p);
    x->send(a, begin_atom::value, tag, round_id::training(999));
    x->send(a, finish_atom::value, tag, round_id::training(0), true, false);
    x->send(a, checkpoint_atom::value, tag, std::int64_t{777777});
    x->send(a, infer_host_atom::value, session);
    x->send(a, infer_atom::value, call);
    x->send_exit(a, caf::exit_reason::user_shutdown);
  }
  std::this_thread::sleep_for(1s);
  auto s = g.expect_unharmed("a node past the relay but not the gate");
  // Self-messages are refused before the gate is asked (not from the actor itself), the
  // rest by the gate, CAF's system messages by their own check.
  const auto& c = s["coordinator"]["refused"];
  EXPECT_GE(c["unauthenticated"].get<std::int64_t>(), 8) << s.dump();
  EXPECT_GE(c["not_allowed"].get<std::int64_t>(), 1000) << s.dump();
  EXPECT_GE(c["system_messages"].get<std::int64_t>(), 2) << s.dump();
  const auto& w = s["workers"][0]["name"] == "w0" ? s["workers"][0] : s["workers"][1];
  EXPECT_GE(w["refused"]["unauthenticated"].get<std::int64_t>() + w["refused"]["not_allowed"].get<std::int64_t>() +
                w["refused"]["system_messages"].get<std::int64_t>(),
            1000)
      << s.dump();
  // Nothing was written for the forged checkpoint order.
  for (auto& e : fs::recursive_directory_iterator(g.c.dir))
    EXPECT_EQ(e.path().string().find("777777"), std::string::npos) << e.path();
  x->send_exit(connector, caf::exit_reason::user_shutdown);
  g.expect_losses_unchanged();
}

TEST(Security, AnAuthenticatedClientWithOutOfRangeValuesIsRefused) {
  guarded_cluster g("client");
  client_connection conn(g.c.endpoint(), g.c.dir + "/state/secret");
  caf::scoped_actor self{conn.system()};
  auto refusal = [&](auto&&... xs) {
    std::string why = "(answered)";
    self->request(conn.server(), 5s, std::forward<decltype(xs)>(xs)...)
        .receive([&](const std::string&) {}, [&](const caf::error& e) { why = error_text(e); });
    return why;
  };
  // The job's TOML with one line replaced.
  auto job_with = [](const std::string& line, const std::string& by) {
    auto text = to_toml(security_job());
    return text.replace(text.find(line), line.size(), by);
  };
  auto job_named = [&](const std::string& name) { return job_with("name = \"guarded\"", "name = \"" + name + "\""); };
  struct bad_submit {
    const char* what;
    std::string toml;
    std::string says;
  };
  const bad_submit rows[] = {
      {"dotdot", job_named(".."), "name directories"},
      {"dot", job_named("."), "name directories"},
      {"slash", job_named("../../etc"), "only letters"},
      {"long", job_named(std::string(300, 'n')), "at most 64 characters"},
      {"oversized", to_toml(security_job()) + "#" + std::string(max_job_file_bytes, 'x'), "at most 65536"},
      {"not_toml", "this is [not toml", "not valid TOML"},
      {"negative_layers", job_with("layers = 2", "layers = -3"), "model.layers = -3"},
      {"huge_shards", job_with("shards = 2", "shards = 100000"), "cluster.shards = 100000"},
  };
  for (const auto& row : rows) {
    auto why = refusal(submit_atom::value, row.toml, std::string(row.what) + ".toml");
    EXPECT_NE(why.find(row.says), std::string::npos) << row.what << ": " << why;
  }
  EXPECT_NE(refusal(stop_atom::value, std::string(100000, 'j')).find("no job"), std::string::npos);
  EXPECT_LT(refusal(stop_atom::value, std::string(100000, 'j')).size(), 200u) << "the echo is bounded";
  hello_msg h;
  h.role = "worker";
  h.name = std::string(5000, 'w');
  h.version = protocol_version;
  h.client_nonce = "zz";
  h.listen_host = std::string(100000, 'h');
  std::string hello_refused;
  self->request(conn.server(), 5s, hello_atom::value, h)
      .receive([](const challenge_msg&) {}, [&](const caf::error& e) { hello_refused = error_text(e); });
  EXPECT_NE(hello_refused.find("name"), std::string::npos) << hello_refused;
  EXPECT_NE(refusal(auth_atom::value, proof_msg{std::string(10000, 'n'), "p"}).find("wrong cluster secret"),
            std::string::npos);
  self->send(conn.server(), heartbeat_atom::value, worker_stats{});  // not a member
  std::string js;
  self->request(conn.server(), 5s, job_status_atom::value, std::string(100000, 'j'))
      .receive([&](const std::string& s) { js = s; }, [](const caf::error&) {});
  EXPECT_EQ(js, "{}");
  auto s = g.expect_unharmed("an authenticated client's bad values");
  EXPECT_GE(s["coordinator"]["refused"]["malformed"].get<std::int64_t>(), 7) << s.dump();
  EXPECT_GE(s["coordinator"]["refused"]["not_allowed"].get<std::int64_t>(), 1) << s.dump();
  EXPECT_EQ(s["jobs"].size(), 1u) << "no bad job was accepted: " << s.dump();
  g.expect_losses_unchanged();
}

}  // namespace
}  // namespace glam::test
