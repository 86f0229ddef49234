// The coordinator and worker actors driven by local messages (no sockets): registration
// checks, the handshake, submit/status/stop, heartbeats, and the front door's frame check.
#include <unistd.h>

#include <filesystem>

#include <caf/all.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "actors/fingerprint.hpp"
#include "actors/front_door.hpp"
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
  caf::actor coord;
  fixture() {
    fs::remove_all(dir);
    coordinator_options o;
    o.state_dir = dir;
    o.secret = secret;
    o.heartbeat_timeout = 400ms;
    o.tick = 50ms;
    coord = sys.spawn(coordinator_actor, o);
  }
  ~fixture() {
    caf::anon_send_exit(coord, caf::exit_reason::user_shutdown);
    fs::remove_all(dir);
  }
  template <class T, class... Ts>
  T ask(const caf::actor& dest, Ts&&... xs) {
    caf::scoped_actor self{sys};
    T out{};
    self->request(dest, 5s, std::forward<Ts>(xs)...)
        .receive([&](const T& x) { out = x; }, [&](const caf::error& e) { ADD_FAILURE() << sys.render(e); });
    return out;
  }
  nlohmann::json status() { return nlohmann::json::parse(ask<std::string>(coord, status_atom::value)); }
};

TEST(RuntimeHandlers, HelloIsRefusedWithTheMismatchedFieldOrChallenged) {
  fixture f;
  hello_msg h;
  h.role = "worker";
  h.name = "w";
  h.version = protocol_version + 7;
  auto c = f.ask<challenge_msg>(f.coord, hello_atom::value, h);
  EXPECT_FALSE(c.ok);
  EXPECT_NE(c.reason.find("protocol version"), std::string::npos);
  h.role = "client";
  h.version = protocol_version;
  h.client_nonce = "abc";
  c = f.ask<challenge_msg>(f.coord, hello_atom::value, h);
  ASSERT_TRUE(c.ok);
  EXPECT_EQ(c.server_proof, server_proof(secret, "abc"));  // the coordinator proves the secret too
  auto r = f.ask<result_msg>(f.coord, auth_atom::value, proof_msg{c.nonce, client_proof("wrong-secret-000000", c.nonce)});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.message.find("wrong cluster secret"), std::string::npos);
  // The nonce is used up: the right proof on the old nonce fails now.
  r = f.ask<result_msg>(f.coord, auth_atom::value, proof_msg{c.nonce, client_proof(secret, c.nonce)});
  EXPECT_FALSE(r.ok);
}

TEST(RuntimeHandlers, WorkerRegistersHeartbeatsHostsAndIsExpiredWhenSilent) {
  fixture f;
  worker_options wo;
  wo.name = "local-w";
  wo.secret = secret;
  wo.listen_host = "127.0.0.1";
  wo.heartbeat = 50ms;
  auto w = f.sys.spawn(worker_actor, wo);
  auto r = f.ask<result_msg>(w, register_atom::value, f.coord, std::uint16_t{9999});
  ASSERT_TRUE(r.ok) << r.message;
  auto s = f.status();
  ASSERT_EQ(s["workers"].size(), 1u);
  EXPECT_EQ(s["workers"][0]["name"], "local-w");
  EXPECT_EQ(s["workers"][0]["address"], "127.0.0.1:9999");
  // Submit: a malformed config names the key; a good one is placed on the worker.
  auto bad = f.ask<result_msg>(f.coord, submit_atom::value, std::string("[model]\nlayers = \"x\"\n"), std::string("bad.toml"));
  EXPECT_FALSE(bad.ok);
  EXPECT_NE(bad.message.find("bad.toml"), std::string::npos) << bad.message;
  auto ok = f.ask<result_msg>(f.coord, submit_atom::value, tiny_job, std::string("tiny.toml"));
  ASSERT_TRUE(ok.ok) << ok.message;
  std::this_thread::sleep_for(200ms);
  s = f.status();
  EXPECT_EQ(s["jobs"][0]["state"], "running");
  EXPECT_EQ(s["workers"][0]["units"].size(), 7u) << s.dump();  // 3 shards + 4 experts
  // A release of an older epoch is fenced and counted by the worker.
  auto stale = f.ask<result_msg>(w, release_atom::value, step_tag{ok.message, 0, -1});
  EXPECT_FALSE(stale.ok);
  EXPECT_EQ(f.ask<worker_stats>(w, ping_atom::value).dropped_stale_epoch, 1);
  // Stop, then the worker goes silent (killed): the coordinator expires it.
  auto st = f.ask<result_msg>(f.coord, stop_atom::value, ok.message);
  EXPECT_TRUE(st.ok) << st.message;
  caf::anon_send_exit(w, caf::exit_reason::kill);
  for (int i = 0; i < 50 && !f.status()["workers"].empty(); ++i) std::this_thread::sleep_for(50ms);
  EXPECT_TRUE(f.status()["workers"].empty());
}

TEST(RuntimeHandlers, FrontDoorHeaderCheck) {
  front_door_limits lim;
  unsigned char h[basp_header_size] = {};
  EXPECT_EQ(check_basp_header(h, lim), "");
  h[0] = 0x07;
  EXPECT_NE(check_basp_header(h, lim).find("operation"), std::string::npos);
  h[0] = 0x02;
  h[4] = 0x01;  // 16 MiB + ... > bound
  h[7] = 0x01;
  EXPECT_NE(check_basp_header(h, lim).find("exceeds the bound"), std::string::npos);
  h[4] = 0x00;
  h[5] = 0x40;  // 4 MiB: fine
  EXPECT_EQ(check_basp_header(h, lim), "");
}

}  // namespace
}  // namespace glam
