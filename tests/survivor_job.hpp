#pragma once
// The tiny job that the failure-injection suite and glam chaos's test train on real
// processes: small enough that compute is nothing next to the coordinator's pacing, with
// validation and checkpoints on the way so that faults strike those rounds too.
#include <string>

#include "configs/config.hpp"

namespace glam::testing {

inline config survivor_job(const std::string& name) {
  config c;
  c.name = name;
  c.model.vocab_size = 61;
  c.model.layers = 2;
  c.model.d_model = 16;
  c.model.d_ff = 24;
  c.model.heads = 2;
  c.model.d_head = 8;
  c.model.experts = 4;
  c.model.seq_len = 12;
  c.moe.capacity_factor = 1.0;
  c.moe.policy = second_expert_policy::random;
  c.train.batch_per_shard = 2;
  c.train.steps = 24;
  c.train.warmup = 10;
  c.train.seed = 11;
  c.train.eval_every = 8;
  c.train.eval_batches = 1;
  c.data.synthetic = true;
  c.cluster.shards = 2;
  c.fault.checkpoint_every = 6;
  return c;
}

}  // namespace glam::testing
