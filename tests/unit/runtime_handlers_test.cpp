// The coordinator, worker and unit actors driven by local messages (no sockets): the
// handshake, registration, submit/status/stop, heartbeats, and every gate of the hardening
// rules: self-messages only from the actor itself, CAF exit and down messages only from
// where they may come, unit actors only from their own worker, one-shot phases, and
// requests whose failure is handled instead of ending the actor.
#include <unistd.h>

#include <filesystem>

#include <caf/all.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "actors/errors.hpp"
#include "actors/fingerprint.hpp"
#include "actors/runtime_config.hpp"
#include "actors/security.hpp"
#include "coordinator/coordinator_actor.hpp"
#include "tests/tiny_job.hpp"
#include "worker/worker_actor.hpp"

namespace glam {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const std::string secret = "handler-test-secret-0123456789";

const std::string tiny_job = glam::testing::tiny_job_toml(3);

struct fixture {
  std::string dir = (fs::temp_directory_path() / ("glam-handlers-" + std::to_string(::getpid()))).string();
  runtime_config cfg{runtime_options{}};
  caf::actor_system sys{cfg};
  coordinator_actor coord;
  explicit fixture(std::chrono::milliseconds request_timeout = 10000ms) {
    fs::remove_all(dir);
    coordinator_options o;
    o.state_dir = dir;
    o.secret = secret;
    o.heartbeat_timeout = 400ms;
    o.tick = 50ms;
    o.settle = 0ms;
    o.request_timeout = request_timeout;
    coord = sys.spawn(coordinator_behavior, o);
  }
  ~fixture() {
    caf::scoped_actor self{sys};
    // The coordinator may be persisting its table (a recovery bumps the epoch): wait until
    // it is gone before its directory goes.
    self->monitor(coord);
    self->send_exit(coord, caf::exit_reason::user_shutdown);
    self->receive([](const caf::down_msg&) {}, caf::after(std::chrono::seconds(10)) >> [] {});
    std::error_code ignored;
    fs::remove_all(dir, ignored);
  }
  // The answer to a request, or its error.
  template <class T, class Dest, class... Ts>
  caf::expected<T> ask(const Dest& dest, Ts&&... xs) {
    caf::scoped_actor self{sys};
    caf::expected<T> out{caf::sec::request_timeout};
    self->request(dest, 5s, std::forward<Ts>(xs)...)
        .receive([&](const T& x) { out = x; }, [&](const caf::error& e) { out = e; });
    return out;
  }
  nlohmann::json status() { return nlohmann::json::parse(*ask<std::string>(coord, status_atom::value)); }
  worker_actor worker(const std::string& name) {
    worker_options wo;
    wo.name = name;
    wo.secret = secret;
    wo.listen_host = "127.0.0.1";
    wo.heartbeat = 50ms;
    wo.data_root = fs::current_path().string();
    wo.checkpoint_root = dir;
    return sys.spawn(worker_behavior, wo);
  }
  // Waits (bounded) until pred holds on the status.
  template <class Pred>
  nlohmann::json wait_status(Pred pred) {
    nlohmann::json s;
    for (int i = 0; i < 100; ++i) {
      s = status();
      if (pred(s)) break;
      std::this_thread::sleep_for(50ms);
    }
    return s;
  }
};

std::string error_of(const caf::expected<std::string>& x) { return x ? std::string() : error_text(x.error()); }

hello_msg client_hello() {
  hello_msg h;
  h.role = "client";
  h.name = "client-test";
  h.version = protocol_version;
  h.client_nonce = random_hex(32);
  return h;
}

TEST(RuntimeHandlers, HelloIsRefusedWithTheMismatchedFieldOrChallenged) {
  fixture f;
  hello_msg h;
  h.role = "worker";
  h.name = "w";
  h.version = protocol_version + 7;
  h.client_nonce = random_hex(32);
  auto c = f.ask<challenge_msg>(f.coord, hello_atom::value, h);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().category(), glam_error_category);
  EXPECT_NE(error_text(c.error()).find("protocol version"), std::string::npos);
  h = client_hello();
  c = f.ask<challenge_msg>(f.coord, hello_atom::value, h);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->server_proof, server_proof(secret, h.client_nonce));  // the coordinator proves the secret too
  auto r = f.ask<std::string>(f.coord, auth_atom::value, proof_msg{c->nonce, client_proof("wrong-secret-000000", c->nonce)});
  EXPECT_NE(error_of(r).find("wrong cluster secret"), std::string::npos);
  // The nonce is used up: the right proof on the old nonce fails now.
  r = f.ask<std::string>(f.coord, auth_atom::value, proof_msg{c->nonce, client_proof(secret, c->nonce)});
  EXPECT_FALSE(r);
}

