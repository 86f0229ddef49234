// The actor backend (serve/actor_backend.hpp) on an embedded cluster of 1, 2 and 3 workers
// (the coordinator and worker actors of a real cluster, in this process): on a glam-tiny
// checkpoint trained on real text, every step's logits are bitwise the in-process
// reference's, for prefills, decode steps and batches of sequences joining and leaving;
// greedy and seeded decoding through the batch scheduler give the reference's tokens; and
// a worker killed between passes (its actor ended as a crash ends it) costs nothing: a lost
// expert is loaded again on a survivor and the pass runs again, a lost shard's sequences
// replay, and the tokens do not change. tests/integration/cluster_serve_test.cpp kills
// worker processes in the middle of a streamed completion.
#include <gtest/gtest.h>

#include <future>
#include <set>

#include <caf/all.hpp>

#include "coordinator/embedded_cluster.hpp"
#include "serve/actor_backend.hpp"
#include "serve/batch_scheduler.hpp"
#include "serve_testing.hpp"

namespace {

using namespace glam;
using glam::serve_testing::trained_glam_tiny;

inference_checkpoint tiny_checkpoint() { return find_checkpoint(trained_glam_tiny().checkpoint); }

// Runs the same step on both backends and checks the logits bit for bit.
void expect_same_step(inference_backend& reference, inference_backend& actors, const step_request& r,
                      const std::string& what) {
  const step_result a = reference.run_step(r);
  const step_result b = actors.run_step(r);
  ASSERT_TRUE(b.lost.empty()) << what;
  ASSERT_EQ(a.logits.shape, b.logits.shape) << what;
  EXPECT_TRUE(bitwise_equal(a.logits, b.logits)) << what << ": the logits differ";
}

std::vector<std::int32_t> tokens_of(std::initializer_list<int> xs) { return {xs.begin(), xs.end()}; }

// Decodes prompts through the batch scheduler (every prompt at once, continuous batching);
// `hook(token_count)` runs on the scheduler's thread after each token of the first prompt.
std::vector<std::vector<std::int32_t>> decode(inference_backend& backend,
                                              const std::vector<std::vector<std::int32_t>>& prompts,
                                              const generation_options& g,
                                              std::function<void(int)> hook = nullptr) {
  scheduler_options so;
  so.max_batch = 8;
  so.max_admitted = 8;
  batch_scheduler scheduler(backend, so);
  std::vector<std::promise<sequence_outcome>> ended(prompts.size());
  std::vector<sequence_job> jobs;
  auto count = std::make_shared<int>(0);
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    sequence_job j;
    j.prompt = prompts[i];
    j.options = g;
    j.on_token = [i, count, hook](std::int32_t) {
      if (i == 0 && hook) hook(++*count);
      return token_verdict::go_on;
    };
    j.on_finish = [&ended, i](const sequence_outcome& o) { ended[i].set_value(o); };
    jobs.push_back(std::move(j));
  }
  EXPECT_TRUE(scheduler.admit(std::move(jobs)).has_value());
  std::vector<std::vector<std::int32_t>> out;
  for (auto& e : ended) {
    auto f = e.get_future();
    EXPECT_EQ(f.wait_for(std::chrono::seconds(120)), std::future_status::ready);
    const sequence_outcome o = f.get();
    EXPECT_TRUE(o.error.empty()) << o.error;
    out.push_back(o.tokens);
  }
  return out;
}

const std::vector<std::vector<std::int32_t>> prompts = {tokens_of({5, 17, 300, 41, 9}), tokens_of({1200, 7}),
                                                        tokens_of({64, 64, 64, 2000, 3, 11, 900, 15, 16, 23})};

class ActorBackend : public ::testing::TestWithParam<int> {};

