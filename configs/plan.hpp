#pragma once
// `glam plan`: what a config costs. Parameters (total, activated, embedding), model FLOPs
// per token (the figure every MFU in glam divides by), and memory per logical unit and per
// worker for an even placement. docs/plan.md states every formula used here.
//
// Legend: V vocabulary, L layers, M d_model, H d_ff, A = heads·d_head, E experts,
// T seq_len, S attention shards, B batch_per_shard, C expert capacity per shard group.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "configs/config.hpp"

namespace glam {

// Memory of one logical unit, in bytes (f32 everywhere).
struct unit_memory {
  double params = 0;       // the unit's own parameters
  double gradients = 0;    // one gradient buffer of the same size
  double optimizer = 0;    // Adafactor second moments (β1 = 0: no first moment)
  double activations = 0;  // what the backward pass keeps, at the configured batch
  double total() const { return params + gradients + optimizer + activations; }
};

// One worker's share of an even placement.
struct worker_load {
  std::int64_t shards = 0;   // attention-shard units it hosts
  std::int64_t experts = 0;  // expert units it hosts
  double bytes = 0;          // their memory
};

struct plan_figures {
  // Parameter counts (the tied V×M embedding counted once).
  std::int64_t params_total = 0;      // everything, embedding included
  std::int64_t params_activated = 0;  // what one token uses: two experts per MoE layer
  std::int64_t params_embedding = 0;  // V·M, included in both figures above
  std::int64_t params_dense = 0;      // one attention shard's replica (all but experts)
  std::int64_t params_per_expert = 0; // one expert unit: expert e of every MoE layer

  // FLOPs per token. train = 6·N + 6·L·T·A with N = activated matrix parameters (output
  // projection through the tied embedding included; input lookup, norms, biases not);
  // infer = the forward third, 2·N + 2·L·T·A.
  std::int64_t matrix_params_activated = 0;  // N
  std::int64_t attention_flops_per_token_train = 0;  // 6·L·T·A
  std::int64_t flops_per_token_train = 0;
  std::int64_t flops_per_token_infer = 0;

  // One training step.
  std::int64_t tokens_per_shard = 0;  // B·T: one gating group
  std::int64_t tokens_per_step = 0;   // S·B·T
  double flops_per_step_train = 0;    // tokens_per_step · flops_per_token_train
  std::int64_t expert_capacity = 0;   // C, GShard's capacity per expert per group (0: dense)

  // Memory.
  unit_memory shard_unit;
  unit_memory expert_unit;  // all zero for a dense model
  std::int64_t shards = 0;  // S
  std::int64_t experts = 0; // E
  std::int64_t workers = 0; // N
  std::vector<worker_load> per_worker;  // N entries
  double max_worker_bytes = 0;
  double total_bytes = 0;  // every unit once
};

// GShard's capacity for one group of `tokens` tokens: max(4, round_up_to_4(floor(tokens·cf/E))).
std::int64_t expert_capacity(std::int64_t tokens, double capacity_factor, std::int64_t experts);

// The plan for a valid config on `workers` workers (≥ 1); throws std::invalid_argument for
// workers < 1. Units are placed round-robin: shard s on worker s mod N, then expert e on
// worker (S + e) mod N, so unit counts differ by at most one.
plan_figures make_plan(const config& c, std::int64_t workers);

// The `--json` object: params_total, params_activated, params_embedding,
// flops_per_token_train, flops_per_token_infer and the rest of the figures.
nlohmann::json plan_to_json(const config& c, const plan_figures& p);

// The human-readable report that `glam plan` prints.
std::string plan_to_text(const config& c, const plan_figures& p);

}  // namespace glam
