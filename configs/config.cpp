// Job config: TOML text -> config struct, with every value checked, and back.
//
// Every refusal names the key (as section.key), the value given and what is allowed, so
// that a user can fix the file from the message alone. The allowed ranges are listed in
// docs/plan.md ("Config keys"); they also keep every figure of `glam plan` inside int64.
#include "configs/config.hpp"

#include <algorithm>
#include <cinttypes>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <sstream>
#include <string_view>
#include <utility>
#include <vector>

#include <toml++/toml.h>

namespace glam {

namespace {

constexpr std::int64_t k_int64_max = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t k_trillion = 1'000'000'000'000;  // bound on step counts

// The allowed ranges, one place for the parser and for validate_config. The upper bounds
// keep every figure of `glam plan` (parameters, FLOPs) inside int64.
struct int_range {
  std::int64_t lo, hi;
};
struct real_range {
  double lo;
  bool open_low;  // lo itself excluded
  double hi;
};
constexpr int_range r_vocab_size{2, std::int64_t{1} << 31};
constexpr int_range r_layers{1, 4096};
constexpr int_range r_d_model{1, 65536};
constexpr int_range r_d_ff{1, 262144};
constexpr int_range r_heads{1, 4096};
constexpr int_range r_d_head{1, 4096};
constexpr int_range r_experts{0, 2048};  // and never 1
constexpr int_range r_moe_every{1, 4096};
constexpr int_range r_seq_len{1, std::int64_t{1} << 20};
constexpr real_range r_capacity_factor{0.0, true, 64.0};
constexpr real_range r_aux_weight{0.0, false, 10.0};
constexpr real_range r_gate_lr_scale{0.0, true, 1000.0};
constexpr real_range r_router_bias{-100.0, false, 100.0};
constexpr int_range r_batch_per_shard{1, std::int64_t{1} << 20};
constexpr int_range r_steps{0, k_trillion};
constexpr real_range r_lr_scale{0.0, true, 1000.0};
constexpr int_range r_warmup{1, k_trillion};
constexpr int_range r_seed{0, k_int64_max};
constexpr real_range r_z_loss{0.0, false, 1.0};
constexpr int_range r_eval_every{0, k_trillion};
constexpr int_range r_eval_batches{1, std::int64_t{1} << 20};
constexpr int_range r_shards{1, 65536};
constexpr int_range r_snapshot_every{1, k_trillion};
constexpr int_range r_checkpoint_every{0, k_trillion};
constexpr int_range r_keep_checkpoints{1, 10000};
constexpr int_range r_heartbeat_ms{10, 600000};
constexpr int_range r_rebalance_every{0, k_trillion};
constexpr int_range r_window{1, 100000};
constexpr real_range r_min_gain{0.0, false, 1.0};
constexpr int_range r_payback_steps{1, k_trillion};

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    const auto u = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", u);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

// Shortest text that reads back to the same double (TOML float syntax: always has '.',
// 'e', "inf" or "nan", so it never reads back as an integer).
std::string format_double(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  std::string s = buf;
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

// How a TOML value reads in a message: the value itself, as the user wrote it.
std::string describe_value(const toml::node& n) {
  if (auto v = n.as_integer()) return std::to_string(v->get());
  if (auto v = n.as_floating_point()) return format_double(v->get());
  if (auto v = n.as_string()) return quote(v->get());
  if (auto v = n.as_boolean()) return v->get() ? "true" : "false";
  if (n.is_array()) return "[...]";
  if (n.is_table()) return "{...}";
  std::ostringstream os;
  if (auto v = n.as_date()) os << *v;
  if (auto v = n.as_time()) os << *v;
  if (auto v = n.as_date_time()) os << *v;
  return os.str();
}

const char* type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::string: return "a string";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::array: return "an array";
    case toml::node_type::table: return "a table";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    default: return "an unknown type";
  }
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + items[i];
  return out;
}

std::string range_text(std::int64_t lo, std::int64_t hi) {
  if (hi == k_int64_max) return "an integer >= " + std::to_string(lo);
  return "an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
}

std::string real_range_text(real_range r) {
  return std::string("a finite number ") + (r.open_low ? "> " : ">= ") + format_double(r.lo) +
         " and <= " + format_double(r.hi);
}

// Reads one [section] of the file; remembers the source so messages can name it.
class section_reader {
 public:
  section_reader(std::string source, std::string section, const toml::table* table)
      : source_(std::move(source)), section_(std::move(section)), table_(table) {}

