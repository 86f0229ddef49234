// The failure-injection suite (docs/fault-tolerance.md): real processes on loopback, faults
// at named points (`glam worker --fault-at PHASE:STEP:ACTION`, GLAM_TESTING=1), killed and
// stopped workers and coordinators, partitions, torn checkpoints, and workers that join and
// drain while the job runs. Every case checks that the job finishes without being submitted
// again, that no committed step is lost or repeated, and that every step's loss and the final
// parameters equal the single-process reference bit for bit.
#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <map>
#include <optional>

#include "coordinator/placement.hpp"
#include "tests/integration/cluster_harness.hpp"
#include "tests/integration/reference_run.hpp"
#include "tests/survivor_job.hpp"

namespace glam::test {
namespace {

// router_bias: testing.router_bias (most tokens to experts 0 and 1; 0: off).
config fault_job(double router_bias = 0) {
  config c = glam::testing::survivor_job("survivor");
  c.fault.keep_checkpoints = 4;
  c.testing.router_bias = router_bias;
  return c;
}

const reference_run& reference(double router_bias = 0) {
  static std::map<double, reference_run> runs;
  auto it = runs.find(router_bias);
  if (it == runs.end()) it = runs.emplace(router_bias, run_reference(fault_job(router_bias))).first;
  return it->second;
}

// GLAM_TESTING=1 in this process, and so in the coordinator and clients it starts, while a
// case's job carries a testing option (the workers have it already); restored after.
class glam_testing_env {
 public:
  explicit glam_testing_env(bool on) : on_(on) {
    if (!on_) return;
    if (const char* v = std::getenv("GLAM_TESTING")) saved_ = v;
    ::setenv("GLAM_TESTING", "1", 1);
  }
  ~glam_testing_env() {
    if (!on_) return;
    if (saved_) ::setenv("GLAM_TESTING", saved_->c_str(), 1);
    else ::unsetenv("GLAM_TESTING");
  }

 private:
  bool on_;
  std::optional<std::string> saved_;
};

// The coordinator paces the tiny job (a round every 200 ms, some 6 s in all) so that a case
// can act on it while it runs; a stalled round is retried after 4 s. Placements are a seeded
// draw, not the planner's (which follows the workers' measured rates): with seed 11 and
// three workers, w1 (the one with the fault) hosts a shard and experts, w0 and w2 the rest.
const std::vector<std::string> coordinator_args = {"--step-timeout-ms", "4000", "--min-round-ms", "200",
                                                   "--random-placement", "11"};

// One run of the job on a cluster of real processes, and what a case does to it meanwhile.
struct fault_run {
  cluster c;
  std::map<std::string, process*> workers;
  std::string job;
  int coordinator_port = 0;
  double router_bias = 0;  // the job's testing.router_bias

  explicit fault_run(const std::string& tag, std::vector<std::string> coordinator = coordinator_args)
      : c(tag, 1500, 0, coordinator) {
    coordinator_port = c.port;
  }