TEST(RuntimeHandlers, WorkerRegistersHeartbeatsHostsAndIsExpiredWhenSilent) {
  fixture f;
  auto w = f.worker("local-w");
  auto r = f.ask<std::string>(w, register_atom::value, f.coord, std::uint16_t{9999});
  ASSERT_TRUE(r) << error_of(r);
  auto s = f.status();
  ASSERT_EQ(s["workers"].size(), 1u);
  EXPECT_EQ(s["workers"][0]["name"], "local-w");
  EXPECT_EQ(s["workers"][0]["address"], "127.0.0.1:9999");
  // A second registration of the same actor is refused: it is past that phase.
  EXPECT_NE(error_of(f.ask<std::string>(w, register_atom::value, f.coord, std::uint16_t{1})).find("already"),
            std::string::npos);
  // Submit: a malformed config names the key; an oversized file is refused with the limit;
  // a good one is placed on the worker.
  auto bad = f.ask<std::string>(f.coord, submit_atom::value, std::string("[model]\nlayers = \"x\"\n"), std::string("bad.toml"));
  EXPECT_NE(error_of(bad).find("bad.toml"), std::string::npos) << error_of(bad);
  auto huge = f.ask<std::string>(f.coord, submit_atom::value, tiny_job + "#" + std::string(max_job_file_bytes, 'x'),
                                 std::string("huge.toml"));
  EXPECT_NE(error_of(huge).find("at most " + std::to_string(max_job_file_bytes)), std::string::npos) << error_of(huge);
  auto ok = f.ask<std::string>(f.coord, submit_atom::value, tiny_job, std::string("tiny.toml"));
  ASSERT_TRUE(ok) << error_of(ok);
  s = f.wait_status([](const nlohmann::json& s) { return s["jobs"][0]["step"].get<int>() > 0; });
  EXPECT_EQ(s["jobs"][0]["state"], "running");
  EXPECT_EQ(s["workers"][0]["units"].size(), 7u) << s.dump();  // 3 shards + 4 experts
  // A release of an older epoch is fenced and counted by the worker.
  auto stale = f.ask<std::string>(w, release_atom::value, job_tag{*ok, -1});
  EXPECT_FALSE(stale);
  auto stats = f.ask<worker_stats>(w, ping_atom::value);
  ASSERT_TRUE(stats);
  EXPECT_GE(stats->refused.not_allowed, 1) << "the release did not come from the coordinator";
  // Stop, then the worker goes silent (killed): the coordinator expires it.
  auto st = f.ask<std::string>(f.coord, stop_atom::value, *ok);
  EXPECT_TRUE(st) << error_of(st);
  caf::scoped_actor self{f.sys};
  self->send_exit(w, caf::exit_reason::kill);
  s = f.wait_status([](const nlohmann::json& s) { return s["workers"].empty(); });
  EXPECT_TRUE(s["workers"].empty());
}

// Messages that only the actor itself, its own process or a named sender may send, sent by
// another actor: dropped and counted, and the running job goes on as if nothing came.
struct forged_case {
  const char* name;
  void (*forge)(caf::scoped_actor& stranger, fixture& f, const worker_actor& w, const std::string& job);
};

const forged_case forged_cases[] = {
    {"coordinator_tick",
     [](caf::scoped_actor& x, fixture& f, const worker_actor&, const std::string&) {
       for (int i = 0; i < 1000; ++i) x->send(f.coord, tick_atom::value);
     }},
    {"coordinator_deadline",
     [](caf::scoped_actor& x, fixture& f, const worker_actor&, const std::string& job) {
       for (std::int64_t serial = 0; serial < 100; ++serial) x->send(f.coord, deadline_atom::value, job, serial);
     }},
    {"worker_tick",
     [](caf::scoped_actor& x, fixture&, const worker_actor& w, const std::string&) {
       for (int i = 0; i < 1000; ++i) x->send(w, tick_atom::value);
     }},
    {"worker_host_deadline",
     [](caf::scoped_actor& x, fixture&, const worker_actor& w, const std::string& job) {
       x->send(w, host_deadline_atom::value, job, std::int64_t{0});
     }},
    // (An exit with reason kill cannot be trapped in CAF 0.17: only the relay keeps a
    // stranger's from arriving. Every other exit is checked by the exit handler.)
    {"anonymous_exit_to_coordinator",
     [](caf::scoped_actor&, fixture& f, const worker_actor&, const std::string&) {
       caf::anon_send_exit(f.coord, caf::exit_reason::user_shutdown);
     }},
    {"anonymous_exit_to_worker",
     [](caf::scoped_actor&, fixture&, const worker_actor& w, const std::string&) {
       caf::anon_send_exit(w, caf::exit_reason::unhandled_exception);
     }},
    {"down_naming_the_worker",
     [](caf::scoped_actor& x, fixture& f, const worker_actor& w, const std::string&) {
       x->send(caf::actor_cast<caf::actor>(f.coord), caf::down_msg{w.address(), caf::exit_reason::kill});
     }},
    {"down_naming_the_coordinator",
     [](caf::scoped_actor& x, fixture& f, const worker_actor& w, const std::string&) {
       x->send(caf::actor_cast<caf::actor>(w), caf::down_msg{f.coord.address(), caf::exit_reason::kill});
     }},
    {"host_and_release_not_from_the_coordinator",
     [](caf::scoped_actor& x, fixture&, const worker_actor& w, const std::string& job) {
       x->send(caf::actor_cast<caf::actor>(w), release_atom::value, job_tag{job, 0});
       x->send(caf::actor_cast<caf::actor>(w), host_atom::value, job_plan{});
     }},
    {"job_orders_not_from_the_coordinator",
     [](caf::scoped_actor& x, fixture&, const worker_actor& w, const std::string& job) {
       x->send(w, begin_atom::value, job_tag{job, 0}, round_id::training(999));
       x->send(w, finish_atom::value, job_tag{job, 0}, round_id::training(0), true, false);
       x->send(w, checkpoint_atom::value, job_tag{job, 0}, std::int64_t{777777});
     }},
};