  [[noreturn]] void fail(const std::string& message) const {
    throw config_error(source_ + ": " + message);
  }

  std::string key_name(std::string_view key) const {
    return section_.empty() ? std::string(key) : section_ + "." + std::string(key);
  }

  // Refuses any key this section does not define, suggesting the nearest known one.
  void refuse_unknown_keys(std::initializer_list<const char*> known) const {
    if (!table_) return;
    for (const auto& [key, node] : *table_) {
      const std::string_view k = key.str();
      bool found = false;
      for (const char* kn : known) found = found || k == kn;
      if (found) continue;
      std::vector<std::string> names;
      std::string nearest;
      // Suggest only close misspellings: a third of the key's letters, at least 2.
      std::size_t best = std::max<std::size_t>(2, k.size() / 3) + 1;
      for (const char* kn : known) {
        names.push_back(kn);
        const std::size_t d = edit_distance(k, kn);
        if (d < best) best = d, nearest = kn;
      }
      std::string message = "unknown key " + key_name(k) + " = " + describe_value(node);
      if (!nearest.empty()) message += " (did you mean " + key_name(nearest) + "?)";
      message += section_.empty() ? "; allowed at the top level: "
                                  : "; allowed keys in [" + section_ + "]: ";
      fail(message + join(names));
    }
  }

  const toml::node* find(const char* key, bool required, const char* what) const {
    const toml::node* n = table_ ? table_->get(key) : nullptr;
    if (!n && required)
      fail("missing key " + key_name(key) + ": every job must set it (" + what + ")");
    return n;
  }

  void get_int(const char* key, std::int64_t& out, int_range r, bool required = false) const {
    const std::int64_t lo = r.lo, hi = r.hi;
    const std::string allowed = range_text(lo, hi);
    const toml::node* n = find(key, required, allowed.c_str());
    if (!n) return;
    const auto* v = n->as_integer();
    if (!v)
      fail(key_name(key) + " = " + describe_value(*n) + " has the wrong type: it is " +
           type_name(*n) + ", expected " + allowed);
    if (v->get() < lo || v->get() > hi)
      fail(key_name(key) + " = " + describe_value(*n) + " is out of range: allowed is " + allowed);
    out = v->get();
  }

  // A float in [lo, hi], or (lo, hi] with open_low; an integer literal is accepted too.
  void get_double(const char* key, double& out, real_range r) const {
    const double lo = r.lo, hi = r.hi;
    const bool open_low = r.open_low;
    const std::string allowed = real_range_text(r);
    const toml::node* n = find(key, false, allowed.c_str());
    if (!n) return;
    double value = 0;
    if (const auto* f = n->as_floating_point()) {
      value = f->get();
    } else if (const auto* i = n->as_integer()) {
      value = static_cast<double>(i->get());
    } else {
      fail(key_name(key) + " = " + describe_value(*n) + " has the wrong type: it is " +
           type_name(*n) + ", expected " + allowed);
    }
    const bool low_ok = open_low ? value > lo : value >= lo;
    if (!std::isfinite(value) || !low_ok || value > hi)
      fail(key_name(key) + " = " + describe_value(*n) + " is out of range: allowed is " + allowed);
    out = value;
  }

  void get_string(const char* key, std::string& out) const {
    const toml::node* n = find(key, false, "a string");
    if (!n) return;
    const auto* v = n->as_string();
    if (!v)
      fail(key_name(key) + " = " + describe_value(*n) + " has the wrong type: it is " +
           type_name(*n) + ", expected a string");
    out = v->get();
  }

  void get_bool(const char* key, bool& out) const {
    const toml::node* n = find(key, false, "true or false");
    if (!n) return;
    const auto* v = n->as_boolean();
    if (!v)
      fail(key_name(key) + " = " + describe_value(*n) + " has the wrong type: it is " +
           type_name(*n) + ", expected true or false");
    out = v->get();
  }

  template <class Enum>
  void get_enum(const char* key, Enum& out,
                std::initializer_list<std::pair<const char*, Enum>> choices) const {
    std::vector<std::string> names;
    for (const auto& c : choices) names.push_back(quote(c.first));
    const std::string allowed = "one of " + join(names);
    const toml::node* n = find(key, false, allowed.c_str());
    if (!n) return;
    const auto* v = n->as_string();
    if (!v)
      fail(key_name(key) + " = " + describe_value(*n) + " has the wrong type: it is " +
           type_name(*n) + ", expected " + allowed);
    for (const auto& c : choices) {
      if (v->get() == c.first) {
        out = c.second;
        return;
      }
    }
    fail(key_name(key) + " = " + describe_value(*n) + " is not allowed: expected " + allowed);
  }