  process& start(const std::string& name, const std::string& fault = {}, std::vector<std::string> args = {}) {
    if (!fault.empty()) args.insert(args.end(), {"--fault-at", fault});
    auto& w = c.add_worker(name, {"GLAM_TESTING=1"}, args);
    EXPECT_GT(w.wait_port(), 0) << w.err();
    workers[name] = &w;
    return w;
  }
  std::string root() const { return c.dir + "/state/checkpoints/survivor"; }
  std::string metrics() const { return c.dir + "/state/jobs/" + job + "/metrics.jsonl"; }
  void submit(const std::function<void(config&)>& change = nullptr) {
    config cfg = fault_job(router_bias);
    if (change) change(cfg);
    write_file(c.dir + "/job.toml", to_toml(cfg), 0644);
    auto [rc, out] = c.client({"submit", "--coordinator", c.endpoint(), c.dir + "/job.toml"});
    ASSERT_EQ(rc, 0) << out;
    job = out.substr(0, out.find('\n'));
  }
  // Waits until the job has committed `step` steps (bounded).
  void wait_step(int step) {
    auto s = c.wait_status([&](const nlohmann::json& s) { return !s["jobs"].empty() && s["jobs"][0]["step"] >= step; }, 90s);
    ASSERT_GE(s["jobs"][0]["step"].get<int>(), step) << s.dump() << c.coordinator->err();
  }
  // Waits until `count` workers host units of the job (bounded).
  void wait_hosting(std::size_t count) {
    auto hosting = [count](const nlohmann::json& s) {
      std::size_t n = 0;
      for (const auto& w : s["workers"]) n += w["units"].empty() ? 0 : 1;
      return n == count;
    };
    auto s = c.wait_status(hosting, 60s);
    ASSERT_TRUE(hosting(s)) << s.dump();
  }
  // SIGKILL the coordinator and start it again on the same port and state directory.
  void restart_coordinator() {
    c.coordinator->kill(SIGKILL);
    c.coordinator->wait_exit(10s);
    std::vector<std::string> args{glam_bin, "coordinator", "--listen", "127.0.0.1:" + std::to_string(coordinator_port),
                                  "--state", c.dir + "/state", "--heartbeat-timeout-ms", "1500"};
    args.insert(args.end(), coordinator_args.begin(), coordinator_args.end());
    c.coordinator = std::make_unique<process>(args, c.dir, "coordinator-again", c.env);
    ASSERT_EQ(c.coordinator->wait_port(), coordinator_port) << c.coordinator->err();
  }
  void expect_finished_bitwise() {
    auto s = c.wait_status([](const nlohmann::json& s) { return !s["jobs"].empty() && s["jobs"][0]["state"] == "finished"; },
                           180s);
    ASSERT_EQ(s["jobs"][0]["state"], "finished") << s.dump() << "\n" << c.coordinator->err();
    ASSERT_EQ(s["jobs"].size(), 1u) << "the job was never submitted again: " << s.dump();
    EXPECT_EQ(expect_metrics_equal(metrics(), reference(router_bias)), fault_job().train.steps);
    expect_final_parameters_equal(root(), fault_job(router_bias), reference(router_bias));
  }
};

void truncate_newest(const fault_run& r) {
  auto m = latest_valid_checkpoint(r.root(), fault_job());
  ASSERT_TRUE(m.has_value());
  const auto file = checkpoint_dir_for(r.root(), m->step) + "/" + m->units.back().file;
  fs::resize_file(file, fs::file_size(file) - 7);
}

void flip_newest(const fault_run& r) {
  auto m = latest_valid_checkpoint(r.root(), fault_job());
  ASSERT_TRUE(m.has_value());
  const auto file = checkpoint_dir_for(r.root(), m->step) + "/" + m->units.front().file;
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(4096);
  char ch = 0;
  f.get(ch);
  f.seekp(4096);
  f.put(static_cast<char>(ch ^ 0x20));
}

struct fault_case {
  const char* name;
  std::string fault;                         // --fault-at of worker w1 (empty: none)
  int workers;                               // w0, w1, ... started before the job
  std::function<void(fault_run&)> during;    // what else happens while the job runs
  std::vector<std::string> events;           // event kinds the metrics must record
  // Load-aware placement: w1 runs its kernels this many times slower, and the job re-plans
  // from the measured load every 3 steps (a change of placement, not of the math).
  double slow_w1 = 1;
  // The router skewed by testing.router_bias, for the job and its reference alike.
  double router_bias = 0;
};

void rebalance_often(config& c) {
  c.placement.rebalance_every = 3;
  c.placement.window = 3;
  c.placement.min_gain = 0.05;
}

const fault_case fault_cases[] = {
    {"kill_in_forward", "forward:5:kill", 3, nullptr, {"recovery"}},
    {"kill_in_backward", "backward:5:kill", 3, nullptr, {"recovery"}},
    {"kill_in_dense_gradient_exchange", "exchange:5:kill", 3, nullptr, {"recovery"}},
    {"kill_in_apply", "apply:5:kill", 3, nullptr, {"recovery"}},
    {"kill_in_snapshot", "snapshot:5:kill", 3, nullptr, {"recovery"}},
    {"kill_in_checkpoint_write", "checkpoint:12:kill", 3, nullptr, {"recovery"}},
    {"kill_in_validation", "validation:0:kill", 3, nullptr, {"recovery"}},
    {"stop_past_the_timeout_then_continue", "forward:5:stop", 3,
     [](fault_run& r) {
       r.wait_step(9);  // recovered without it
       // Stopped past CAF's connection timeout (3 s) too: when it continues, the eviction
       // and the loss of its connection to the coordinator arrive together, and its first
       // registration attempt goes out on the connection that is gone.
       std::this_thread::sleep_for(4s);
       r.workers["w1"]->kill(SIGCONT);
       // Fenced: told it was evicted, it drops its units and registers again as new.
       auto s = r.c.wait_status([](const nlohmann::json& s) { return s["workers"].size() == 3; }, 30s);
       EXPECT_EQ(s["workers"].size(), 3u) << s.dump();
     },
     {"recovery"}},
    {"coordinator_killed_mid_step", "", 3,
     [](fault_run& r) {
       r.wait_step(7);
       r.restart_coordinator();
     },
     {}},
    {"coordinator_killed_mid_checkpoint", "checkpoint:12:stop", 3,
     [](fault_run& r) {
       // w1 stopped while it writes its files of checkpoint 12: the coordinator dies now.
       for (int i = 0; i < 600 && !fs::exists(r.root() + "/step-00000012"); ++i) std::this_thread::sleep_for(50ms);
       std::this_thread::sleep_for(300ms);
       r.restart_coordinator();
       r.workers["w1"]->kill(SIGCONT);
     },
     {}},
    {"two_workers_killed_at_once_rolls_back_to_disk", "", 3,
     [](fault_run& r) {
       r.wait_step(13);
       r.workers["w1"]->kill(SIGKILL);
       r.workers["w2"]->kill(SIGKILL);
     },
     {"recovery"}},
    {"truncated_checkpoint_under_rollback", "", 3,
     [](fault_run& r) {
       r.wait_step(13);
       truncate_newest(r);
       r.workers["w1"]->kill(SIGKILL);
       r.workers["w2"]->kill(SIGKILL);
     },
     {"recovery"}},
    {"bit_flipped_checkpoint_under_rollback", "", 3,
     [](fault_run& r) {
       r.wait_step(13);
       flip_newest(r);
       r.workers["w1"]->kill(SIGKILL);
       r.workers["w2"]->kill(SIGKILL);
     },
     {"recovery"}},
    {"killed_during_a_migration", "", 2,
     [](fault_run& r) {
       r.wait_step(4);
       r.start("w2", "migration:*:kill");  // joins, and dies as the units move to it
     },
     {"join", "recovery"}},
    {"killed_during_a_drain", "migration:*:kill", 3,
     [](fault_run& r) {
       r.wait_step(4);
       auto [rc, out] = r.c.client({"drain", "--coordinator", r.c.endpoint(), "w2"});
       EXPECT_EQ(rc, 0) << out;
       EXPECT_NE(out.find("drained"), std::string::npos) << out;
       EXPECT_EQ(r.workers["w2"]->wait_exit(30s), 0) << r.workers["w2"]->err();
     },
     {"drain", "recovery"}},
    {"cut_off_from_its_peers", "exchange:5:cut-peers", 3, nullptr, {"recovery"}},
    {"cut_off_from_the_coordinator", "forward:5:cut-coordinator", 3, nullptr, {"recovery"}},
    {"scaled_1_3_2_1_while_running", "", 1,
     [](fault_run& r) {
       r.wait_step(3);
       r.start("w1");
       r.start("w2");
       r.wait_hosting(3);
       auto [rc, out] = r.c.client({"drain", "--coordinator", r.c.endpoint(), "w2"});
       EXPECT_EQ(rc, 0) << out;
       r.wait_hosting(2);
       std::tie(rc, out) = r.c.client({"drain", "--coordinator", r.c.endpoint(), "w1"});
       EXPECT_EQ(rc, 0) << out;
       EXPECT_EQ(r.workers["w1"]->wait_exit(30s), 0);
       EXPECT_EQ(r.workers["w2"]->wait_exit(30s), 0);
     },
     {"join", "drain", "drain"}},
    {"rebalanced_every_few_steps", "", 3, nullptr, {"rebalance"}, 4},
    {"killed_during_a_rebalance", "migration:*:kill", 3, nullptr, {"rebalance", "recovery"}, 4},
    {"rebalanced_under_a_skewed_router", "", 3, nullptr, {"rebalance"}, 4, 4.0},
};

void PrintTo(const fault_case& c, std::ostream* os) { *os << c.name; }

class Fault : public ::testing::TestWithParam<fault_case> {};

TEST_P(Fault, TheJobFinishesBitwiseEqualToTheUndisturbedRun) {
  const auto& fc = GetParam();
  glam_testing_env testing(fc.router_bias != 0);
  if (fc.router_bias != 0) {
    ASSERT_NE(reference(fc.router_bias).loss, reference().loss) << "the skew must change the run it is checked against";
  }
  fault_run r(fc.name);
  r.router_bias = fc.router_bias;
  ASSERT_GT(r.coordinator_port, 0) << r.c.coordinator->err();
  for (int i = 0; i < fc.workers; ++i) {
    std::vector<std::string> slow;
    if (i == 1 && fc.slow_w1 != 1) slow = {"--slow-factor", std::to_string(fc.slow_w1)};
    r.start("w" + std::to_string(i), i == 1 ? fc.fault : "", slow);
  }
  r.submit(fc.slow_w1 != 1 ? rebalance_often : nullptr);
  if (fc.during) fc.during(r);
  r.expect_finished_bitwise();
  const auto events = metrics_events(r.metrics());
  std::size_t at = 0;
  for (const auto& kind : fc.events) {
    while (at < events.size() && events[at] != kind) ++at;
    EXPECT_LT(at, events.size()) << "no " << kind << " event in order in " << ::testing::PrintToString(events) << "\n"
                                 << slurp(r.metrics());
    ++at;
  }
  if (HasFailure()) {
    std::cerr << "--- coordinator\n" << r.c.coordinator->err();
    for (const auto& [name, w] : r.workers) std::cerr << "--- " << name << "\n" << w->err();
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, Fault, ::testing::ValuesIn(fault_cases),
                         [](const auto& info) { return std::string(info.param.name); });

// Each worker offers memory for a bit more than half the job's units (with their
// snapshots), so the job needs two; when one dies the survivor cannot hold everything:
// the job waits as pending with the reason, and goes on by itself when a worker joins.
TEST(FaultMemory, SurvivorsTooSmallWaitForAJoin) {
  const unit_costs u = unit_costs_of(fault_job());
  const auto all = fault_job().cluster.shards * u.shard_bytes + fault_job().model.experts * u.expert_bytes;
  const std::vector<std::string> limit = {"--memory-limit", std::to_string(all * 6 / 10)};
  std::vector<std::string> planner = {"--step-timeout-ms", "4000", "--min-round-ms", "200"};  // the planner places
  fault_run r("memory", planner);
  r.start("w0", "", limit);
  r.start("w1", "", limit);
  r.submit();
  r.wait_step(5);
  r.workers["w1"]->kill(SIGKILL);
  auto s = r.c.wait_status([](const nlohmann::json& s) { return s["jobs"][0]["state"] == "pending"; }, 30s);
  ASSERT_EQ(s["jobs"][0]["state"], "pending") << s.dump();
  EXPECT_NE(s["jobs"][0].dump().find("no worker has room"), std::string::npos) << s.dump();
  r.start("w2", "", limit);
  r.expect_finished_bitwise();
  const auto events = metrics_events(r.metrics());
  EXPECT_NE(std::find(events.begin(), events.end(), "recovery"), events.end()) << slurp(r.metrics());
}

}  // namespace
}  // namespace glam::test
