#pragma once
// The job the runtime tests submit: a tiny model on synthetic tokens that trains until it
// is stopped (the tests stop, kill or restart things while it runs).
#include <string>

namespace glam::testing {

inline std::string tiny_job_toml(int shards) {
  return R"(name = "tiny"
[model]
vocab_size = 256
layers = 2
d_model = 16
d_ff = 32
heads = 2
d_head = 8
experts = 4
seq_len = 16
[train]
steps = 1000000
[data]
synthetic = true
[cluster]
shards = )" + std::to_string(shards) + "\n";
}

}  // namespace glam::testing
