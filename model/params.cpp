#include "model/params.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "kernels/random.hpp"

namespace glam {

tensor& param_set::at(const std::string& name) {
  for (auto& it : items)
    if (it.name == name) return it.value;
  throw std::out_of_range("no parameter named '" + name + "'");
}

const tensor& param_set::at(const std::string& name) const {
  return const_cast<param_set*>(this)->at(name);
}

bool param_set::contains(const std::string& name) const {
  for (auto& it : items)
    if (it.name == name) return true;
  return false;
}

void param_set::add(std::string name, std::vector<index> shape) {
  items.push_back({std::move(name), tensor(std::move(shape))});
}

index param_set::elements() const {
  index n = 0;
  for (auto& it : items) n += it.value.size();
  return n;
}

param_set param_set::zeros_like() const {
  param_set z;
  for (auto& it : items) z.add(it.name, it.value.shape);
  return z;
}

void param_set::zero() {
  for (auto& it : items) it.value.zero();
}

bool param_set::all_finite() const {
  for (auto& it : items)
    for (float v : it.value.data)
      if (!std::isfinite(v)) return false;
  return true;
}

namespace {

std::string layer_name(index layer, const char* part) {
  return "l" + std::to_string(layer) + "." + part;
}

// Stream ids: a stable hash of the parameter name, so that adding a parameter never
// shifts another one's values.
std::uint64_t name_id(const std::string& name) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : name) {
    h ^= ch;
    h *= 1099511628211ull;
  }
  return h;
}

constexpr std::uint64_t dense_unit_id = 0xDE45Eull;
constexpr std::uint64_t expert_unit_base = 0xE0000000ull;

void init_normal(tensor& t, double stddev, random_stream& rng) { fill_normal(t.ptr(), t.size(), stddev, rng); }
void init_uniform(tensor& t, double limit, random_stream& rng) { fill_uniform(t.ptr(), t.size(), limit, rng); }

// The init of one parameter by its role (the part after "l<n>.").
void init_param(named_tensor& p, const model_config& m, std::uint64_t seed, std::uint64_t unit) {
  random_stream rng(mix_seed(seed, {unit, name_id(p.name)}));
  const double M = double(m.d_model), D = double(m.heads * m.d_head);
  const std::string role = p.name.substr(p.name.find('.') == std::string::npos ? 0 : p.name.find('.') + 1);
  if (role == "embedding") init_normal(p.value, 1.0, rng);
  else if (role == "wq") init_normal(p.value, std::sqrt(1.0 / (M * double(m.d_head))), rng);
  else if (role == "wk" || role == "wv") init_normal(p.value, std::sqrt(1.0 / M), rng);
  else if (role == "wo") init_normal(p.value, std::sqrt(1.0 / D), rng);
  else if (role == "wg" || role == "w1" || role == "gate") init_uniform(p.value, std::sqrt(3.0 / M), rng);
  else if (role == "w2") init_uniform(p.value, std::sqrt(3.0 / double(p.value.dim(0))), rng);
  else if (role == "rel_bias") init_normal(p.value, std::sqrt(1.0 / (double(m.heads) * 32.0)), rng);
  else if (role == "attn_norm" || role == "ffn_norm" || role == "final_norm")
    std::fill(p.value.data.begin(), p.value.data.end(), 1.0f);
  else throw std::logic_error("no init rule for parameter '" + p.name + "'");
}

}  // namespace

constexpr index relative_buckets = 32;

param_set dense_param_layout(const model_config& m) {
  const index M = m.d_model, H = m.d_ff, D = m.heads * m.d_head;
  param_set p;
  p.add("embedding", {m.vocab_size, M});
  for (index l = 0; l < m.layers; ++l) {
    p.add(layer_name(l, "attn_norm"), {1, M});
    p.add(layer_name(l, "wq"), {M, D});
    p.add(layer_name(l, "wk"), {M, D});
    p.add(layer_name(l, "wv"), {M, D});
    p.add(layer_name(l, "wo"), {D, M});
    p.add(layer_name(l, "rel_bias"), {relative_buckets, m.heads});
    p.add(layer_name(l, "ffn_norm"), {1, M});
    if (m.is_moe_layer(l) && m.moe_as_dense_relu) {
      p.add(layer_name(l, "w1"), {M, 2 * H});
      p.add(layer_name(l, "w2"), {2 * H, M});
    } else if (m.is_moe_layer(l)) {
      p.add(layer_name(l, "gate"), {M, m.experts});
    } else {
      p.add(layer_name(l, "wg"), {M, H});
      p.add(layer_name(l, "w1"), {M, H});
      p.add(layer_name(l, "w2"), {H, M});
    }
  }
  p.add("final_norm", {1, M});
  return p;
}

param_set expert_param_layout(const model_config& m) {
  const index M = m.d_model, H = m.d_ff;
  param_set p;
  for (index l = 0; l < m.layers; ++l) {
    if (!m.is_moe_layer(l) || m.moe_as_dense_relu) continue;
    if (m.activation == expert_activation::gated_gelu) p.add(layer_name(l, "wg"), {M, H});
    p.add(layer_name(l, "w1"), {M, H});
    p.add(layer_name(l, "w2"), {H, M});
  }
  return p;
}

param_set init_dense_params(const model_config& m, std::uint64_t seed) {
  param_set p = dense_param_layout(m);
  for (auto& it : p.items) init_param(it, m, seed, dense_unit_id);
  return p;
}

param_set init_expert_params(const model_config& m, index expert, std::uint64_t seed) {
  param_set p = expert_param_layout(m);
  for (auto& it : p.items) init_param(it, m, seed, expert_unit_base + std::uint64_t(expert));
  return p;
}

void add_into(param_set& dst, const param_set& src) {
  if (dst.items.size() != src.items.size()) throw std::logic_error("add_into: layouts differ");
  for (std::size_t i = 0; i < dst.items.size(); ++i) {
    tensor& d = dst.items[i].value;
    const tensor& s = src.items[i].value;
    if (!d.same_shape(s)) throw std::logic_error("add_into: shapes differ at " + dst.items[i].name);
    float* dp = d.ptr();
    const float* sp = s.ptr();
    for (index j = 0; j < d.size(); ++j) dp[j] += sp[j];
  }
}

bool bitwise_equal(const param_set& a, const param_set& b) {
  if (a.items.size() != b.items.size()) return false;
  for (std::size_t i = 0; i < a.items.size(); ++i)
    if (a.items[i].name != b.items[i].name || !bitwise_equal(a.items[i].value, b.items[i].value)) return false;
  return true;
}

}  // namespace glam