 private:
  std::string source_;
  std::string section_;
  const toml::table* table_;
};

const toml::table* section_table(const toml::table& root, const char* name,
                                 const section_reader& top) {
  const toml::node* n = root.get(name);
  if (!n) return nullptr;
  if (!n->is_table())
    top.fail(std::string(name) + " = " + describe_value(*n) + " has the wrong type: it is " +
             type_name(*n) + ", expected a table [" + name + "]");
  return n->as_table();
}

std::string experts_message(std::int64_t experts) {
  return "model.experts = " + std::to_string(experts) +
         " is out of range: an MoE model needs at least 2 experts (top-2 gating) and at most " +
         std::to_string(r_experts.hi) + "; use 0 for a dense model";
}

std::string stem_of(const std::string& source_name) {
  return std::filesystem::path(source_name).stem().string();
}

// The testing options' gate: GLAM_TESTING=1 in this process's environment (as for
// `glam worker --slow-factor`).
bool testing_allowed() {
  const char* v = std::getenv("GLAM_TESTING");
  return v && std::string(v) == "1";
}

// The checks that involve more than one key or that a config built in code could break;
// the parser has already checked each value's type and range.

void check_values(const config& c, const std::string& source) {
  // Re-running the per-key ranges here keeps validate_config honest for configs built in
  // code; the parser's messages come first, so these only fire for such configs.
  const auto fail = [&](const std::string& m) { throw config_error(source + ": " + m); };
  const auto in_range = [&](const char* key, std::int64_t v, int_range r) {
    if (v < r.lo || v > r.hi)
      fail(std::string(key) + " = " + std::to_string(v) + " is out of range: allowed is " +
           range_text(r.lo, r.hi));
  };
  const auto real_in_range = [&](const char* key, double v, real_range r) {
    const bool low_ok = r.open_low ? v > r.lo : v >= r.lo;
    if (!std::isfinite(v) || !low_ok || v > r.hi)
      fail(std::string(key) + " = " + format_double(v) + " is out of range: allowed is " +
           real_range_text(r));
  };
  const model_config& m = c.model;
  if (auto why = name_problem(c.name); !why.empty()) fail("name = " + quote(c.name) + " is not allowed: " + why);
  in_range("model.vocab_size", m.vocab_size, r_vocab_size);
  in_range("model.layers", m.layers, r_layers);
  in_range("model.d_model", m.d_model, r_d_model);
  in_range("model.d_ff", m.d_ff, r_d_ff);
  in_range("model.heads", m.heads, r_heads);
  in_range("model.d_head", m.d_head, r_d_head);
  if (m.experts == 1 || m.experts < r_experts.lo || m.experts > r_experts.hi)
    fail(experts_message(m.experts));
  in_range("model.moe_every", m.moe_every, r_moe_every);
  in_range("model.seq_len", m.seq_len, r_seq_len);
  const std::int64_t attention_width = m.heads * m.d_head;
  if (attention_width > 4 * m.d_model)
    fail("model.heads x model.d_head = " + std::to_string(m.heads) + " x " +
         std::to_string(m.d_head) + " = " + std::to_string(attention_width) +
         " is inconsistent with model.d_model = " + std::to_string(m.d_model) +
         ": attention projects d_model to heads*d_head and back, and glam allows at most "
         "4 x d_model = " + std::to_string(4 * m.d_model) +
         "; lower heads or d_head (usually heads*d_head = d_model)");
  real_in_range("moe.capacity_factor", c.moe.capacity_factor, r_capacity_factor);
  real_in_range("moe.aux_weight", c.moe.aux_weight, r_aux_weight);
  real_in_range("moe.gate_lr_scale", c.moe.gate_lr_scale, r_gate_lr_scale);
  in_range("train.batch_per_shard", c.train.batch_per_shard, r_batch_per_shard);
  in_range("train.steps", c.train.steps, r_steps);
  real_in_range("train.lr_scale", c.train.lr_scale, r_lr_scale);
  in_range("train.warmup", c.train.warmup, r_warmup);
  if (c.train.seed > static_cast<std::uint64_t>(r_seed.hi))
    fail("train.seed = " + std::to_string(c.train.seed) + " is out of range: allowed is " +
         range_text(r_seed.lo, r_seed.hi));
  real_in_range("train.z_loss", c.train.z_loss, r_z_loss);
  in_range("train.eval_every", c.train.eval_every, r_eval_every);
  in_range("train.eval_batches", c.train.eval_batches, r_eval_batches);
  if (c.data.dir.empty())
    fail("data.dir = \"\" is empty: give the folder that `glam data prepare` wrote");
  in_range("cluster.shards", c.cluster.shards, r_shards);
  in_range("fault.snapshot_every", c.fault.snapshot_every, r_snapshot_every);
  in_range("fault.checkpoint_every", c.fault.checkpoint_every, r_checkpoint_every);
  in_range("fault.keep_checkpoints", c.fault.keep_checkpoints, r_keep_checkpoints);
  in_range("fault.heartbeat_ms", c.fault.heartbeat_ms, r_heartbeat_ms);
  in_range("placement.rebalance_every", c.placement.rebalance_every, r_rebalance_every);
  in_range("placement.window", c.placement.window, r_window);
  real_in_range("placement.min_gain", c.placement.min_gain, r_min_gain);
  in_range("placement.payback_steps", c.placement.payback_steps, r_payback_steps);
  real_in_range("testing.router_bias", c.testing.router_bias, r_router_bias);
  if (c.testing.any() && !testing_allowed())
    fail("testing.router_bias = " + format_double(c.testing.router_bias) +
         " is a testing option (it skews the router on purpose): set GLAM_TESTING=1 in the environment of every "
         "glam process that reads this config, or remove the [testing] section");
}

}  // namespace

