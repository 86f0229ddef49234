#pragma once
// Parameters as an ordered list of named 2-D matrices (vectors are [1, n]). The same
// structure carries gradients, optimizer state, checkpoints and unit migration, and its
// order is the fixed order every sum over it runs in.
#include <string>
#include <vector>

#include "configs/config.hpp"
#include "kernels/tensor.hpp"

namespace glam {

struct named_tensor {
  std::string name;
  tensor value;
};

struct param_set {
  std::vector<named_tensor> items;

  tensor& at(const std::string& name);
  const tensor& at(const std::string& name) const;
  bool contains(const std::string& name) const;
  void add(std::string name, std::vector<index> shape);
  index elements() const;
  // A set with the same names and shapes, all zero (for gradients).
  param_set zeros_like() const;
  void zero();
  // true when every element of every tensor is finite.
  bool all_finite() const;
};

// Names and shapes of the dense parameters every attention shard holds a replica of
// (embedding, attention, dense FFNs, gates, norms, relative bias tables) and of one expert's
// parameters (its matrices in every MoE layer). Names: "embedding", "final_norm", and
// "l<layer>.<part>".
param_set dense_param_layout(const model_config& m);
param_set expert_param_layout(const model_config& m);

// GLaM's init (docs/model.md, "Initialisation"), one seeded stream per (parameter, unit): the dense
// replica is the same on every shard; expert e's values depend on (seed, e) only.
param_set init_dense_params(const model_config& m, std::uint64_t seed);
param_set init_expert_params(const model_config& m, index expert, std::uint64_t seed);

// dst += src, tensor by tensor (same layout).
void add_into(param_set& dst, const param_set& src);

// Bitwise equality of two sets (names, shapes and every bit).
bool bitwise_equal(const param_set& a, const param_set& b);

}  // namespace glam