TEST_P(ActorBackend, GivesTheReferenceLogitsBitForBit) {
  const auto ck = tiny_checkpoint();
  auto reference = reference_backend::from_checkpoint(ck);
  embedded_cluster cluster(GetParam());
  actor_backend actors(cluster.system(), cluster.coordinator(), ck, "test");
  // Every unit placed, on the workers there are; with two or more, the shard's worker is
  // not the only one, and every worker hosts a unit.
  const auto& s = actors.session();
  ASSERT_EQ(s.units.size(), 1u + static_cast<std::size_t>(ck.cfg.model.experts));
  std::set<std::string> used(s.workers.begin(), s.workers.end());
  EXPECT_EQ(used.size(), static_cast<std::size_t>(GetParam())) << actors.describe();

  // A prefill; a second sequence joins with its prompt while the first decodes; a third
  // joins, the first leaves; decode steps of the rest.
  step_request r;
  r.open = {1};
  r.items = {{1, prompts[0]}};
  expect_same_step(*reference, actors, r, "prefill of sequence 1");
  r = {};
  r.open = {2};
  r.items = {{1, tokens_of({77})}, {2, prompts[1]}};
  expect_same_step(*reference, actors, r, "decode of 1 with the prefill of 2");
  r = {};
  r.close = {1};
  r.open = {3};
  r.items = {{2, tokens_of({4})}, {3, prompts[2]}};
  expect_same_step(*reference, actors, r, "1 leaves, 3 joins");
  for (int k = 0; k < 5; ++k) {
    r = {};
    r.items = {{2, tokens_of({100 + k})}, {3, tokens_of({200 + k})}};
    expect_same_step(*reference, actors, r, "decode step " + std::to_string(k));
  }
  r = {};
  r.close = {2, 3};
  expect_same_step(*reference, actors, r, "a step that only closes");
}

TEST_P(ActorBackend, DecodesTheReferenceTokens) {
  const auto ck = tiny_checkpoint();
  embedded_cluster cluster(GetParam());
  generation_options greedy;
  greedy.max_tokens = 20;
  greedy.sampling.temperature = 0;
  generation_options sampled = greedy;
  sampled.sampling.temperature = 0.9;
  sampled.sampling.top_p = 0.95;
  sampled.sampling.seed = 5;
  // A fresh backend (a new session) for each run: a stopped scheduler leaves its finished
  // sequences open.
  for (const auto& g : {greedy, sampled}) {
    auto reference = reference_backend::from_checkpoint(ck);
    actor_backend actors(cluster.system(), cluster.coordinator(), ck, "test");
    const auto expected = decode(*reference, prompts, g);
    EXPECT_EQ(decode(actors, prompts, g), expected) << "temperature " << g.sampling.temperature;
    EXPECT_EQ(expected[0].size(), 20u);
  }
}

INSTANTIATE_TEST_SUITE_P(Workers, ActorBackend, ::testing::Values(1, 2, 3),
                         [](const auto& info) { return std::to_string(info.param) + "_workers"; });

// A worker's actor killed mid-generation (between two passes), as a crash ends it: the
// coordinator sees it go down and places its units on the survivors from the checkpoint.
struct kill_case {
  const char* name;
  bool kill_shard;  // the shard's worker (it also hosts an expert), else an expert-only one
};

class ActorBackendFaults : public ::testing::TestWithParam<kill_case> {};

TEST_P(ActorBackendFaults, AWorkerKilledMidGenerationChangesNoToken) {
  const auto ck = tiny_checkpoint();
  auto reference = reference_backend::from_checkpoint(ck);
  generation_options g;
  g.max_tokens = 24;
  g.sampling.temperature = 0.8;
  g.sampling.seed = 9;
  const auto expected = decode(*reference, prompts, g);

  embedded_cluster cluster(3);
  actor_backend actors(cluster.system(), cluster.coordinator(), ck, "test");
  const auto& s = actors.session();
  std::string victim;
  for (std::size_t i = 0; i < s.units.size(); ++i)
    if ((s.units[i] == "shard0") == GetParam().kill_shard && (GetParam().kill_shard || s.workers[i] != s.workers[0]))
      victim = s.workers[i];
  ASSERT_FALSE(victim.empty()) << actors.describe();
  const int index = std::stoi(victim.substr(victim.find('-') + 1));
  const auto handle = cluster.worker_handles().at(static_cast<std::size_t>(index));
  const auto got = decode(actors, prompts, g, [&](int n) {
    if (n == 6) caf::anon_send_exit(handle, caf::exit_reason::kill);
  });
  EXPECT_EQ(got, expected);
  const auto& now = actors.refresh_session();
  for (const auto& w : now.workers) EXPECT_NE(w, victim) << actors.describe();
  if (GetParam().kill_shard) {
    EXPECT_EQ(actors.shards_lost(), 1) << "the shard's sequences should have replayed";
  } else {
    EXPECT_EQ(actors.shards_lost(), 0) << "an expert's loss costs no cache";
  }
  // The victim's units were placed again: a second generation.
  EXPECT_GT(*std::max_element(now.generations.begin(), now.generations.end()), 1);
}

INSTANTIATE_TEST_SUITE_P(Table, ActorBackendFaults,
                         ::testing::Values(kill_case{"ExpertWorker", false}, kill_case{"ShardWorker", true}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