const char* to_string(expert_activation a) {
  return a == expert_activation::relu ? "relu" : "gated_gelu";
}

const char* to_string(second_expert_policy p) {
  return p == second_expert_policy::all ? "all" : "random";
}

const char* to_string(lr_schedule_kind) { return "rsqrt"; }

std::string name_problem(const std::string& name) {
  if (name.empty()) return "a name needs at least one character";
  if (name.size() > 64) return "a name has at most 64 characters (this one has " + std::to_string(name.size()) + ")";
  if (name == "." || name == "..") return "'.' and '..' name directories, not jobs or workers";
  for (char ch : name)
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '.' && ch != '_' && ch != '-')
      return "a name may hold only letters, digits, '.', '_' and '-'";
  return {};
}

void validate_config(const config& c) { check_values(c, c.name.empty() ? "config" : c.name); }

config parse_config_string(const std::string& toml_text, const std::string& source_name) {
  toml::table root;
  try {
    root = toml::parse(toml_text, source_name);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    throw config_error(source_name + ":" + std::to_string(where.line) + ":" +
                       std::to_string(where.column) + ": not valid TOML: " +
                       std::string(e.description()));
  }

  const section_reader top(source_name, "", &root);
  top.refuse_unknown_keys({"name", "model", "moe", "train", "data", "cluster", "fault", "placement", "testing"});

  config c;
  c.name = stem_of(source_name);
  top.get_string("name", c.name);

  const section_reader model(source_name, "model", section_table(root, "model", top));
  model.refuse_unknown_keys({"vocab_size", "layers", "d_model", "d_ff", "heads", "d_head",
                             "experts", "moe_every", "expert_activation", "seq_len"});
  model_config& m = c.model;
  model.get_int("vocab_size", m.vocab_size, r_vocab_size, true);
  model.get_int("layers", m.layers, r_layers, true);
  model.get_int("d_model", m.d_model, r_d_model, true);
  model.get_int("d_ff", m.d_ff, r_d_ff, true);
  model.get_int("heads", m.heads, r_heads, true);
  model.get_int("d_head", m.d_head, r_d_head, true);
  model.get_int("experts", m.experts, r_experts, true);
  if (m.experts == 1) model.fail(experts_message(m.experts));
  m.moe_every = 2;
  model.get_int("moe_every", m.moe_every, r_moe_every);
  m.activation = expert_activation::relu;
  model.get_enum("expert_activation", m.activation,
                 {{"relu", expert_activation::relu}, {"gated_gelu", expert_activation::gated_gelu}});
  model.get_int("seq_len", m.seq_len, r_seq_len, true);

  const section_reader moe(source_name, "moe", section_table(root, "moe", top));
  moe.refuse_unknown_keys({"capacity_factor", "second_expert_policy", "aux_weight", "gate_lr_scale"});
  moe.get_double("capacity_factor", c.moe.capacity_factor, r_capacity_factor);
  moe.get_enum("second_expert_policy", c.moe.policy,
               {{"all", second_expert_policy::all}, {"random", second_expert_policy::random}});
  moe.get_double("aux_weight", c.moe.aux_weight, r_aux_weight);
  moe.get_double("gate_lr_scale", c.moe.gate_lr_scale, r_gate_lr_scale);

  const section_reader train(source_name, "train", section_table(root, "train", top));
  train.refuse_unknown_keys({"batch_per_shard", "steps", "lr_schedule", "lr_scale", "warmup",
                             "seed", "z_loss", "eval_every", "eval_batches"});
  train_config& t = c.train;
  train.get_int("batch_per_shard", t.batch_per_shard, r_batch_per_shard);
  train.get_int("steps", t.steps, r_steps);
  train.get_enum("lr_schedule", t.lr_schedule, {{"rsqrt", lr_schedule_kind::rsqrt}});
  train.get_double("lr_scale", t.lr_scale, r_lr_scale);
  train.get_int("warmup", t.warmup, r_warmup);
  std::int64_t seed = static_cast<std::int64_t>(t.seed);
  train.get_int("seed", seed, r_seed);
  t.seed = static_cast<std::uint64_t>(seed);
  train.get_double("z_loss", t.z_loss, r_z_loss);
  train.get_int("eval_every", t.eval_every, r_eval_every);
  train.get_int("eval_batches", t.eval_batches, r_eval_batches);

  const section_reader data(source_name, "data", section_table(root, "data", top));
  data.refuse_unknown_keys({"dir", "synthetic"});
  data.get_string("dir", c.data.dir);
  data.get_bool("synthetic", c.data.synthetic);

  const section_reader cluster(source_name, "cluster", section_table(root, "cluster", top));
  cluster.refuse_unknown_keys({"shards"});
  cluster.get_int("shards", c.cluster.shards, r_shards);

  const section_reader fault(source_name, "fault", section_table(root, "fault", top));
  fault.refuse_unknown_keys({"snapshot_every", "checkpoint_every", "keep_checkpoints",
                             "heartbeat_ms"});
  fault.get_int("snapshot_every", c.fault.snapshot_every, r_snapshot_every);
  fault.get_int("checkpoint_every", c.fault.checkpoint_every, r_checkpoint_every);
  fault.get_int("keep_checkpoints", c.fault.keep_checkpoints, r_keep_checkpoints);
  fault.get_int("heartbeat_ms", c.fault.heartbeat_ms, r_heartbeat_ms);

  const section_reader placement(source_name, "placement", section_table(root, "placement", top));
  placement.refuse_unknown_keys({"rebalance_every", "window", "min_gain", "payback_steps"});
  placement.get_int("rebalance_every", c.placement.rebalance_every, r_rebalance_every);
  placement.get_int("window", c.placement.window, r_window);
  placement.get_double("min_gain", c.placement.min_gain, r_min_gain);
  placement.get_int("payback_steps", c.placement.payback_steps, r_payback_steps);

  const section_reader testing(source_name, "testing", section_table(root, "testing", top));
  testing.refuse_unknown_keys({"router_bias"});
  testing.get_double("router_bias", c.testing.router_bias, r_router_bias);

  check_values(c, source_name);
  return c;
}

