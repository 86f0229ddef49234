#pragma once
// Small configs for model tests.
#include "configs/config.hpp"

namespace glam::testing {

// A two-block GLaM (block 0 MoE, block 1 dense) small enough for finite differences.
inline config tiny_model_config() {
  config c;
  c.name = "test-tiny";
  c.model.vocab_size = 37;
  c.model.layers = 2;
  c.model.d_model = 8;
  c.model.d_ff = 12;
  c.model.heads = 2;
  c.model.d_head = 4;
  c.model.experts = 4;
  c.model.moe_every = 2;
  c.model.seq_len = 6;
  c.moe.capacity_factor = 2.0;
  c.moe.aux_weight = 0.01;
  c.train.batch_per_shard = 2;
  c.train.steps = 3;
  c.train.warmup = 10;
  c.train.seed = 7;
  c.cluster.shards = 2;
  return c;
}

}  // namespace glam::testing
