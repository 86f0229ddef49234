#pragma once
// One job's configuration, grouped like the TOML file: [model], [moe], [train], [data],
// [cluster], [fault], [placement] (and [testing]). parse_config refuses every invalid value with a message naming
// the key, the value given and what is allowed.
#include <cstdint>
#include <stdexcept>
#include <string>

namespace glam {

enum class expert_activation { relu, gated_gelu };
enum class second_expert_policy { all, random };
enum class lr_schedule_kind { rsqrt };  // lr = lr_scale · rsqrt(max(t, warmup))

struct model_config {
  std::int64_t vocab_size = 2048;
  std::int64_t layers = 2;
  std::int64_t d_model = 64;   // M
  std::int64_t d_ff = 256;     // H
  std::int64_t heads = 4;
  std::int64_t d_head = 16;
  std::int64_t experts = 4;    // E; 0 = dense model (no MoE layers)
  std::int64_t moe_every = 2;  // blocks 0, moe_every, 2·moe_every, … are MoE
  expert_activation activation = expert_activation::relu;
  std::int64_t seq_len = 64;   // T

  // Benchmark baseline only, not a TOML key: every MoE block gets a dense ReLU FFN of
  // width 2·d_ff instead of experts (the same activated FLOPs, no routing).
  bool moe_as_dense_relu = false;

  bool is_moe() const { return experts > 0; }
  bool is_moe_layer(std::int64_t layer) const { return is_moe() && layer % moe_every == 0; }
  std::int64_t moe_layers() const { return is_moe() ? (layers + moe_every - 1) / moe_every : 0; }
};

struct moe_config {
  double capacity_factor = 2.0;
  second_expert_policy policy = second_expert_policy::all;
  double aux_weight = 0.01;
  // The gate matrices' (the router's) Adafactor step is train's lr times this; 1 = the same
  // step as every other parameter. Not part of model_config_hash: it changes training only.
  double gate_lr_scale = 1.0;
};

struct train_config {
  std::int64_t batch_per_shard = 4;  // sequences per attention shard per step
  std::int64_t steps = 100;
  lr_schedule_kind lr_schedule = lr_schedule_kind::rsqrt;
  double lr_scale = 1.0;             // lr = lr_scale · rsqrt(max(t, warmup))
  std::int64_t warmup = 10000;
  std::uint64_t seed = 1;
  double z_loss = 0.0;               // weight of the output z-loss (1e-4 in GLaM when on)
  std::int64_t eval_every = 0;       // 0: no evaluation
  std::int64_t eval_batches = 4;     // validation batches (per shard) per evaluation
};

struct data_config {
  std::string dir = "demo/data";
  // Uniform random tokens from (seed, step, shard) instead of data.dir: for benchmarks,
  // where only the shapes matter.
  bool synthetic = false;
};

struct cluster_config {
  std::int64_t shards = 1;  // S logical attention shards
};

struct fault_config {
  std::int64_t snapshot_every = 1;
  std::int64_t checkpoint_every = 0;  // 0: one checkpoint, at the end of the job
  std::int64_t keep_checkpoints = 3;
  std::int64_t heartbeat_ms = 500;
};

// Load-aware placement (docs/placement.md): how often the coordinator re-plans from the
// measured load, over how many steps it averages, and when a new placement is worth moving
// units for. Not part of the model hash: placement never changes a result.
struct placement_config {
  std::int64_t rebalance_every = 0;  // steps; 0: the placement stays as the job started
  std::int64_t window = 20;          // steps the load is averaged over
  double min_gain = 0.1;             // predicted step time must drop by this share at least
  std::int64_t payback_steps = 100;  // the units' transfer must be repaid within this many steps
};

// Testing only (docs/placement.md, "The benchmark"): options that change what the model
// computes on purpose, to exercise the runtime. A config that sets one is refused unless
// the process reading it runs with GLAM_TESTING=1, so a real job cannot carry one by
// accident; to_toml writes the section only when something in it is set.
struct testing_config {
  // Added to the gate logits of experts 0 and 1 in every MoE layer, in training and in
  // inference (kernels/gating.hpp): a fixed router skew that sends most tokens to two
  // experts. 0: off, and every bit as without it. Part of model_config_hash when set.
  double router_bias = 0;

  bool any() const { return router_bias != 0; }
};

struct config {
  std::string name;  // from the file name when not given
  model_config model;
  moe_config moe;
  train_config train;
  data_config data;
  cluster_config cluster;
  fault_config fault;
  placement_config placement;
  testing_config testing;
};

// A config error: what() names the key, the value and what is allowed.
struct config_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Parses one job's TOML text. source_name (a file name or a label) prefixes every message,
// and its stem is the config's name unless the file sets `name`.
config parse_config_string(const std::string& toml_text, const std::string& source_name);
// Reads and parses the file at path; a missing or unreadable file is a config_error too.
config load_config(const std::string& path);

// Checks every value and every cross-field rule of a config built in code (parse_config_string
// calls it); throws config_error naming the key, the value and what is allowed.
void validate_config(const config& c);

// Checks the config against the data it trains on (seq_len over what the data has,
// vocabulary mismatch); throws config_error.
void validate_against_data(const config& c, std::int64_t data_vocab_size,
                           std::int64_t longest_trainable_sequence);

// Why `name` cannot name a job or a worker (empty when it can): names become directory
// and file names, so they are 1 to 64 characters of [A-Za-z0-9._-], and not "." or "..".
std::string name_problem(const std::string& name);

// A stable hash of the model-defining fields (what a checkpoint must match).
std::uint64_t model_config_hash(const config& c);

// The config as TOML text (round-trips through parse_config_string).
std::string to_toml(const config& c);

// The TOML spellings of the enums ("relu", "gated_gelu", "all", "random", "rsqrt").
const char* to_string(expert_activation a);
const char* to_string(second_expert_policy p);
const char* to_string(lr_schedule_kind s);

}  // namespace glam
