// Inference units and the reference generate:
// - decoding with the KV cache gives bitwise the logits of recomputing the whole sequence
//   at once, for every position, for relu and gated-GELU experts, dense and MoE blocks;
// - a sequence's logits are bitwise the same alone or in a batch with others of other
//   lengths (prefills and decode steps mixed), joining and leaving between passes;
// - a pass dropped midway and run again, and a sequence rebuilt by a replay, give the bits
//   of the undisturbed run;
// - the inference forward computes what the training forward computes (to rounding: the
//   attention sums differ in order), when training drops nothing;
// - seeded sampling is reproducible and follows the distribution; greedy is the argmax;
// - bad requests and bad checkpoints get clear errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <ostream>
#include <regex>
#include <string>
#include <vector>

#include "kernels/parallel.hpp"
#include "kernels/random.hpp"
#include "model/checkpoint.hpp"
#include "model/generate.hpp"
#include "model/inference.hpp"
#include "model/sampling.hpp"
#include "model/train_step.hpp"
#include "model_testing.hpp"

namespace glam {
namespace {

namespace fs = std::filesystem;

bool same_bits(const float* a, const float* b, index n) { return std::memcmp(a, b, std::size_t(n) * sizeof(float)) == 0; }

std::vector<std::int32_t> random_tokens(index n, index vocab, std::uint64_t seed) {
  random_stream rng(seed);
  std::vector<std::int32_t> t(static_cast<std::size_t>(n));
  for (auto& x : t) x = std::int32_t(rng.next_bits() % std::uint64_t(vocab));
  return t;
}

reference_inference make_model(const config& c) {
  std::vector<param_set> experts;
  for (index e = 0; e < c.model.experts; ++e) experts.push_back(init_expert_params(c.model, e, c.train.seed));
  return reference_inference(c, init_dense_params(c.model, c.train.seed), std::move(experts));
}

struct model_case {
  const char* name;
  index experts, moe_every, layers, seq_len;
  expert_activation activation;
};

inline std::ostream& operator<<(std::ostream& os, const model_case& c) { return os << c.name; }

config config_of(const model_case& m) {
  config c = testing::tiny_model_config();
  c.model.experts = m.experts;
  c.model.moe_every = m.moe_every;
  c.model.layers = m.layers;
  c.model.seq_len = m.seq_len;
  c.model.activation = m.activation;
  c.model.d_model = 16;
  c.model.d_ff = 24;
  return c;
}

class InferenceTest : public ::testing::TestWithParam<model_case> {};

// Bitwise: the whole sequence in one pass (logits of every position) against a prefill of
// a prefix and then one decode pass per token, for several prefix lengths.
TEST_P(InferenceTest, DecodeWithTheCacheEqualsRecomputingTheSequenceBitwise) {
  const config c = config_of(GetParam());
  const index T = c.model.seq_len, V = c.model.vocab_size;
  auto model = make_model(c);
  const auto tokens = random_tokens(T, V, 11);
  model.shard().open_sequence(0);
  const tensor whole = model.run_pass({{0, tokens}}, true);
  model.shard().close_sequence(0);
  ASSERT_EQ(whole.size(), T * V);
  for (index prefix : {index(1), index(3), T - 1, T}) {
    model.shard().open_sequence(1);
    const tensor first = model.run_pass({{1, std::vector<std::int32_t>(tokens.begin(), tokens.begin() + prefix)}});
    EXPECT_TRUE(same_bits(first.ptr(), whole.ptr() + (prefix - 1) * V, V)) << "prefill of " << prefix;
    for (index t = prefix; t < T; ++t) {
      const tensor step = model.run_pass({{1, {tokens[std::size_t(t)]}}});
      ASSERT_TRUE(same_bits(step.ptr(), whole.ptr() + t * V, V)) << "prefix " << prefix << ", position " << t;
    }
    EXPECT_EQ(model.shard().length(1), T);
    model.shard().close_sequence(1);
  }
}

// Continuous batching: three sequences join at different times, one leaves, prefills and
// decode steps share passes; every logit equals the sequence's run alone, bitwise.
TEST_P(InferenceTest, BatchedSequencesEqualEachAloneBitwise) {
  const config c = config_of(GetParam());
  const index V = c.model.vocab_size;
  auto model = make_model(c);
  const std::vector<std::vector<std::int32_t>> seqs = {random_tokens(9, V, 1), random_tokens(4, V, 2),
                                                       random_tokens(7, V, 3)};
  // Alone: prompt of 3 tokens, then one token per pass. logits[s][t] after feeding token t.
  std::vector<std::map<index, tensor>> alone(seqs.size());
  for (std::size_t s = 0; s < seqs.size(); ++s) {
    model.shard().open_sequence(100);
    const auto& q = seqs[s];
    tensor first = model.run_pass({{100, {q.begin(), q.begin() + 3}}});
    alone[s][2] = first;
    for (std::size_t t = 3; t < q.size(); ++t) alone[s][index(t)] = model.run_pass({{100, {q[t]}}});
    model.shard().close_sequence(100);
  }
  // Together: sequence 0 starts, 1 joins at pass 2, 2 joins at pass 3; each leaves when done.
  std::vector<std::size_t> fed(seqs.size(), 0);
  std::vector<bool> open(seqs.size(), false);
  for (int pass = 0; pass < 12; ++pass) {
    std::vector<pass_item> items;
    for (std::size_t s = 0; s < seqs.size(); ++s) {
      if (int(s) + (s > 0 ? 1 : 0) > pass) continue;  // joins later
      if (!open[s] && fed[s] == 0) {
        model.shard().open_sequence(sequence_id(s));
        open[s] = true;
      }
      if (!open[s]) continue;
      const auto& q = seqs[s];
      const std::size_t n = fed[s] == 0 ? 3 : 1;
      items.push_back({sequence_id(s), {q.begin() + fed[s], q.begin() + fed[s] + n}});
    }
    if (items.empty()) break;
    const tensor logits = model.run_pass(items);
    for (std::size_t i = 0; i < items.size(); ++i) {
      const std::size_t s = std::size_t(items[i].sequence);
      fed[s] += items[i].tokens.size();
      const tensor& want = alone[s].at(index(fed[s]) - 1);
      EXPECT_TRUE(same_bits(logits.ptr() + index(i) * V, want.ptr(), V)) << "sequence " << s << " at " << fed[s] - 1;
      if (fed[s] == seqs[s].size()) {
        model.shard().close_sequence(sequence_id(s));
        open[s] = false;
      }
    }
  }
  for (std::size_t s = 0; s < seqs.size(); ++s) EXPECT_EQ(fed[s], seqs[s].size()) << s;
  EXPECT_EQ(model.shard().open_sequences(), 0);
}

// A pass dropped after its first exchange, then run again; and the same sequence rebuilt
// on a fresh shard by prefilling its tokens (a replay after a failure): the bits of the
// undisturbed run.
TEST_P(InferenceTest, AbortedPassAndReplayGiveTheUndisturbedBits) {
  const config c = config_of(GetParam());
  const index V = c.model.vocab_size;
  auto model = make_model(c);
  const auto tokens = random_tokens(8, V, 5);
  model.shard().open_sequence(7);
  model.run_pass({{7, {tokens.begin(), tokens.begin() + 5}}});
  const tensor want = model.run_pass({{7, {tokens[5]}}});
  model.shard().close_sequence(7);

  model.shard().open_sequence(7);
  model.run_pass({{7, {tokens.begin(), tokens.begin() + 5}}});
  model.shard().begin_pass({{7, {tokens[5]}}});
  if (model.shard().forward_next()) {  // an exchange is out (a dense model has none)
    model.shard().abort_pass();
    EXPECT_EQ(model.shard().length(7), 5);
    EXPECT_TRUE(bitwise_equal(model.run_pass({{7, {tokens[5]}}}), want));
  }
  model.shard().close_sequence(7);

  auto fresh = make_model(c);
  fresh.shard().open_sequence(3);
  EXPECT_TRUE(bitwise_equal(fresh.run_pass({{3, {tokens.begin(), tokens.begin() + 6}}}), want));
}

// The inference forward against the training forward (eval mode) on one sequence, when
// the training capacity keeps every choice: the same cross-entropy to 1e-5 relative (the
// training attention sums with GEMMs, the cached one with fixed-order loops).
TEST_P(InferenceTest, AgreesWithTheTrainingForward) {
  config c = config_of(GetParam());
  c.cluster.shards = 1;
  c.train.batch_per_shard = 1;
  if (c.model.is_moe()) c.moe.capacity_factor = double(c.model.experts);  // C ≥ tokens: nothing dropped
  const index T = c.model.seq_len, V = c.model.vocab_size;
  const auto tokens = random_tokens(T + 1, V, 9);

  auto shards = make_shards(c);
  auto experts = make_experts(c);
  const index C = c.model.is_moe() ? expert_capacity(c) : 0, M = c.model.d_model;
  for (auto& e : experts) e.begin_step(0);
  shard_unit& sh = shards[0];
  sh.begin_step(0, tokens, false);
  while (auto ex = sh.forward_next()) {
    tensor out(ex->rows.shape);
    for (auto& e : experts) {
      tensor y = e.forward(ex->moe, 0, ex->rows.ptr() + e.expert() * C * M);
      std::copy(y.data.begin(), y.data.end(), out.data.begin() + e.expert() * C * M);
    }
    sh.forward_resume(out);
  }
  ASSERT_EQ(sh.loss().dropped, 0);

  auto model = make_model(c);
  model.shard().open_sequence(0);
  const tensor logits = model.run_pass({{0, {tokens.begin(), tokens.end() - 1}}}, true);
  double ce = 0;
  for (index t = 0; t < T; ++t) {
    const float* row = logits.ptr() + t * V;
    double mx = row[0], z = 0;
    for (index j = 0; j < V; ++j) mx = std::max(mx, double(row[j]));
    for (index j = 0; j < V; ++j) z += std::exp(double(row[j]) - mx);
    ce += mx + std::log(z) - double(row[tokens[std::size_t(t) + 1]]);
  }
  EXPECT_NEAR(ce, sh.loss().cross_entropy_sum, 1e-5 * std::abs(ce));
}

// One and two compute threads give the same logits.
TEST_P(InferenceTest, SameBitsForOneAndTwoThreads) {
  const config c = config_of(GetParam());
  const auto tokens = random_tokens(c.model.seq_len, c.model.vocab_size, 21);
  tensor got[2];
  for (int t = 1; t <= 2; ++t) {
    const int saved = compute_threads();
    set_compute_threads(t);
    auto model = make_model(c);
    model.shard().open_sequence(0);
    got[t - 1] = model.run_pass({{0, tokens}}, true);
    set_compute_threads(saved);
  }
  EXPECT_TRUE(bitwise_equal(got[0], got[1]));
}

INSTANTIATE_TEST_SUITE_P(
    Models, InferenceTest,
    ::testing::Values(model_case{"relu_experts", 4, 2, 2, 12, expert_activation::relu},
                      model_case{"gated_gelu_experts", 4, 2, 3, 12, expert_activation::gated_gelu},
                      model_case{"every_block_moe_8_experts", 8, 1, 2, 10, expert_activation::relu},
                      model_case{"dense", 0, 2, 2, 12, expert_activation::relu},
                      model_case{"long_sequence_log_buckets", 2, 2, 2, 140, expert_activation::relu}),
    [](const ::testing::TestParamInfo<model_case>& i) { return std::string(i.param.name); });

// ---------------------------------------------------------------------------------------
// Bad passes

TEST(InferenceErrors, PassesAreChecked) {
  const config c = config_of({"relu", 4, 2, 2, 6, expert_activation::relu});
  auto model = make_model(c);
  inference_shard& sh = model.shard();
  const auto message = [&](std::vector<pass_item> items) -> std::string {
    try {
      sh.begin_pass(std::move(items));
    } catch (const inference_error& e) {
      return e.what();
    }
    sh.abort_pass();
    return "";
  };
  sh.open_sequence(1);
  EXPECT_THROW(sh.open_sequence(1), inference_error);
  EXPECT_NE(message({{2, {1}}}).find("sequence 2 is not open"), std::string::npos);
  EXPECT_NE(message({{1, {1}}, {1, {2}}}).find("appears twice"), std::string::npos);
  EXPECT_NE(message({{1, {}}}).find("at least one token"), std::string::npos);
  EXPECT_NE(message({{1, {int(c.model.vocab_size)}}}).find("outside the vocabulary"), std::string::npos);
  EXPECT_NE(message({{1, {1, 2, 3, 4, 5, 6, 7}}}).find("more than the model's seq_len = 6"), std::string::npos);
  EXPECT_NE(message({}).find("at least one sequence"), std::string::npos);
  EXPECT_EQ(message({{1, {1, 2, 3, 4, 5, 6}}}), "");  // exactly seq_len fits
  EXPECT_EQ(sh.length(1), 0);
}

TEST(InferenceErrors, OpenSequencesAreBounded) {
  const config c = config_of({"relu", 4, 2, 2, 6, expert_activation::relu});
  inference_shard sh(c, init_dense_params(c.model, 1), 2);
  sh.open_sequence(1);
  sh.open_sequence(2);
  try {
    sh.open_sequence(3);
    FAIL() << "a third sequence opened";
  } catch (const inference_error& e) {
    EXPECT_NE(std::string(e.what()).find("2 sequences are open"), std::string::npos) << e.what();
  }
  sh.close_sequence(1);
  sh.open_sequence(3);
  EXPECT_EQ(sh.open_sequences(), 2);
}

// ---------------------------------------------------------------------------------------
// Sampling and generation

TEST(Sampling, GreedyIsTheArgmaxWithTiesToTheLowerId) {
  const std::vector<float> logits = {0.5f, 2.f, -1.f, 2.f};
  sampling_options o;
  o.temperature = 0;
  for (std::uint64_t d = 0; d < 5; ++d) EXPECT_EQ(sample_token(logits.data(), 4, o, d), 1);
  o.temperature = 1;
  o.top_p = 1e-9;  // the nucleus is the single most likely token
  for (std::uint64_t d = 0; d < 5; ++d) EXPECT_EQ(sample_token(logits.data(), 4, o, d), 1);
}

TEST(Sampling, SeededDrawsAreReproducibleAndFollowTheDistribution) {
  // p ∝ 1, 2, 3, 4 at temperature 1.
  const std::vector<float> logits = {0.f, float(std::log(2.0)), float(std::log(3.0)), float(std::log(4.0))};
  sampling_options o;
  o.seed = 42;
  const index draws = 20000;
  std::vector<index> count(4, 0);
  for (index d = 0; d < draws; ++d) {
    const std::int32_t t = sample_token(logits.data(), 4, o, std::uint64_t(d));
    EXPECT_EQ(t, sample_token(logits.data(), 4, o, std::uint64_t(d)));
    ++count[std::size_t(t)];
  }
  for (int j = 0; j < 4; ++j) EXPECT_NEAR(double(count[j]) / draws, (j + 1) / 10.0, 0.015) << j;
  // top_p = 0.6 keeps tokens 3 and 2 (mass .4 + .3 ≥ .6), renormalised to 4/7 and 3/7.
  o.top_p = 0.6;
  std::fill(count.begin(), count.end(), 0);
  for (index d = 0; d < draws; ++d) ++count[std::size_t(sample_token(logits.data(), 4, o, std::uint64_t(d)))];
  EXPECT_EQ(count[0] + count[1], 0);
  EXPECT_NEAR(double(count[3]) / draws, 4.0 / 7.0, 0.015);
  // Another seed draws another sequence.
  sampling_options other = o;
  other.seed = 43;
  other.top_p = 1;
  o.top_p = 1;
  index differ = 0;
  for (index d = 0; d < 100; ++d)
    differ += sample_token(logits.data(), 4, o, std::uint64_t(d)) != sample_token(logits.data(), 4, other, std::uint64_t(d));
  EXPECT_GT(differ, 20);
}

TEST(Sampling, BadOptionsAndLogitsAreRefused) {
  const std::vector<float> logits = {0.f, 1.f};
  for (double t : {-1.0, double(NAN), double(INFINITY)}) {
    sampling_options o;
    o.temperature = t;
    EXPECT_THROW(sample_token(logits.data(), 2, o, 0), inference_error) << t;
  }
  for (double p : {0.0, -0.5, 1.5, double(NAN)}) {
    sampling_options o;
    o.top_p = p;
    EXPECT_THROW(sample_token(logits.data(), 2, o, 0), inference_error) << p;
  }
  const std::vector<float> bad = {0.f, float(NAN)};
  EXPECT_THROW(sample_token(bad.data(), 2, sampling_options{}, 0), inference_error);
}

TEST(Generate, SeededGenerationIsReproducibleAndGreedyFollowsTheArgmax) {
  const config c = config_of({"relu", 4, 2, 2, 16, expert_activation::relu});
  auto model = make_model(c);
  const auto prompt = random_tokens(4, c.model.vocab_size, 3);
  generation_options o;
  o.max_tokens = 8;
  o.sampling.temperature = 0.9;
  o.sampling.top_p = 0.95;
  o.sampling.seed = 17;
  std::vector<std::int32_t> streamed;
  const auto a = generate(model, prompt, o, [&](std::int32_t t) { streamed.push_back(t); });
  const auto b = generate(model, prompt, o);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.tokens, streamed);
  EXPECT_EQ(a.tokens.size(), 8u);
  EXPECT_EQ(a.reason, finish_reason::length);