config load_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw config_error(path + ": cannot open the config file; give the path to a job's "
                       ".toml file (see configs/)");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw config_error(path + ": cannot read the config file");
  return parse_config_string(text.str(), path);
}

void validate_against_data(const config& c, std::int64_t data_vocab_size,
                           std::int64_t longest_trainable_sequence) {
  const std::string where = c.name + ": ";
  if (c.model.vocab_size != data_vocab_size)
    throw config_error(where + "model.vocab_size = " + std::to_string(c.model.vocab_size) +
                       " does not match the data in data.dir = " + quote(c.data.dir) +
                       ", whose vocabulary has " + std::to_string(data_vocab_size) +
                       " tokens; set model.vocab_size = " + std::to_string(data_vocab_size) +
                       " or prepare the data with a " + std::to_string(c.model.vocab_size) +
                       "-token vocabulary");
  if (c.model.seq_len > longest_trainable_sequence)
    throw config_error(where + "model.seq_len = " + std::to_string(c.model.seq_len) +
                       " is longer than the data in data.dir = " + quote(c.data.dir) +
                       " can give: its longest trainable sequence is " +
                       std::to_string(longest_trainable_sequence) +
                       " tokens; set model.seq_len <= " +
                       std::to_string(longest_trainable_sequence) + " or prepare more text");
}

