// Real daemons over loopback: registration, the secret, status, stop, SIGTERM, a killed
// and a stopped worker, and malformed job files.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cluster_harness.hpp"

namespace glam::test {
namespace {



TEST(ClusterDaemons, WorkersRegisterByNameAndSigtermExitsCleanly) {
  cluster c("register");
  ASSERT_GT(c.port, 0) << c.coordinator->err();
  // The coordinator created its secret, mode 0600, in the state directory.
  struct stat st {};
  ASSERT_EQ(::stat((c.dir + "/state/secret").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto& a = c.add_worker("alpha", {}, {"--coordinator-timeout", "2"});
  auto& b = c.add_worker("beta");
  ASSERT_GT(a.wait_port(), 0) << a.err();
  ASSERT_GT(b.wait_port(), 0) << b.err();
  auto s = c.wait_status([](const nlohmann::json& s) { return s["workers"].size() == 2; });
  ASSERT_EQ(s["workers"].size(), 2u) << s.dump();
  EXPECT_EQ(s["workers"][0]["name"], "alpha");
  EXPECT_EQ(s["workers"][1]["name"], "beta");
  EXPECT_GT(s["workers"][0]["memory_bytes"].get<std::int64_t>(), 0);
  // Each worker measured its sgemm rate (GFLOP/s) and reports it; placement weighs by it.
  EXPECT_GT(s["workers"][0]["gflops"].get<double>(), 1.0) << s.dump();
  // The human form names the workers too.
  auto [rc, text] = c.client({"status", "--coordinator", c.endpoint()});
  EXPECT_EQ(rc, 0) << text;
  EXPECT_NE(text.find("alpha"), std::string::npos);
  // A worker leaves on SIGTERM and exits 0; the coordinator sees it go.
  b.kill(SIGTERM);
  EXPECT_EQ(b.wait_exit(10s), 0) << b.err();
  s = c.wait_status([](const nlohmann::json& s) { return s["workers"].size() == 1; });
  EXPECT_EQ(s["workers"].size(), 1u) << s.dump();
  c.coordinator->kill(SIGTERM);
  EXPECT_EQ(c.coordinator->wait_exit(15s), 0) << c.coordinator->err();
  // Without its coordinator a worker looks for it again (a restart) for --coordinator-timeout
  // seconds, then exits 1 with the reason; it does not hang.
  EXPECT_EQ(a.wait_exit(15s), 1) << a.err();
  EXPECT_NE(a.err().find("lost the coordinator"), std::string::npos) << a.err();
  EXPECT_NE(a.err().find("did not come back within 2 s"), std::string::npos) << a.err();
}

TEST(ClusterDaemons, WrongOrMissingSecretIsRefusedOnBothSides) {
  cluster c("secret");
  ASSERT_GT(c.port, 0);
  write_file(c.dir + "/wrong", "not-the-cluster-secret-0123456789\n");
  auto& w = c.add_worker("intruder", {}, {"--secret-file", c.dir + "/wrong"});
  EXPECT_EQ(w.wait_exit(20s), 1);
  EXPECT_NE(w.err().find("secret"), std::string::npos) << w.err();
  auto [rc, out] = c.client({"status", "--coordinator", c.endpoint(), "--secret-file", c.dir + "/wrong"});
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("secret"), std::string::npos) << out;
  auto [rc2, out2] = c.client({"submit", "--coordinator", c.endpoint(), "--secret-file", c.dir + "/missing",
                               c.dir + "/job.toml"});
  EXPECT_NE(rc2, 0);
  EXPECT_NE(c.coordinator->err().find("failed to prove the cluster secret"), std::string::npos)
      << c.coordinator->err();
  EXPECT_TRUE(c.status()["workers"].empty());
}

TEST(ClusterDaemons, MismatchedBuildIsRefusedWithTheField) {
  cluster c("fingerprint");
  auto& w = c.add_worker("odd", {"GLAM_BUILD_ID_OVERRIDE=some-other-build"});
  EXPECT_EQ(w.wait_exit(20s), 1);
  EXPECT_NE(w.err().find("build id 'some-other-build'"), std::string::npos) << w.err();
  EXPECT_NE(c.coordinator->err().find("build id"), std::string::npos);
}

TEST(ClusterDaemons, MalformedJobFilesGetTheParsersMessage) {
  cluster c("badjob");
  std::string bad = tiny_job;
  bad.replace(bad.find("layers = 2"), 10, "layers = -3");
  write_file(c.dir + "/bad.toml", bad, 0644);
  auto [rc, out] = c.client({"submit", "--coordinator", c.endpoint(), c.dir + "/bad.toml"});
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("layers"), std::string::npos) << out;
  write_file(c.dir + "/garbage.toml", "this is [not toml\n", 0644);
  std::tie(rc, out) = c.client({"submit", "--coordinator", c.endpoint(), c.dir + "/garbage.toml"});
  EXPECT_NE(rc, 0);
  std::tie(rc, out) = c.client({"submit", "--coordinator", c.endpoint(), c.dir + "/absent.toml"});
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("absent.toml"), std::string::npos) << out;
}

TEST(ClusterDaemons, JobIsPlacedStoppedAndResubmitted) {
  cluster c("stop");
  c.add_worker("w0");
  c.add_worker("w1");
  ASSERT_EQ(c.wait_status([](const nlohmann::json& s) { return s["workers"].size() == 2; })["workers"].size(), 2u);
  write_file(c.dir + "/job.toml", tiny_job, 0644);
  auto [rc, id] = c.client({"submit", "--coordinator", c.endpoint(), c.dir + "/job.toml"});
  ASSERT_EQ(rc, 0) << id;
  id = id.substr(0, id.find('\n'));
  EXPECT_EQ(id, "tiny-1");
  auto s = c.wait_status([](const nlohmann::json& s) {
    return s["jobs"].size() == 1 && s["jobs"][0]["state"] == "running" && !s["workers"][0]["units"].empty();
  });
  ASSERT_EQ(s["jobs"][0]["state"], "running") << s.dump();
  // 2 shards and 4 experts, every one hosted once across the two workers.
  std::size_t units = 0;
  for (const auto& w : s["workers"]) units += w["units"].size();
  EXPECT_EQ(units, 6u) << s.dump();
  // The workers connected to each other directly, each proving the secret to the other.
  s = c.wait_status([](const nlohmann::json& s) {
    return s["workers"][0]["peers"] == 1 && s["workers"][1]["peers"] == 1;
  });
  EXPECT_EQ(s["workers"][0]["peers"], 1) << s.dump();
  EXPECT_EQ(s["workers"][1]["peers"], 1) << s.dump();
  // A second job is refused while one is active, with the reason.
  auto [rc2, busy] = c.client({"submit", "--coordinator", c.endpoint(), c.dir + "/job.toml"});
  EXPECT_NE(rc2, 0);
  EXPECT_NE(busy.find("stop it first"), std::string::npos) << busy;
  auto [rc3, stopped] = c.client({"stop", "--coordinator", c.endpoint(), id});
  EXPECT_EQ(rc3, 0) << stopped;
  s = c.status();
  EXPECT_EQ(s["jobs"][0]["state"], "stopped");
  auto [rc4, unknown] = c.client({"stop", "--coordinator", c.endpoint(), "nope-9"});
  EXPECT_NE(rc4, 0);
  EXPECT_NE(unknown.find("no job 'nope-9'"), std::string::npos);
  auto [rc5, id2] = c.client({"submit", "--coordinator", c.endpoint(), c.dir + "/job.toml"});
  EXPECT_EQ(rc5, 0) << id2;
  EXPECT_TRUE(fs::exists(c.dir + "/state/jobs/tiny-1/job.toml"));
  EXPECT_TRUE(fs::exists(c.dir + "/state/jobs.json"));
}

// docs/fault-tolerance.md: a lost worker is logged with its name and the step, and the job
// recovers onto the survivor inside itself, in a new epoch (the fault suite checks the bits).
TEST(ClusterDaemons, KilledWorkerIsRecoveredFromNamingTheWorker) {
  cluster c("killed");
  auto& w0 = c.add_worker("w0");
  auto& w1 = c.add_worker("w1");
  ASSERT_GT(w0.wait_port(), 0);
  ASSERT_GT(w1.wait_port(), 0);
  write_file(c.dir + "/job.toml", tiny_job, 0644);
  process waiter({glam_bin, "submit", "--coordinator", c.endpoint(), c.dir + "/job.toml", "--wait"}, c.dir,
                 "waiter", c.env);
  ASSERT_FALSE(waiter.wait_stdout("tiny-", 20s).empty()) << waiter.err();
  auto s = c.wait_status([](const nlohmann::json& s) { return s["jobs"].size() == 1 && s["jobs"][0]["step"] > 2; });
  const auto epoch = s["coordinator"]["epoch"].get<int>();
  w1.kill(SIGKILL);
  // The survivor hosts every unit, in a newer epoch, and the job goes on.
  s = c.wait_status([](const nlohmann::json& s) {
    return s["workers"].size() == 1 && s["workers"][0]["units"].size() == 6 && s["jobs"][0]["activity"] == "computing";
  }, 20s);
  ASSERT_EQ(s["workers"].size(), 1u) << s.dump();
  EXPECT_EQ(s["workers"][0]["units"].size(), 6u) << s.dump();  // 2 shards, 4 experts
  EXPECT_GT(s["coordinator"]["epoch"].get<int>(), epoch);
  const auto step = s["jobs"][0]["step"].get<int>();
  s = c.wait_status([step](const nlohmann::json& s) { return s["jobs"][0]["step"] > step + 2; }, 20s);
  EXPECT_EQ(s["jobs"][0]["state"], "running") << s.dump();
  EXPECT_GT(s["jobs"][0]["step"].get<int>(), step + 2) << s.dump();
  EXPECT_NE(c.coordinator->err().find("worker w1"), std::string::npos) << c.coordinator->err();
  EXPECT_NE(c.coordinator->err().find("recovering"), std::string::npos) << c.coordinator->err();
  EXPECT_FALSE(waiter.exited()) << waiter.err();
  auto [rc, out] = c.client({"stop", "--coordinator", c.endpoint(), "tiny-1"});
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(waiter.wait_exit(20s), 1) << waiter.err();
}

TEST(ClusterDaemons, StoppedWorkerIsDeclaredDeadByHeartbeatTimeout) {
  cluster c("sigstop", 1500);
  auto& w0 = c.add_worker("w0");
  auto& w1 = c.add_worker("w1");
  ASSERT_GT(w0.wait_port(), 0);
  ASSERT_GT(w1.wait_port(), 0);
  write_file(c.dir + "/job.toml", tiny_job, 0644);
  auto [rc, id] = c.client({"submit", "--coordinator", c.endpoint(), c.dir + "/job.toml"});
  ASSERT_EQ(rc, 0) << id;
  c.wait_status([](const nlohmann::json& s) { return s["jobs"].size() == 1 && s["jobs"][0]["state"] == "running"; });
  w0.kill(SIGSTOP);
  // Declared dead: the job recovers onto w1 alone.
  auto s = c.wait_status([](const nlohmann::json& s) { return s["workers"].size() == 1; }, 20s);
  ASSERT_EQ(s["workers"].size(), 1u) << s.dump();
  EXPECT_NE(c.coordinator->err().find("worker w0"), std::string::npos) << c.coordinator->err();
  EXPECT_NE(c.coordinator->err().find("stopped answering"), std::string::npos) << c.coordinator->err();
  w0.kill(SIGCONT);
  // Continued, it hears it was evicted and registers again as a new member; it never hangs.
  s = c.wait_status([](const nlohmann::json& s) { return s["workers"].size() == 2; }, 20s);
  EXPECT_EQ(s["workers"].size(), 2u) << s.dump() << w0.err();
  EXPECT_NE(w0.err().find("evicted by the coordinator"), std::string::npos) << w0.err();
  EXPECT_FALSE(w0.exited()) << w0.err();
}


TEST(ClusterDaemons, RestartedCoordinatorReloadsJobsAndEpoch) {
  cluster c("restart");
  auto& w = c.add_worker("w0");
  ASSERT_GT(w.wait_port(), 0);
  write_file(c.dir + "/job.toml", std::string(tiny_job) + "[fault]\ncheckpoint_every = 5\n", 0644);
  auto [rc, id] = c.client({"submit", "--coordinator", c.endpoint(), c.dir + "/job.toml"});
  ASSERT_EQ(rc, 0) << id;
  c.wait_status([](const nlohmann::json& s) { return s["jobs"].size() == 1 && s["jobs"][0]["state"] == "running"; });
  // SIGTERM once the job has a checkpoint: the step in flight is aborted, the job is kept.
  const auto first = c.dir + "/state/checkpoints/tiny/step-00000005/manifest.capnp";
  for (int i = 0; i < 3000 && !fs::exists(first); ++i) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(fs::exists(first)) << c.coordinator->err();
  c.coordinator->kill(SIGTERM);
  ASSERT_EQ(c.coordinator->wait_exit(15s), 0) << c.coordinator->err();
  // Same state directory, same secret: the job is back, pending, under a newer epoch.
  c.coordinator = std::make_unique<process>(
      std::vector<std::string>{glam_bin, "coordinator", "--listen", "127.0.0.1:0", "--state", c.dir + "/state"},
      c.dir, "coordinator2", c.env);
  c.port = c.coordinator->wait_port();
  ASSERT_GT(c.port, 0) << c.coordinator->err();
  auto s = c.status();
  ASSERT_EQ(s["jobs"].size(), 1u) << s.dump();
  EXPECT_EQ(s["jobs"][0]["id"], "tiny-1");
  EXPECT_EQ(s["jobs"][0]["state"], "pending");
  EXPECT_GE(s["coordinator"]["epoch"].get<int>(), 1);
  // The old worker finds the coordinator again (it is on another port now: a worker looks
  // on the address it was given, so it is started again here, under the same name) and
  // new workers join: the job waits until they settle instead of starting on the first one.
  w.kill(SIGKILL);
  w.wait_exit(10s);
  auto& w1 = c.add_worker("w1");
  auto& w2 = c.add_worker("w2");
  ASSERT_GT(w1.wait_port(), 0) << w1.err();
  ASSERT_GT(w2.wait_port(), 0) << w2.err();
  s = c.wait_status([](const nlohmann::json& s) { return s["jobs"][0]["state"] == "running"; });
  EXPECT_EQ(s["jobs"][0]["state"], "running") << s.dump();
  ASSERT_EQ(s["workers"].size(), 2u) << s.dump();
  for (const auto& w : s["workers"]) EXPECT_FALSE(w["units"].empty()) << "an idle worker: " << s.dump();
  // It goes on from its newest checkpoint, not from the start.
  EXPECT_NE(c.coordinator->err().find("from the checkpoint of step "), std::string::npos) << c.coordinator->err();
}

}  // namespace
}  // namespace glam::test