  // Greedy: each token is the argmax of the logits of recomputing the whole sequence.
  o.sampling.temperature = 0;
  const auto g = generate(model, prompt, o);
  std::vector<std::int32_t> all = prompt;
  all.insert(all.end(), g.tokens.begin(), g.tokens.end() - 1);
  model.shard().open_sequence(9);
  const tensor whole = model.run_pass({{9, all}}, true);
  const index V = c.model.vocab_size;
  for (std::size_t i = 0; i < g.tokens.size(); ++i) {
    const float* row = whole.ptr() + index(prompt.size() - 1 + i) * V;
    EXPECT_EQ(g.tokens[i], std::int32_t(std::max_element(row, row + V) - row)) << i;
  }
}

TEST(Generate, StopsAtTheStopTokenAndAtSeqLen) {
  const config c = config_of({"relu", 4, 2, 2, 6, expert_activation::relu});
  auto model = make_model(c);
  const auto prompt = random_tokens(4, c.model.vocab_size, 8);
  generation_options o;
  o.max_tokens = 100;
  o.sampling.temperature = 0;
  // seq_len 6, prompt 4: tokens 5 and 6 are fed, the third generated is never fed.
  const auto r = generate(model, prompt, o);
  EXPECT_EQ(r.tokens.size(), 3u);
  EXPECT_EQ(r.reason, finish_reason::length);
  // The second greedy token as the stop token: generation stops before it.
  o.stop_token = r.tokens[1];
  const auto s = generate(model, prompt, o);
  if (r.tokens[0] != r.tokens[1]) {
    EXPECT_EQ(s.tokens, std::vector<std::int32_t>{r.tokens[0]});
    EXPECT_EQ(s.reason, finish_reason::stop);
  }
  // A prompt of exactly seq_len still gives one token.
  EXPECT_EQ(generate(model, random_tokens(6, c.model.vocab_size, 2), o).tokens.size(), 1u);
  EXPECT_EQ(model.shard().open_sequences(), 0);
}

TEST(Generate, BadRequestsAreRefused) {
  const config c = config_of({"relu", 4, 2, 2, 6, expert_activation::relu});
  auto model = make_model(c);
  const auto message = [&](std::vector<std::int32_t> prompt, generation_options o) -> std::string {
    try {
      generate(model, prompt, o);
    } catch (const inference_error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(message({}, {}).find("the prompt is empty"), std::string::npos);
  EXPECT_NE(message(random_tokens(7, c.model.vocab_size, 1), {}).find("longer than the model's seq_len = 6"),
            std::string::npos);
  EXPECT_NE(message({5000}, {}).find("outside the vocabulary"), std::string::npos);
  generation_options zero;
  zero.max_tokens = 0;
  EXPECT_NE(message({1}, zero).find("max_tokens = 0"), std::string::npos);
  EXPECT_EQ(model.shard().open_sequences(), 0);
}

TEST(Generate, ReplayInputRebuildsTheCache) {
  const config c = config_of({"relu", 4, 2, 2, 16, expert_activation::relu});
  auto model = make_model(c);
  generation_options o;
  o.max_tokens = 5;
  o.sampling.seed = 4;
  generation_state st(random_tokens(3, c.model.vocab_size, 6), o, c.model);
  model.shard().open_sequence(1);
  while (!st.finished()) st.take(model.run_pass({{1, st.next_input()}}).ptr());
  model.shard().close_sequence(1);
  ASSERT_EQ(st.generated().size(), 5u);
  const auto replay = st.replay_input();
  EXPECT_EQ(replay.size(), 3u + 4u);
  // A fresh shard prefilled with the replay draws the last token again.
  auto fresh = make_model(c);
  fresh.shard().open_sequence(2);
  const tensor& logits = fresh.run_pass({{2, replay}});
  EXPECT_EQ(sample_token(logits.ptr(), c.model.vocab_size, o.sampling, 4), st.generated().back());
}

// ---------------------------------------------------------------------------------------
// Checkpoints

class InferenceCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = (fs::temp_directory_path() / ("glam-infer-" + std::to_string(::getpid()) + "-" +
                                          ::testing::UnitTest::GetInstance()->current_test_info()->name()))
                .string();
    fs::remove_all(root_);
  }
  void TearDown() override { fs::remove_all(root_); }
  std::string root_;
};

struct no_data : token_source {
  void train_batch(std::int64_t, index, std::int32_t*) const override {}
  void validation_batch(index, index, std::int32_t*) const override {}
};

TEST_F(InferenceCheckpoint, LoadsWhatTheTrainerSavedFromTheRootOrAStepDirectory) {
  config c = testing::tiny_model_config();
  c.data.synthetic = true;
  no_data data;
  reference_trainer t(c, data);
  save_checkpoint(t, root_, 3, 0);
  for (const std::string& dir :
       {root_, root_ + "/", checkpoint_dir_for(root_, 3), checkpoint_dir_for(root_, 3) + "/"}) {
    const inference_checkpoint ck = find_checkpoint(dir);
    EXPECT_EQ(ck.manifest.step, 3);
    EXPECT_EQ(model_config_hash(ck.cfg), model_config_hash(c));
    auto model = reference_inference::from_checkpoint(ck);
    EXPECT_TRUE(bitwise_equal(model.shard().params(), t.shards()[0].params())) << dir;
    for (std::size_t e = 0; e < t.experts().size(); ++e)
      EXPECT_TRUE(bitwise_equal(model.experts()[e].params(), t.experts()[e].params())) << dir << " expert " << e;
  }
  try {
    find_tokenizer_path(find_checkpoint(root_));
    FAIL() << "a synthetic job has no tokenizer";
  } catch (const inference_error& e) {
    EXPECT_NE(std::string(e.what()).find("synthetic"), std::string::npos) << e.what();
  }
}

TEST_F(InferenceCheckpoint, MissingAndForeignCheckpointsAreClearErrors) {
  const auto message = [&](const std::string& dir, const std::string& config_path = "") -> std::string {
    try {
      find_checkpoint(dir, config_path);
    } catch (const std::exception& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(message(root_ + "/nowhere").find("does not exist"), std::string::npos);
  fs::create_directories(root_);
  EXPECT_NE(message(root_).find("no valid checkpoint"), std::string::npos);

  config c = testing::tiny_model_config();
  c.data.synthetic = true;
  no_data data;
  reference_trainer t(c, data);
  checkpoint_manifest m = save_checkpoint(t, root_, 1, 0);
  // A manifest without the job's config (an older writer): --config is the way out.
  m.job_config.clear();
  write_manifest(root_, m, 0);
  EXPECT_NE(message(root_).find("--config"), std::string::npos) << message(root_);
  // A config of another model is refused.
  config other = c;
  other.model.d_ff += 4;
  const std::string path = root_ + "/other.toml";
  std::ofstream(path) << to_toml(other);
  EXPECT_NE(message(root_, path).find("belongs to another model"), std::string::npos) << message(root_, path);
  const std::string same = root_ + "/same.toml";
  std::ofstream(same) << to_toml(c);
  EXPECT_EQ(message(root_, same), "");
}

}  // namespace
}  // namespace glam