std::uint64_t model_config_hash(const config& c) {
  // FNV-1a over a canonical text of the fields that fix the parameters' shapes and the
  // function the model computes. seq_len is left out: no parameter depends on it, so a
  // checkpoint serves any length. The "v1" tag changes if the canonical text ever does.
  const model_config& m = c.model;
  std::string canonical = "glam-model-v1";
  const auto add = [&](const char* key, const std::string& value) {
    canonical += ';';
    canonical += key;
    canonical += '=';
    canonical += value;
  };
  add("vocab_size", std::to_string(m.vocab_size));
  add("layers", std::to_string(m.layers));
  add("d_model", std::to_string(m.d_model));
  add("d_ff", std::to_string(m.d_ff));
  add("heads", std::to_string(m.heads));
  add("d_head", std::to_string(m.d_head));
  add("experts", std::to_string(m.experts));
  // moe_every changes nothing in a dense model; keep its hash independent of it.
  add("moe_every", std::to_string(m.is_moe() ? m.moe_every : 0));
  add("expert_activation", m.is_moe() ? to_string(m.activation) : "none");
  // Only when set, so that every hash without it stays what it was.
  if (c.testing.router_bias != 0) add("router_bias", format_double(c.testing.router_bias));
  std::uint64_t h = 14695981039346656037ull;
  for (unsigned char ch : canonical) {
    h ^= ch;
    h *= 1099511628211ull;
  }
  return h;
}

std::string to_toml(const config& c) {
  std::ostringstream os;
  const auto i = [](std::int64_t v) { return std::to_string(v); };
  os << "name = " << quote(c.name) << "\n\n";
  os << "[model]\n"
     << "vocab_size = " << i(c.model.vocab_size) << "\n"
     << "layers = " << i(c.model.layers) << "\n"
     << "d_model = " << i(c.model.d_model) << "\n"
     << "d_ff = " << i(c.model.d_ff) << "\n"
     << "heads = " << i(c.model.heads) << "\n"
     << "d_head = " << i(c.model.d_head) << "\n"
     << "experts = " << i(c.model.experts) << "\n"
     << "moe_every = " << i(c.model.moe_every) << "\n"
     << "expert_activation = " << quote(to_string(c.model.activation)) << "\n"
     << "seq_len = " << i(c.model.seq_len) << "\n\n";
  os << "[moe]\n"
     << "capacity_factor = " << format_double(c.moe.capacity_factor) << "\n"
     << "second_expert_policy = " << quote(to_string(c.moe.policy)) << "\n"
     << "aux_weight = " << format_double(c.moe.aux_weight) << "\n"
     << "gate_lr_scale = " << format_double(c.moe.gate_lr_scale) << "\n\n";
  os << "[train]\n"
     << "batch_per_shard = " << i(c.train.batch_per_shard) << "\n"
     << "steps = " << i(c.train.steps) << "\n"
     << "lr_schedule = " << quote(to_string(c.train.lr_schedule)) << "\n"
     << "lr_scale = " << format_double(c.train.lr_scale) << "\n"
     << "warmup = " << i(c.train.warmup) << "\n"
     << "seed = " << c.train.seed << "\n"
     << "z_loss = " << format_double(c.train.z_loss) << "\n"
     << "eval_every = " << i(c.train.eval_every) << "\n"
     << "eval_batches = " << i(c.train.eval_batches) << "\n\n";
  os << "[data]\n"
     << "dir = " << quote(c.data.dir) << "\n"
     << "synthetic = " << (c.data.synthetic ? "true" : "false") << "\n\n";
  os << "[cluster]\n"
     << "shards = " << i(c.cluster.shards) << "\n\n";
  os << "[fault]\n"
     << "snapshot_every = " << i(c.fault.snapshot_every) << "\n"
     << "checkpoint_every = " << i(c.fault.checkpoint_every) << "\n"
     << "keep_checkpoints = " << i(c.fault.keep_checkpoints) << "\n"
     << "heartbeat_ms = " << i(c.fault.heartbeat_ms) << "\n\n";
  os << "[placement]\n"
     << "rebalance_every = " << i(c.placement.rebalance_every) << "\n"
     << "window = " << i(c.placement.window) << "\n"
     << "min_gain = " << format_double(c.placement.min_gain) << "\n"
     << "payback_steps = " << i(c.placement.payback_steps) << "\n";
  if (c.testing.any())
    os << "\n[testing]\n"
       << "router_bias = " << format_double(c.testing.router_bias) << "\n";
  return os.str();
}

}  // namespace glam
