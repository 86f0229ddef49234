// `glam plan` figures. Every formula is stated in docs/plan.md; keep the two in step.
//
// Legend: V vocabulary, L layers, M d_model, H d_ff, A = heads·d_head, E experts,
// T seq_len, S attention shards, B batch_per_shard, C expert capacity per shard group,
// k = matrices per expert (2 for relu, 3 for gated_gelu).
#include "configs/plan.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace glam {

namespace {

constexpr double k_bytes_per_float = 4;  // f32 parameters, gradients, state, activations
constexpr std::int64_t k_bias_buckets = 32;
constexpr std::int64_t k_factored_min_dim = 128;  // Adafactor factors a matrix when both dims reach this
constexpr std::int64_t k_dense_ffn_matrices = 3;  // gated GELU: Wg, W1, W2

// Adafactor's second moment of an r×c matrix: row and column vectors when both dims are
// large enough, else the full matrix (β1 = 0, so there is no first moment).
std::int64_t adafactor_floats(std::int64_t rows, std::int64_t cols) {
  if (rows >= k_factored_min_dim && cols >= k_factored_min_dim) return rows + cols;
  return rows * cols;
}

std::int64_t matrices_per_expert(const model_config& m) {
  return m.activation == expert_activation::relu ? 2 : 3;
}

// Floats an expert keeps per routed row for backward: its input, and the FFN's
// pre-activations (relu: x·W1; gated: x·Wg, x·W1 and their product).
std::int64_t expert_row_floats(const model_config& m) {
  return m.d_model + (m.activation == expert_activation::relu ? 1 : 3) * m.d_ff;
}

std::string with_separators(std::int64_t v) {
  std::string digits = std::to_string(v < 0 ? -v : v);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return (v < 0 ? "-" : "") + out;
}

std::string short_count(double v) {
  const char* suffix[] = {"", "K", "M", "B", "T", "P"};
  int i = 0;
  while (std::fabs(v) >= 1000 && i < 5) v /= 1000, ++i;
  char buf[32];
  std::snprintf(buf, sizeof buf, i ? "%.3g%s" : "%.0f%s", v, suffix[i]);
  return buf;
}

std::string short_bytes(double v) {
  const char* suffix[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int i = 0;
  while (std::fabs(v) >= 1024 && i < 5) v /= 1024, ++i;
  char buf[32];
  std::snprintf(buf, sizeof buf, i ? "%.2f %s" : "%.0f %s", v, suffix[i]);
  return buf;
}

// Byte counts are whole numbers: print them as integers while they fit in int64 (they do
// for any config this side of exabytes), as a float beyond.
nlohmann::json bytes_json(double bytes) {
  if (std::fabs(bytes) < 9.0e18) return static_cast<std::int64_t>(std::llround(bytes));
  return bytes;
}

nlohmann::json unit_json(const unit_memory& u) {
  return {{"params_bytes", bytes_json(u.params)},
          {"gradient_bytes", bytes_json(u.gradients)},
          {"optimizer_bytes", bytes_json(u.optimizer)},
          {"activation_bytes", bytes_json(u.activations)},
          {"total_bytes", bytes_json(u.total())}};
}

std::string plural(std::int64_t n, const char* noun) {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
}

}  // namespace

std::int64_t expert_capacity(std::int64_t tokens, double capacity_factor, std::int64_t experts) {
  if (experts <= 0) return 0;
  const auto per_expert = static_cast<std::int64_t>(
      std::floor(static_cast<double>(tokens) * capacity_factor / static_cast<double>(experts)));
  const std::int64_t rounded = (per_expert + 3) / 4 * 4;
  return std::max<std::int64_t>(4, rounded);
}

plan_figures make_plan(const config& c, std::int64_t workers) {
  if (workers < 1)
    throw std::invalid_argument("--workers = " + std::to_string(workers) +
                                " is out of range: give at least 1 worker");
  const model_config& m = c.model;
  const std::int64_t V = m.vocab_size, L = m.layers, M = m.d_model, H = m.d_ff;
  const std::int64_t A = m.heads * m.d_head, E = m.is_moe() ? m.experts : 0, T = m.seq_len;
  const std::int64_t S = c.cluster.shards, B = c.train.batch_per_shard;
  const std::int64_t k = matrices_per_expert(m);

  plan_figures p;
  p.shards = S;
  p.experts = E;
  p.workers = workers;
  p.tokens_per_shard = B * T;
  p.tokens_per_step = S * B * T;
  p.expert_capacity = expert_capacity(p.tokens_per_shard, c.moe.capacity_factor, E);
  const std::int64_t C = p.expert_capacity;

  // Parameters, optimizer state and activations, walked block by block so that every
  // MoE/dense choice follows model_config::is_moe_layer.
  std::int64_t dense = V * M + M;  // tied embedding, final RMSNorm scale
  std::int64_t dense_state = adafactor_floats(V, M) + M;
  std::int64_t matrix_activated = V * M;  // output projection through the tied embedding
  std::int64_t shard_token_floats = 2 * M + V;  // final norm in/out, logits (softmax in place)
  std::int64_t shard_group_floats = 0;         // per group, not per token: MoE dispatch buffers
  std::int64_t expert_matrices = 0;            // one expert unit's parameters
  std::int64_t expert_state = 0;
  std::int64_t expert_rows = 0;  // rows an expert unit keeps for backward, over all layers
  for (std::int64_t layer = 0; layer < L; ++layer) {
    const std::int64_t attention = 4 * M * A;
    dense += attention + 2 * M + k_bias_buckets * m.heads;
    dense_state += 4 * adafactor_floats(M, A) + 2 * M + adafactor_floats(k_bias_buckets, m.heads);
    matrix_activated += attention;
    // attention: residual, norm output, q, k, v, context, softmax probabilities
    shard_token_floats += 2 * M + 4 * A + m.heads * T;
    if (m.is_moe_layer(layer)) {
      dense += M * E;  // gate
      dense_state += adafactor_floats(M, E);
      matrix_activated += M * E + 2 * k * M * H;  // gate, two experts per token
      expert_matrices += k * M * H;
      expert_state += k * adafactor_floats(M, H);
      expert_rows += S * C;
      shard_token_floats += 2 * M + E;       // residual, norm output, gate probabilities
      shard_group_floats += 2 * E * C * M;   // dispatched rows and the experts' replies
    } else {
      dense += k_dense_ffn_matrices * M * H;
      dense_state += k_dense_ffn_matrices * adafactor_floats(M, H);
      matrix_activated += k_dense_ffn_matrices * M * H;
      shard_token_floats += 2 * M + 3 * H;  // residual, norm output, x·Wg, x·W1, product
    }
  }

  p.params_embedding = V * M;
  p.params_dense = dense;
  p.params_per_expert = expert_matrices;
  p.params_total = dense + E * expert_matrices;
  p.params_activated = dense + (E > 0 ? 2 * expert_matrices : 0);
  p.matrix_params_activated = matrix_activated;
  p.attention_flops_per_token_train = 6 * L * T * A;
  p.flops_per_token_train = 6 * matrix_activated + p.attention_flops_per_token_train;
  p.flops_per_token_infer = 2 * matrix_activated + 2 * L * T * A;
  p.flops_per_step_train =
      static_cast<double>(p.tokens_per_step) * static_cast<double>(p.flops_per_token_train);

  const double f = k_bytes_per_float;
  p.shard_unit.params = f * static_cast<double>(dense);
  p.shard_unit.gradients = p.shard_unit.params;
  p.shard_unit.optimizer = f * static_cast<double>(dense_state);
  p.shard_unit.activations =
      f * (static_cast<double>(p.tokens_per_shard) * static_cast<double>(shard_token_floats) +
           static_cast<double>(shard_group_floats));
  if (E > 0) {
    p.expert_unit.params = f * static_cast<double>(expert_matrices);
    p.expert_unit.gradients = p.expert_unit.params;
    p.expert_unit.optimizer = f * static_cast<double>(expert_state);
    p.expert_unit.activations =
        f * static_cast<double>(expert_rows) * static_cast<double>(expert_row_floats(m));
  }

  p.per_worker.assign(static_cast<std::size_t>(workers), worker_load{});
  for (std::int64_t unit = 0; unit < S + E; ++unit) {
    worker_load& w = p.per_worker[static_cast<std::size_t>(unit % workers)];
    if (unit < S) {
      ++w.shards;
      w.bytes += p.shard_unit.total();
    } else {
      ++w.experts;
      w.bytes += p.expert_unit.total();
    }
  }
  for (const worker_load& w : p.per_worker) p.max_worker_bytes = std::max(p.max_worker_bytes, w.bytes);
  p.total_bytes = static_cast<double>(S) * p.shard_unit.total() +
                  static_cast<double>(E) * p.expert_unit.total();
  return p;
}

nlohmann::json plan_to_json(const config& c, const plan_figures& p) {
  nlohmann::json workers = nlohmann::json::array();
  for (std::size_t i = 0; i < p.per_worker.size(); ++i) {
    const worker_load& w = p.per_worker[i];
    workers.push_back({{"worker", i}, {"shards", w.shards}, {"experts", w.experts},
                       {"bytes", bytes_json(w.bytes)}});
  }
  return {
      {"name", c.name},
      {"params_total", p.params_total},
      {"params_activated", p.params_activated},
      {"params_embedding", p.params_embedding},
      {"params_dense", p.params_dense},
      {"params_per_expert", p.params_per_expert},
      {"matrix_params_activated", p.matrix_params_activated},
      {"flops_per_token_train", p.flops_per_token_train},
      {"flops_per_token_infer", p.flops_per_token_infer},
      {"attention_flops_per_token_train", p.attention_flops_per_token_train},
      {"tokens_per_step", p.tokens_per_step},
      {"flops_per_step_train", p.flops_per_step_train},
      {"expert_capacity", p.expert_capacity},
      {"shards", p.shards},
      {"experts", p.experts},
      {"workers", p.workers},
      {"memory",
       {{"shard_unit", unit_json(p.shard_unit)},
        {"expert_unit", unit_json(p.expert_unit)},
        {"per_worker", workers},
        {"max_worker_bytes", bytes_json(p.max_worker_bytes)},
        {"total_bytes", bytes_json(p.total_bytes)}}},
  };
}

std::string plan_to_text(const config& c, const plan_figures& p) {
  const model_config& m = c.model;
  std::string out;
  const auto line = [&](const std::string& label, const std::string& value) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "  %-28s ", label.c_str());
    out += buf + value + "\n";
  };
  const auto count = [](std::int64_t v) {
    return short_count(static_cast<double>(v)) + " (" + with_separators(v) + ")";
  };
  out += c.name + ": " + std::to_string(m.layers) + " layers, d_model " +
         std::to_string(m.d_model) + ", d_ff " + std::to_string(m.d_ff) + ", " +
         std::to_string(m.heads) + " x " + std::to_string(m.d_head) + " heads, " +
         (m.is_moe() ? std::to_string(m.experts) + " experts (" + to_string(m.activation) +
                           ") every " + std::to_string(m.moe_every) + " blocks"
                     : std::string("dense")) +
         ", vocab " + std::to_string(m.vocab_size) + ", seq_len " + std::to_string(m.seq_len) +
         "\n";
  out += "parameters (tied embedding counted once)\n";
  line("total", count(p.params_total));
  line("activated per token", count(p.params_activated));
  line("embedding (in both)", count(p.params_embedding));
  line("total without embedding", count(p.params_total - p.params_embedding));
  line("activated w/o embedding", count(p.params_activated - p.params_embedding));
  line("per attention shard", count(p.params_dense));
  if (m.is_moe()) line("per expert", count(p.params_per_expert));
  out += "FLOPs per token (6N + 6LTA; N = " + short_count(static_cast<double>(
                                                  p.matrix_params_activated)) +
         " activated matrix parameters)\n";
  line("training", short_count(static_cast<double>(p.flops_per_token_train)) + " (" +
                       with_separators(p.flops_per_token_train) + ")");
  line("inference", short_count(static_cast<double>(p.flops_per_token_infer)) + " (" +
                        with_separators(p.flops_per_token_infer) + ")");
  line("training per step", short_count(p.flops_per_step_train) + " for " +
                                with_separators(p.tokens_per_step) + " tokens (" +
                                std::to_string(p.shards) + " shards x " +
                                std::to_string(c.train.batch_per_shard) + " x " +
                                std::to_string(m.seq_len) + ")");
  if (m.is_moe()) line("expert capacity per group", std::to_string(p.expert_capacity) + " rows");
  const auto unit = [&](const char* title, const unit_memory& u) {
    line(title, short_bytes(u.total()));
    line("  parameters", short_bytes(u.params));
    line("  gradients", short_bytes(u.gradients));
    line("  Adafactor state", short_bytes(u.optimizer));
    line("  activations", short_bytes(u.activations));
  };
  out += "memory per unit (f32)\n";
  unit("attention shard", p.shard_unit);
  if (m.is_moe()) unit("expert", p.expert_unit);
  out += "memory per worker, " + plural(p.shards, "shard") + " and " +
         plural(p.experts, "expert") + " dealt round-robin over " +
         plural(p.workers, "worker") + ": at most " +
         short_bytes(p.max_worker_bytes) + " (all units: " + short_bytes(p.total_bytes) + ")\n";
  const std::size_t shown = std::min<std::size_t>(p.per_worker.size(), 16);
  for (std::size_t i = 0; i < shown; ++i) {
    const worker_load& w = p.per_worker[i];
    line("worker " + std::to_string(i),
         plural(w.shards, "shard") + ", " + plural(w.experts, "expert") + ", " +
             short_bytes(w.bytes));
  }
  if (shown < p.per_worker.size())
    out += "  ... " + std::to_string(p.per_worker.size() - shown) + " more workers (see --json)\n";
  return out;
}

}  // namespace glam
