// `glam plan` figures: the paper's table (docs/model.md, "The paper's table") row by row, counted the way
// each row counts the embedding; closed forms for the counts and FLOPs; memory per unit
// and the even placement.
#include <gtest/gtest.h>

#include <cmath>
#include <ostream>
#include <string>

#include "configs/config.hpp"
#include "configs/plan.hpp"

namespace {

using glam::config;
using glam::plan_figures;

const std::string k_configs_dir = std::string(GLAM_SOURCE_DIR) + "/configs";

config load(const std::string& stem) { return glam::load_config(k_configs_dir + "/" + stem + ".toml"); }

// How a paper row counts the embedding (docs/plan.md, "Against the paper's table": the
// paper does not count every row the same way).
enum class embedding_count {
  glam,            // as glam counts: the tied V×M embedding once, in both figures
  none,            // left out
  about_17m,       // the 0.1B rows: an embedding of about 17M instead of 256K × 768
};

struct paper_row {
  const char* stem;
  double total;                // paper's figure; 0 when the table gives none
  embedding_count total_count;
  double activated;
  embedding_count activated_count;
};

double as_counted(std::int64_t with_embedding, std::int64_t embedding, embedding_count how) {
  switch (how) {
    case embedding_count::glam: return static_cast<double>(with_embedding);
    case embedding_count::none: return static_cast<double>(with_embedding - embedding);
    case embedding_count::about_17m: return static_cast<double>(with_embedding - embedding) + 17e6;
  }
  return 0;
}

void PrintTo(const paper_row& row, std::ostream* os) { *os << row.stem; }

class PaperTable : public ::testing::TestWithParam<paper_row> {};

TEST_P(PaperTable, WithinFourPercent) {
  const paper_row& row = GetParam();
  const plan_figures p = glam::make_plan(load(row.stem), 1);
  const double total = as_counted(p.params_total, p.params_embedding, row.total_count);
  const double activated = as_counted(p.params_activated, p.params_embedding, row.activated_count);
  EXPECT_NEAR(total / row.total, 1.0, 0.04) << row.stem << " total " << total;
  EXPECT_NEAR(activated / row.activated, 1.0, 0.04) << row.stem << " activated " << activated;
}

const paper_row k_paper_rows[] = {
    {"glam-0.1b-dense", 130e6, embedding_count::about_17m, 130e6, embedding_count::about_17m},
    {"glam-0.1b-64e", 1.9e9, embedding_count::about_17m, 145e6, embedding_count::about_17m},
    {"glam-1.7b-64e", 27e9, embedding_count::glam, 1.879e9, embedding_count::none},
    {"glam-8b-64e", 143e9, embedding_count::glam, 9.8e9, embedding_count::none},
    {"glam-64b-64e", 1.2e12, embedding_count::glam, 96.6e9, embedding_count::glam},
    // The dense rows have no figure in the paper's table but their names; 137B matches
    // its name without the embedding.
    {"glam-137b-dense", 137e9, embedding_count::none, 137e9, embedding_count::none},
};

INSTANTIATE_TEST_SUITE_P(Rows, PaperTable, ::testing::ValuesIn(k_paper_rows));

// The counting rules of docs/plan.md, written out in closed form for a model whose MoE
// blocks are every moe_every-th one.
struct closed_form {
  std::int64_t total, activated, matrix_activated;
};

closed_form count_by_hand(const config& c) {
  const auto& m = c.model;
  const std::int64_t V = m.vocab_size, L = m.layers, M = m.d_model, H = m.d_ff;
  const std::int64_t A = m.heads * m.d_head, E = m.experts;
  const std::int64_t k = m.activation == glam::expert_activation::relu ? 2 : 3;
  const std::int64_t moe = m.moe_layers(), dense = L - moe;
  const std::int64_t shared = V * M + M + L * (4 * M * A + 2 * M + 32 * m.heads) +
                              dense * 3 * M * H + moe * M * E;
  closed_form f;
  f.total = shared + moe * E * k * M * H;
  f.activated = shared + moe * 2 * k * M * H;
  f.matrix_activated = V * M + L * 4 * M * A + dense * 3 * M * H + moe * (M * E + 2 * k * M * H);
  return f;
}

TEST(Plan, CountsFollowTheStatedRulesForEveryShippedConfig) {
  for (const char* stem :
       {"glam-0.1b-dense", "glam-0.1b-64e", "glam-1.7b-dense", "glam-1.7b-64e", "glam-8b-dense",
        "glam-8b-64e", "glam-137b-dense", "glam-64b-64e", "glam-tiny", "glam-small"}) {
    SCOPED_TRACE(stem);
    const config c = load(stem);
    const plan_figures p = glam::make_plan(c, 1);
    const closed_form f = count_by_hand(c);
    EXPECT_EQ(p.params_total, f.total);
    EXPECT_EQ(p.params_activated, f.activated);
    EXPECT_EQ(p.params_embedding, c.model.vocab_size * c.model.d_model);
    EXPECT_EQ(p.matrix_params_activated, f.matrix_activated);
    EXPECT_EQ(p.params_total, p.params_dense + c.model.experts * p.params_per_expert);
    const std::int64_t attention = 6 * c.model.layers * c.model.seq_len * c.model.heads *
                                   c.model.d_head;
    EXPECT_EQ(p.flops_per_token_train, 6 * f.matrix_activated + attention);
    EXPECT_EQ(3 * p.flops_per_token_infer, p.flops_per_token_train);
    if (!c.model.is_moe()) {
      EXPECT_EQ(p.params_activated, p.params_total);
      EXPECT_EQ(p.params_per_expert, 0);
      EXPECT_EQ(p.expert_unit.total(), 0);
    }
  }
}

TEST(Plan, TinyFiguresByHand) {
  // glam-tiny: V 2048, L 2, M 128, H 512, A 4·32 = 128, E 4 (block 0 MoE, relu), T 64.
  const plan_figures p = glam::make_plan(load("glam-tiny"), 1);
  const std::int64_t embedding = 2048 * 128;                     // 262144
  const std::int64_t attention = 4 * 128 * 128;                  // 65536 per block
  const std::int64_t block_small = 2 * 128 + 32 * 4;             // norms + relative bias
  const std::int64_t expert = 2 * 128 * 512;                     // 131072
  const std::int64_t dense_ffn = 3 * 128 * 512;                  // 196608
  const std::int64_t gate = 128 * 4;
  EXPECT_EQ(p.params_embedding, embedding);
  EXPECT_EQ(p.params_dense, embedding + 128 + 2 * (attention + block_small) + gate + dense_ffn);
  EXPECT_EQ(p.params_per_expert, expert);
  EXPECT_EQ(p.params_total, p.params_dense + 4 * expert);
  EXPECT_EQ(p.params_activated, p.params_dense + 2 * expert);
  const std::int64_t n = embedding + 2 * attention + gate + 2 * expert + dense_ffn;
  EXPECT_EQ(p.matrix_params_activated, n);
  EXPECT_EQ(p.flops_per_token_train, 6 * n + 6 * 2 * 64 * 128);
  EXPECT_EQ(p.flops_per_token_infer, 2 * n + 2 * 2 * 64 * 128);
  EXPECT_EQ(p.tokens_per_shard, 8 * 64);
  EXPECT_EQ(p.tokens_per_step, 2 * 8 * 64);
  EXPECT_EQ(p.flops_per_step_train, 1024.0 * static_cast<double>(p.flops_per_token_train));

  // Capacity per group of 512 tokens, cf 2, 4 experts: 256 rows.
  EXPECT_EQ(p.expert_capacity, 256);
  // An expert unit: W1, W2 of the one MoE block; factored Adafactor (both dims >= 128);
  // activations: 2 shards x 256 rows x (input 128 + pre-activation 512).
  EXPECT_EQ(p.expert_unit.params, 4.0 * expert);
  EXPECT_EQ(p.expert_unit.gradients, 4.0 * expert);
  EXPECT_EQ(p.expert_unit.optimizer, 4.0 * 2 * (128 + 512));
  EXPECT_EQ(p.expert_unit.activations, 4.0 * 2 * 256 * (128 + 512));
  // An attention shard's Adafactor state: embedding factored (2048 + 128), final norm 128;
  // per block 4 factored 128x128 attention matrices, 2 norms, the 32x4 bias table in full;
  // the 128x4 gate in full; the dense FFN's 3 factored 128x512 matrices.
  const std::int64_t shard_state = (2048 + 128) + 128 + 2 * (4 * 256 + 2 * 128 + 32 * 4) +
                                   128 * 4 + 3 * (128 + 512);
  EXPECT_EQ(p.shard_unit.optimizer, 4.0 * shard_state);
  EXPECT_EQ(p.shard_unit.params, 4.0 * p.params_dense);
  // Activations, per token: final norm 2·128 + logits 2048; attention per block
  // 2·128 + 4·128 + 4 heads·64; MoE block 2·128 + 4; dense block 2·128 + 3·512;
  // plus per group the MoE block's dispatch and reply buffers 2·4·256·128.
  const std::int64_t per_token = (2 * 128 + 2048) + 2 * (2 * 128 + 4 * 128 + 4 * 64) +
                                 (2 * 128 + 4) + (2 * 128 + 3 * 512);
  EXPECT_EQ(p.shard_unit.activations, 4.0 * (512.0 * per_token + 2 * 4 * 256 * 128));
}

TEST(Plan, GatedExpertsHaveThreeMatricesAndSmallMatricesAreNotFactored) {
  config c = load("glam-tiny");
  c.model.activation = glam::expert_activation::gated_gelu;
  c.model.d_model = 64;  // below Adafactor's factoring threshold
  c.model.heads = 2;
  const plan_figures p = glam::make_plan(c, 1);
  EXPECT_EQ(p.params_per_expert, 3 * 64 * 512);
  EXPECT_EQ(p.expert_unit.optimizer, 4.0 * 3 * 64 * 512);  // full second moments
  EXPECT_EQ(p.expert_unit.activations, 4.0 * 2 * 256 * (64 + 3 * 512));
}

TEST(Plan, CapacityFollowsGShard) {
  EXPECT_EQ(glam::expert_capacity(512, 2.0, 4), 256);
  EXPECT_EQ(glam::expert_capacity(100, 2.0, 8), 28);   // floor(25) rounded up to 4
  EXPECT_EQ(glam::expert_capacity(10, 2.0, 64), 4);    // never below 4
  EXPECT_EQ(glam::expert_capacity(1000, 1.25, 8), 156);
  EXPECT_EQ(glam::expert_capacity(1000, 2.0, 0), 0);   // dense
  // The paper's group: 16 sequences x 1024 tokens, cf 2, 64 experts.
  EXPECT_EQ(glam::make_plan(load("glam-64b-64e"), 1).expert_capacity, 512);
}

TEST(Plan, EvenPlacementDealsUnitsRoundRobin) {
  const config c = load("glam-tiny");  // 2 shards, 4 experts
  const plan_figures one = glam::make_plan(c, 1);
  ASSERT_EQ(one.per_worker.size(), 1u);
  EXPECT_EQ(one.per_worker[0].shards, 2);
  EXPECT_EQ(one.per_worker[0].experts, 4);
  EXPECT_DOUBLE_EQ(one.max_worker_bytes, one.total_bytes);
  EXPECT_DOUBLE_EQ(one.total_bytes, 2 * one.shard_unit.total() + 4 * one.expert_unit.total());

  const plan_figures four = glam::make_plan(c, 4);
  ASSERT_EQ(four.per_worker.size(), 4u);
  // units 0..5 = s0 s1 e0 e1 e2 e3 -> workers 0 1 2 3 0 1
  EXPECT_EQ(four.per_worker[0].shards, 1);
  EXPECT_EQ(four.per_worker[0].experts, 1);
  EXPECT_EQ(four.per_worker[2].shards, 0);
  EXPECT_EQ(four.per_worker[2].experts, 1);
  double sum = 0;
  for (const auto& w : four.per_worker) sum += w.bytes;
  EXPECT_DOUBLE_EQ(sum, four.total_bytes);
  EXPECT_DOUBLE_EQ(four.max_worker_bytes, four.shard_unit.total() + four.expert_unit.total());

  const plan_figures many = glam::make_plan(c, 10);  // more workers than units: some idle
  EXPECT_EQ(many.per_worker[9].shards + many.per_worker[9].experts, 0);
  EXPECT_EQ(many.per_worker[9].bytes, 0);

  EXPECT_THROW(glam::make_plan(c, 0), std::invalid_argument);
}

TEST(Plan, FiguresDoNotDependOnWorkersOrBatchExceptWhereStated) {
  config c = load("glam-small");
  const plan_figures a = glam::make_plan(c, 1);
  const plan_figures b = glam::make_plan(c, 3);
  EXPECT_EQ(a.params_total, b.params_total);
  EXPECT_EQ(a.flops_per_token_train, b.flops_per_token_train);
  EXPECT_EQ(a.shard_unit.total(), b.shard_unit.total());
  c.train.batch_per_shard *= 2;
  const plan_figures d = glam::make_plan(c, 1);
  EXPECT_EQ(a.flops_per_token_train, d.flops_per_token_train);
  EXPECT_EQ(a.shard_unit.params, d.shard_unit.params);
  EXPECT_GT(d.shard_unit.activations, a.shard_unit.activations);
  EXPECT_GT(d.expert_unit.activations, a.expert_unit.activations);
  EXPECT_EQ(d.tokens_per_step, 2 * a.tokens_per_step);
}

TEST(Plan, JsonCarriesTheAgreedKeys) {
  const config c = load("glam-64b-64e");
  const plan_figures p = glam::make_plan(c, 8);
  const nlohmann::json j = glam::plan_to_json(c, p);
  EXPECT_EQ(j.at("params_total").get<std::int64_t>(), p.params_total);
  EXPECT_EQ(j.at("params_activated").get<std::int64_t>(), p.params_activated);
  EXPECT_EQ(j.at("params_embedding").get<std::int64_t>(), p.params_embedding);
  EXPECT_EQ(j.at("flops_per_token_train").get<std::int64_t>(), p.flops_per_token_train);
  EXPECT_EQ(j.at("flops_per_token_infer").get<std::int64_t>(), p.flops_per_token_infer);
  EXPECT_EQ(j.at("workers").get<std::int64_t>(), 8);
  EXPECT_EQ(j.at("memory").at("per_worker").size(), 8u);
  EXPECT_DOUBLE_EQ(j.at("memory").at("max_worker_bytes").get<double>(), p.max_worker_bytes);
  EXPECT_EQ(j.at("name").get<std::string>(), "glam-64b-64e");
}

TEST(Plan, TextNamesTheFigures) {
  const config c = load("glam-tiny");
  const std::string text = glam::plan_to_text(c, glam::make_plan(c, 2));
  for (const char* part : {"glam-tiny", "total", "activated per token", "embedding",
                           "training", "inference", "attention shard", "expert", "worker 1"})
    EXPECT_NE(text.find(part), std::string::npos) << part << "\n" << text;
}

}  // namespace