class RuntimeForged : public ::testing::TestWithParam<forged_case> {};

TEST_P(RuntimeForged, IsDroppedCountedAndChangesNothing) {
  fixture f;
  auto w = f.worker("w0");
  ASSERT_TRUE(f.ask<std::string>(w, register_atom::value, f.coord, std::uint16_t{9999}));
  auto job = f.ask<std::string>(f.coord, submit_atom::value, tiny_job, std::string("tiny.toml"));
  ASSERT_TRUE(job) << error_of(job);
  auto before = f.wait_status([](const nlohmann::json& s) { return s["jobs"][0]["step"].get<int>() >= 2; });
  ASSERT_GE(before["jobs"][0]["step"].get<int>(), 2) << before.dump();
  {
    caf::scoped_actor stranger{f.sys};
    GetParam().forge(stranger, f, w, *job);
  }
  // The job keeps training, the worker stays registered and heartbeating.
  const int step = before["jobs"][0]["step"].get<int>();
  auto after = f.wait_status([&](const nlohmann::json& s) { return s["jobs"][0]["step"].get<int>() >= step + 3; });
  EXPECT_EQ(after["jobs"][0]["state"], "running") << after.dump();
  EXPECT_GE(after["jobs"][0]["step"].get<int>(), step + 3) << after.dump();
  ASSERT_EQ(after["workers"].size(), 1u) << after.dump();
  // Counted where it landed.
  auto stats = f.ask<worker_stats>(w, ping_atom::value);
  ASSERT_TRUE(stats);
  const auto& c = after["coordinator"]["refused"];
  const std::int64_t counted = c["not_allowed"].get<std::int64_t>() + c["system_messages"].get<std::int64_t>() +
                               stats->refused.not_allowed + stats->refused.system_messages;
  EXPECT_GE(counted, 1) << after.dump();
}

INSTANTIATE_TEST_SUITE_P(Messages, RuntimeForged, ::testing::ValuesIn(forged_cases),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(RuntimeHandlers, AJobTooBigForTheWorkersWaitsWithTheReason) {
  // 2000 shards would be 2000 threads on one worker: the job waits for workers instead.
  fixture f;
  auto w = f.worker("w0");
  ASSERT_TRUE(f.ask<std::string>(w, register_atom::value, f.coord, std::uint16_t{9999}));
  auto job = f.ask<std::string>(f.coord, submit_atom::value, glam::testing::tiny_job_toml(2000), std::string("big.toml"));
  ASSERT_TRUE(job) << error_of(job);
  auto s = f.wait_status([](const nlohmann::json& s) { return !s["jobs"][0]["waiting"].get<std::string>().empty(); });
  EXPECT_EQ(s["jobs"][0]["state"], "pending") << s.dump();
  EXPECT_NE(s["jobs"][0]["waiting"].get<std::string>().find("waits for more workers"), std::string::npos) << s.dump();
  EXPECT_TRUE(s["workers"][0]["units"].empty()) << s.dump();
}

TEST(RuntimeHandlers, AFailedRequestDoesNotEndTheCoordinator) {
  // A "worker" that registers and then answers nothing: its host requests time out, the job
  // recovers again and again and then fails with the reasons, and the release sent to it
  // fails too. None of it may end the coordinator (a request without an error handler would).
  fixture f(300ms);
  caf::scoped_actor mute{f.sys};
  hello_msg h;
  h.role = "worker";
  h.name = "mute";
  h.version = protocol_version;
  h.fingerprint = local_fingerprint();
  h.client_nonce = random_hex(32);
  h.listen_host = "127.0.0.1";
  h.listen_port = 1;
  challenge_msg c;
  mute->request(f.coord, 5s, hello_atom::value, h).receive([&](const challenge_msg& x) { c = x; }, [](const caf::error&) {});
  bool registered = false;
  mute->request(f.coord, 5s, auth_atom::value, proof_msg{c.nonce, client_proof(secret, c.nonce)})
      .receive([&](const std::string&) { registered = true; }, [](const caf::error&) {});
  ASSERT_TRUE(registered);
  auto job = f.ask<std::string>(f.coord, submit_atom::value, tiny_job, std::string("tiny.toml"));
  ASSERT_TRUE(job) << error_of(job);
  // It heartbeats (so it stays a member) but answers no request.
  nlohmann::json s;
  for (int i = 0; i < 300 && (s.empty() || s["jobs"][0]["state"] != "failed"); ++i) {
    mute->send(f.coord, heartbeat_atom::value, worker_stats{});
    std::this_thread::sleep_for(50ms);
    s = f.status();
  }
  EXPECT_EQ(s["jobs"][0]["state"], "failed") << s.dump();
  EXPECT_NE(s["jobs"][0]["error"].get<std::string>().find("could not take its part of the placement"), std::string::npos)
      << s.dump();
  EXPECT_NE(s["jobs"][0]["error"].get<std::string>().find("recoveries in a row failed"), std::string::npos) << s.dump();
  ASSERT_EQ(s["workers"].size(), 1u) << "the release went to a live member and timed out: " << s.dump();
  auto again = f.ask<std::string>(f.coord, status_atom::value);
  EXPECT_TRUE(again) << "the coordinator answers after the failed requests";
}

// A unit actor driven directly: only its own worker actor is obeyed, and each phase
// transition happens once per round.
TEST(RuntimeHandlers, UnitActorObeysOnlyItsWorkerOncePerRound) {
  runtime_config cfg{runtime_options{}};
  caf::actor_system sys{cfg};
  caf::scoped_actor worker{sys}, coordinator{sys}, stranger{sys};
  const auto dir = fs::temp_directory_path() / ("glam-unit-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  // A dense model with one shard: one unit actor, no exchange with others.
  std::string toml = glam::testing::tiny_job_toml(1);
  toml.replace(toml.find("experts = 4"), 11, "experts = 0");
  unit_options o;
  o.worker_name = "w0";
  o.unit = 0;
  o.plan.tag = {"tiny-1", 0};
  o.plan.config_toml = toml;
  o.plan.units = {{"w0", "127.0.0.1", 1, {0}, {}}};
  o.plan.checkpoint_dir = dir.string();
  o.worker = caf::actor_cast<worker_actor>(worker);
  o.coordinator = caf::actor_cast<coordinator_actor>(coordinator);
  o.counters = std::make_shared<compute_counters>();
  auto unit = sys.spawn(unit_behavior, o);
  worker->send(unit, peers_atom::value, std::vector<worker_actor>{o.worker});
  const job_tag tag{"tiny-1", 0};
  auto reports = [&](std::chrono::milliseconds wait) {
    int n = 0;
    for (bool more = true; more;)
      coordinator->receive([&](const step_report& r) { n += r.error ? 100 : 1; }, [&](applied_atom, const job_tag&, const round_id&, const std::string&) { n += 1000; },
                           [&](const checkpoint_report&) { n += 10000; }, caf::after(wait) >> [&] { more = false; });
    return n;
  };
  // A stranger's orders and exits do nothing.
  stranger->send(unit, begin_atom::value, tag, round_id::training(0));
  caf::anon_send_exit(unit, caf::exit_reason::user_shutdown);
  stranger->send_exit(unit, caf::exit_reason::unhandled_exception);
  EXPECT_EQ(reports(300ms), 0);
  EXPECT_GE(o.counters->not_allowed.load(), 2);
  // The worker's: a round, reported once; a second begin of the same round is refused.
  worker->send(unit, begin_atom::value, tag, round_id::training(0));
  worker->send(unit, begin_atom::value, tag, round_id::training(0));
  EXPECT_EQ(reports(500ms), 1);
  // Its decision, applied once.
  worker->send(unit, finish_atom::value, tag, round_id::training(0), true, false);
  worker->send(unit, finish_atom::value, tag, round_id::training(0), true, false);
  EXPECT_EQ(reports(300ms), 1000);
  // A checkpoint, written once.
  worker->send(unit, checkpoint_atom::value, tag, std::int64_t{1});
  worker->send(unit, checkpoint_atom::value, tag, std::int64_t{1});
  EXPECT_EQ(reports(300ms), 10000);
  EXPECT_EQ(o.counters->wrong_phase.load(), 3);
  worker->send_exit(unit, caf::exit_reason::user_shutdown);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace glam
