// Config parsing, every validation error (one table row per bad value), the TOML round trip,
// the model hash and the checks against the data.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "configs/config.hpp"

namespace {

using glam::config;
using glam::config_error;

const std::string k_configs_dir = std::string(GLAM_SOURCE_DIR) + "/configs";

// A valid job as section -> key -> TOML value text; rows of the table below override it.
using toml_doc = std::map<std::string, std::map<std::string, std::string>>;

toml_doc base_doc() {
  return {
      {"model",
       {{"vocab_size", "2048"}, {"layers", "2"}, {"d_model", "128"}, {"d_ff", "512"},
        {"heads", "4"}, {"d_head", "32"}, {"experts", "4"}, {"moe_every", "2"},
        {"expert_activation", "\"relu\""}, {"seq_len", "64"}}},
      {"moe", {{"capacity_factor", "2.0"}, {"second_expert_policy", "\"all\""},
               {"aux_weight", "0.01"}, {"gate_lr_scale", "0.25"}}},
      {"train", {{"batch_per_shard", "8"}, {"steps", "300"}, {"lr_schedule", "\"rsqrt\""},
                 {"lr_scale", "1.0"}, {"warmup", "50"}, {"seed", "1"}, {"z_loss", "0.0"},
                 {"eval_every", "50"}, {"eval_batches", "4"}}},
      {"data", {{"dir", "\"demo/data\""}}},
      {"cluster", {{"shards", "2"}}},
      {"fault", {{"snapshot_every", "1"}, {"checkpoint_every", "0"}, {"keep_checkpoints", "3"},
                 {"heartbeat_ms", "500"}}},
  };
}

std::string render(const toml_doc& doc, const std::string& top_level = "") {
  std::string out = top_level;
  for (const auto& [section, keys] : doc) {
    out += "\n[" + section + "]\n";
    for (const auto& [key, value] : keys) out += key + " = " + value + "\n";
  }
  return out;
}

// Parses and returns the error message, or nullopt when the text was accepted.
std::optional<std::string> parse_error_of(const std::string& text) {
  try {
    glam::parse_config_string(text, "job.toml");
  } catch (const config_error& e) {
    return std::string(e.what());
  }
  return std::nullopt;
}

TEST(ConfigParse, BaseDocumentIsValidAndReadsEveryField) {
  const config c = glam::parse_config_string(render(base_doc()), "dir/job.toml");
  EXPECT_EQ(c.name, "job");
  EXPECT_EQ(c.model.vocab_size, 2048);
  EXPECT_EQ(c.model.layers, 2);
  EXPECT_EQ(c.model.d_model, 128);
  EXPECT_EQ(c.model.d_ff, 512);
  EXPECT_EQ(c.model.heads, 4);
  EXPECT_EQ(c.model.d_head, 32);
  EXPECT_EQ(c.model.experts, 4);
  EXPECT_EQ(c.model.moe_every, 2);
  EXPECT_EQ(c.model.activation, glam::expert_activation::relu);
  EXPECT_EQ(c.model.seq_len, 64);
  EXPECT_EQ(c.moe.capacity_factor, 2.0);
  EXPECT_EQ(c.moe.policy, glam::second_expert_policy::all);
  EXPECT_EQ(c.moe.aux_weight, 0.01);
  EXPECT_EQ(c.moe.gate_lr_scale, 0.25);
  EXPECT_EQ(c.train.batch_per_shard, 8);
  EXPECT_EQ(c.train.steps, 300);
  EXPECT_EQ(c.train.lr_schedule, glam::lr_schedule_kind::rsqrt);
  EXPECT_EQ(c.train.lr_scale, 1.0);
  EXPECT_EQ(c.train.warmup, 50);
  EXPECT_EQ(c.train.seed, 1u);
  EXPECT_EQ(c.train.z_loss, 0.0);
  EXPECT_EQ(c.train.eval_every, 50);
  EXPECT_EQ(c.train.eval_batches, 4);
  EXPECT_EQ(c.data.dir, "demo/data");
  EXPECT_EQ(c.cluster.shards, 2);
  EXPECT_EQ(c.fault.snapshot_every, 1);
  EXPECT_EQ(c.fault.checkpoint_every, 0);
  EXPECT_EQ(c.fault.keep_checkpoints, 3);
  EXPECT_EQ(c.fault.heartbeat_ms, 500);
}

TEST(ConfigParse, OptionalSectionsTakeDefaultsAndValuesOverride) {
  toml_doc doc;
  doc["model"] = base_doc()["model"];
  doc["model"].erase("moe_every");
  doc["model"].erase("expert_activation");
  doc["moe"] = {{"capacity_factor", "3"}, {"second_expert_policy", "\"random\""}};
  doc["train"] = {{"seed", "9223372036854775807"}};
  const config c = glam::parse_config_string(render(doc, "name = \"other\"\n"), "job.toml");
  const config defaults;
  EXPECT_EQ(c.name, "other");
  EXPECT_EQ(c.model.moe_every, 2);
  EXPECT_EQ(c.model.activation, glam::expert_activation::relu);
  EXPECT_EQ(c.moe.capacity_factor, 3.0);  // an integer literal is a valid float
  EXPECT_EQ(c.moe.policy, glam::second_expert_policy::random);
  EXPECT_EQ(c.moe.aux_weight, defaults.moe.aux_weight);
  EXPECT_EQ(c.moe.gate_lr_scale, 1.0);  // the default: the gate steps like every other parameter
  EXPECT_EQ(c.train.seed, 9223372036854775807ull);
  EXPECT_EQ(c.train.steps, defaults.train.steps);
  EXPECT_EQ(c.data.dir, defaults.data.dir);
  EXPECT_EQ(c.cluster.shards, defaults.cluster.shards);
  EXPECT_EQ(c.fault.heartbeat_ms, defaults.fault.heartbeat_ms);
}

TEST(ConfigParse, DenseModelNeedsNoMoeSection) {
  toml_doc doc = base_doc();
  doc.erase("moe");
  doc["model"]["experts"] = "0";
  doc["model"]["expert_activation"] = "\"gated_gelu\"";
  const config c = glam::parse_config_string(render(doc), "dense.toml");
  EXPECT_FALSE(c.model.is_moe());
  EXPECT_EQ(c.model.moe_layers(), 0);
  EXPECT_FALSE(c.model.is_moe_layer(0));
}

// One row per refused value: where to put it, and what the message must contain (the key
// and the value given, and where it helps, what is allowed).
struct bad_value {
  std::string section;  // "" for a top-level key
  std::string key;
  std::optional<std::string> value;  // nullopt: remove the key
  std::vector<std::string> expected;
};

void PrintTo(const bad_value& row, std::ostream* os) {
  *os << (row.section.empty() ? "" : row.section + ".") << row.key << " = "
      << row.value.value_or("(removed)");
}

class ConfigRefuses : public ::testing::TestWithParam<bad_value> {};

TEST_P(ConfigRefuses, NamesKeyAndValue) {
  const bad_value& row = GetParam();
  toml_doc doc = base_doc();
  std::string top;
  if (row.section.empty()) {
    doc.erase(row.key);
    top = row.key + " = " + *row.value + "\n";
  } else if (row.value) {
    doc[row.section][row.key] = *row.value;
  } else {
    doc[row.section].erase(row.key);
  }
  const auto message = parse_error_of(render(doc, top));
  ASSERT_TRUE(message.has_value()) << "accepted " << row.section << "." << row.key << " = "
                                   << row.value.value_or("(removed)");
  for (const std::string& part : row.expected)
    EXPECT_NE(message->find(part), std::string::npos)
        << "message: " << *message << "\nmissing: " << part;
  EXPECT_EQ(message->rfind("job.toml: ", 0), 0u) << *message;
}

const bad_value k_bad_values[] = {
    // unknown keys and tables
    {"model", "d_modle", "128", {"unknown key model.d_modle = 128", "did you mean model.d_model"}},
    {"train", "learning_rate", "0.1", {"unknown key train.learning_rate = 0.1", "lr_scale"}},
    {"moe", "top_k", "2", {"unknown key moe.top_k = 2", "capacity_factor"}},
    {"moe", "router_lr_scale", "0.1", {"unknown key moe.router_lr_scale = 0.1",
                                       "did you mean moe.gate_lr_scale"}},
    {"data", "path", "\"x\"", {"unknown key data.path = \"x\"", "dir"}},
    {"cluster", "workers", "4", {"unknown key cluster.workers = 4", "shards"}},
    {"fault", "heartbeat", "500", {"unknown key fault.heartbeat = 500",
                                   "did you mean fault.heartbeat_ms"}},
    {"optimizer", "beta1", "0.0", {"unknown key optimizer", "allowed at the top level"}},
    {"", "nmae", "\"x\"", {"unknown key nmae = \"x\"", "did you mean name"}},
    // wrong types
    {"model", "layers", "\"2\"", {"model.layers = \"2\"", "wrong type", "a string",
                                  "expected an integer"}},
    {"model", "layers", "2.5", {"model.layers = 2.5", "wrong type", "a float"}},
    {"model", "d_model", "true", {"model.d_model = true", "wrong type", "a boolean"}},
    {"model", "seq_len", "[64]", {"model.seq_len = [...]", "an array"}},
    {"model", "expert_activation", "1", {"model.expert_activation = 1", "wrong type",
                                         "\"relu\", \"gated_gelu\""}},
    {"moe", "capacity_factor", "\"2\"", {"moe.capacity_factor = \"2\"", "wrong type"}},
    {"train", "seed", "1.5", {"train.seed = 1.5", "wrong type"}},
    {"train", "lr_scale", "\"1\"", {"train.lr_scale = \"1\"", "wrong type"}},
    {"data", "dir", "5", {"data.dir = 5", "wrong type", "expected a string"}},
    {"fault", "heartbeat_ms", "1979-05-27", {"fault.heartbeat_ms = 1979-05-27", "a date"}},
    {"", "name", "3", {"name = 3", "wrong type", "expected a string"}},
    {"", "model", "3", {"model = 3", "wrong type", "expected a table [model]"}},
    // enums
    {"model", "expert_activation", "\"gelu\"", {"model.expert_activation = \"gelu\"",
                                                "\"relu\", \"gated_gelu\""}},
    {"moe", "second_expert_policy", "\"top1\"", {"moe.second_expert_policy = \"top1\"",
                                                 "\"all\", \"random\""}},
    {"train", "lr_schedule", "\"cosine\"", {"train.lr_schedule = \"cosine\"", "\"rsqrt\""}},
    // out of range: [model]
    {"model", "vocab_size", "1", {"model.vocab_size = 1", "from 2 to 2147483648"}},
    {"model", "vocab_size", "2147483649", {"model.vocab_size = 2147483649", "out of range"}},
    {"model", "layers", "0", {"model.layers = 0", "from 1 to 4096"}},
    {"model", "layers", "-3", {"model.layers = -3", "out of range"}},
    {"model", "d_model", "0", {"model.d_model = 0", "out of range"}},
    {"model", "d_ff", "0", {"model.d_ff = 0", "out of range"}},
    {"model", "heads", "0", {"model.heads = 0", "out of range"}},
    {"model", "d_head", "0", {"model.d_head = 0", "out of range"}},
    {"model", "experts", "1", {"model.experts = 1", "at least 2 experts", "0 for a dense"}},
    {"model", "experts", "-1", {"model.experts = -1", "out of range"}},
    {"model", "experts", "4096", {"model.experts = 4096", "out of range"}},
    {"model", "moe_every", "0", {"model.moe_every = 0", "out of range"}},
    {"model", "seq_len", "0", {"model.seq_len = 0", "out of range"}},
    {"model", "heads", "32",
     {"model.heads x model.d_head = 32 x 32 = 1024", "model.d_model = 128", "4 x d_model = 512"}},
    // out of range: [moe]
    {"moe", "capacity_factor", "0.0", {"moe.capacity_factor = 0.0", "> 0.0"}},
    {"moe", "capacity_factor", "-1.5", {"moe.capacity_factor = -1.5", "out of range"}},
    {"moe", "capacity_factor", "nan", {"moe.capacity_factor = nan", "finite"}},
    {"moe", "capacity_factor", "inf", {"moe.capacity_factor = inf", "finite"}},
    {"moe", "aux_weight", "-0.01", {"moe.aux_weight = -0.01", ">= 0.0"}},
    {"moe", "gate_lr_scale", "0", {"moe.gate_lr_scale = 0", "> 0.0"}},
    {"moe", "gate_lr_scale", "-0.1", {"moe.gate_lr_scale = -0.1", "out of range"}},
    {"moe", "gate_lr_scale", "1001", {"moe.gate_lr_scale = 1001", "out of range"}},
    {"moe", "gate_lr_scale", "nan", {"moe.gate_lr_scale = nan", "finite"}},
    {"moe", "gate_lr_scale", "\"0.1\"", {"moe.gate_lr_scale = \"0.1\"", "wrong type"}},
    // out of range: [train]
    {"train", "batch_per_shard", "0", {"train.batch_per_shard = 0", "out of range"}},
    {"train", "steps", "-1", {"train.steps = -1", "out of range"}},
    {"train", "lr_scale", "0", {"train.lr_scale = 0", "> 0.0"}},
    {"train", "warmup", "0", {"train.warmup = 0", "from 1 to"}},
    {"train", "seed", "-1", {"train.seed = -1", "out of range"}},
    {"train", "z_loss", "-0.0001", {"train.z_loss = -0.0001", "out of range"}},
    {"train", "eval_every", "-5", {"train.eval_every = -5", "out of range"}},
    {"train", "eval_batches", "0", {"train.eval_batches = 0", "out of range"}},
    // [data], [cluster], [fault], name
    {"data", "dir", "\"\"", {"data.dir = \"\"", "empty"}},
    {"cluster", "shards", "0", {"cluster.shards = 0", "from 1 to 65536"}},
    {"fault", "snapshot_every", "0", {"fault.snapshot_every = 0", "out of range"}},
    {"fault", "checkpoint_every", "-1", {"fault.checkpoint_every = -1", "out of range"}},
    {"fault", "keep_checkpoints", "0", {"fault.keep_checkpoints = 0", "out of range"}},
    {"fault", "heartbeat_ms", "5", {"fault.heartbeat_ms = 5", "from 10 to 600000"}},
    {"placement", "rebalance_every", "-1", {"placement.rebalance_every = -1", "out of range"}},
    {"placement", "window", "0", {"placement.window = 0", "out of range"}},
    {"placement", "min_gain", "1.5", {"placement.min_gain = 1.5", "out of range"}},
    {"placement", "payback_steps", "0", {"placement.payback_steps = 0", "out of range"}},
    {"placement", "rebalance", "3", {"unknown key placement.rebalance = 3"}},
    {"", "name", "\"\"", {"name = \"\"", "at least one character"}},
    {"", "name", "\"a/b\"", {"name = \"a/b\"", "only letters, digits"}},
    {"", "name", "\"..\"", {"name = \"..\"", "name directories"}},
    {"", "name", "\".\"", {"name = \".\"", "name directories"}},
    {"", "name", "\"" + std::string(300, 'n') + "\"", {"at most 64 characters (this one has 300)"}},
    {"", "name", "\"caf\u00e9\"", {"only letters, digits"}},
    // missing required keys
    {"model", "d_model", std::nullopt, {"missing key model.d_model", "an integer from 1"}},
    {"model", "experts", std::nullopt, {"missing key model.experts"}},
    {"model", "seq_len", std::nullopt, {"missing key model.seq_len"}},
};

INSTANTIATE_TEST_SUITE_P(Table, ConfigRefuses, ::testing::ValuesIn(k_bad_values));

TEST(ConfigParse, MissingModelSectionIsRefused) {
  toml_doc doc = base_doc();
  doc.erase("model");
  const auto message = parse_error_of(render(doc));
  ASSERT_TRUE(message);
  EXPECT_NE(message->find("missing key model.vocab_size"), std::string::npos) << *message;
}

TEST(ConfigParse, TomlSyntaxErrorNamesTheLine) {
  const auto message = parse_error_of("[model]\nlayers = = 2\n");
  ASSERT_TRUE(message);
  EXPECT_NE(message->find("job.toml:2:"), std::string::npos) << *message;
  EXPECT_NE(message->find("not valid TOML"), std::string::npos) << *message;
}

TEST(ConfigParse, DuplicateKeyIsRefused) {
  std::string text = render(base_doc());
  text += "[cluster]\nshards = 3\n";  // the table [cluster] a second time
  EXPECT_TRUE(parse_error_of(text));
}

TEST(ConfigLoad, MissingFileNamesThePath) {
  try {
    glam::load_config("no/such/job.toml");
    FAIL() << "loaded a missing file";
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("no/such/job.toml"), std::string::npos) << e.what();
  }
}

TEST(ConfigLoad, EveryShippedConfigLoadsUnderItsStem) {
  std::vector<std::string> stems;
  for (const auto& entry : std::filesystem::directory_iterator(k_configs_dir)) {
    if (entry.path().extension() != ".toml") continue;
    const config c = glam::load_config(entry.path().string());
    EXPECT_EQ(c.name, entry.path().stem().string());
    stems.push_back(c.name);
  }
  for (const char* expected :
       {"glam-0.1b-dense", "glam-0.1b-64e", "glam-1.7b-dense", "glam-1.7b-64e", "glam-8b-dense",
        "glam-8b-64e", "glam-137b-dense", "glam-64b-64e", "glam-tiny", "glam-small"})
    EXPECT_NE(std::find(stems.begin(), stems.end(), expected), stems.end()) << expected;
}

TEST(ConfigLoad, TinyAndSmallAreTheAgreedShapes) {
  const config tiny = glam::load_config(k_configs_dir + "/glam-tiny.toml");
  EXPECT_EQ(tiny.model.vocab_size, 2048);
  EXPECT_EQ(tiny.model.layers, 2);
  EXPECT_EQ(tiny.model.d_model, 128);
  EXPECT_EQ(tiny.model.d_ff, 512);
  EXPECT_EQ(tiny.model.heads, 4);
  EXPECT_EQ(tiny.model.d_head, 32);
  EXPECT_EQ(tiny.model.experts, 4);
  EXPECT_EQ(tiny.model.moe_every, 2);
  EXPECT_EQ(tiny.model.seq_len, 64);
  EXPECT_EQ(tiny.train.batch_per_shard, 8);
  EXPECT_EQ(tiny.cluster.shards, 2);
  EXPECT_EQ(tiny.train.steps, 300);
  EXPECT_EQ(tiny.train.warmup, 50);
  EXPECT_EQ(tiny.train.lr_schedule, glam::lr_schedule_kind::rsqrt);
  EXPECT_EQ(tiny.train.eval_every, 50);
  EXPECT_EQ(tiny.data.dir, "demo/data");
  EXPECT_EQ(tiny.fault.checkpoint_every, 0);

  const config small = glam::load_config(k_configs_dir + "/glam-small.toml");
  EXPECT_EQ(small.model.layers, 8);
  EXPECT_EQ(small.model.d_model, 512);
  EXPECT_EQ(small.model.d_ff, 2048);
  EXPECT_EQ(small.model.heads, 8);
  EXPECT_EQ(small.model.d_head, 64);
  EXPECT_EQ(small.model.experts, 8);
  EXPECT_EQ(small.model.seq_len, 256);
  EXPECT_EQ(small.model.vocab_size, 8192);
  EXPECT_EQ(small.cluster.shards, 2);
  EXPECT_EQ(small.train.batch_per_shard, 8);
  EXPECT_EQ(small.train.steps, 20);
  EXPECT_EQ(small.train.warmup, 100);
  EXPECT_EQ(small.data.dir, "demo/data-8k");
}

void expect_same(const config& a, const config& b) {
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.model.vocab_size, b.model.vocab_size);
  EXPECT_EQ(a.model.layers, b.model.layers);
  EXPECT_EQ(a.model.d_model, b.model.d_model);
  EXPECT_EQ(a.model.d_ff, b.model.d_ff);
  EXPECT_EQ(a.model.heads, b.model.heads);
  EXPECT_EQ(a.model.d_head, b.model.d_head);
  EXPECT_EQ(a.model.experts, b.model.experts);
  EXPECT_EQ(a.model.moe_every, b.model.moe_every);
  EXPECT_EQ(a.model.activation, b.model.activation);
  EXPECT_EQ(a.model.seq_len, b.model.seq_len);
  EXPECT_EQ(a.moe.capacity_factor, b.moe.capacity_factor);  // bitwise: doubles round-trip
  EXPECT_EQ(a.moe.policy, b.moe.policy);
  EXPECT_EQ(a.moe.aux_weight, b.moe.aux_weight);
  EXPECT_EQ(a.moe.gate_lr_scale, b.moe.gate_lr_scale);
  EXPECT_EQ(a.train.batch_per_shard, b.train.batch_per_shard);
  EXPECT_EQ(a.train.steps, b.train.steps);
  EXPECT_EQ(a.train.lr_schedule, b.train.lr_schedule);
  EXPECT_EQ(a.train.lr_scale, b.train.lr_scale);
  EXPECT_EQ(a.train.warmup, b.train.warmup);
  EXPECT_EQ(a.train.seed, b.train.seed);
  EXPECT_EQ(a.train.z_loss, b.train.z_loss);
  EXPECT_EQ(a.train.eval_every, b.train.eval_every);
  EXPECT_EQ(a.train.eval_batches, b.train.eval_batches);
  EXPECT_EQ(a.data.dir, b.data.dir);
  EXPECT_EQ(a.cluster.shards, b.cluster.shards);
  EXPECT_EQ(a.fault.snapshot_every, b.fault.snapshot_every);
  EXPECT_EQ(a.fault.checkpoint_every, b.fault.checkpoint_every);
  EXPECT_EQ(a.fault.keep_checkpoints, b.fault.keep_checkpoints);
  EXPECT_EQ(a.fault.heartbeat_ms, b.fault.heartbeat_ms);
  EXPECT_EQ(a.placement.rebalance_every, b.placement.rebalance_every);
  EXPECT_EQ(a.placement.window, b.placement.window);
  EXPECT_EQ(a.placement.min_gain, b.placement.min_gain);
  EXPECT_EQ(a.placement.payback_steps, b.placement.payback_steps);
  EXPECT_EQ(a.testing.router_bias, b.testing.router_bias);
}

TEST(ConfigToml, EveryShippedConfigRoundTrips) {
  for (const auto& entry : std::filesystem::directory_iterator(k_configs_dir)) {
    if (entry.path().extension() != ".toml") continue;
    SCOPED_TRACE(entry.path().string());
    const config c = glam::load_config(entry.path().string());
    const std::string text = glam::to_toml(c);
    const config back = glam::parse_config_string(text, "elsewhere.toml");
    expect_same(c, back);
    EXPECT_EQ(glam::to_toml(back), text);
  }
}

TEST(ConfigToml, AwkwardValuesRoundTripExactly) {
  config c = glam::parse_config_string(render(base_doc()), "job.toml");
  c.name = "run-7_v2.final";
  c.data.dir = "C:\\data\\\"quoted\"\tdir";
  c.moe.capacity_factor = 1.25;
  c.moe.aux_weight = 0.1 + 0.2;  // not a short decimal
  c.moe.gate_lr_scale = 0.7 / 3.0;
  c.train.lr_scale = 1.0 / 3.0;
  c.train.z_loss = 1e-4;
  c.train.seed = 9223372036854775807ull;
  c.model.activation = glam::expert_activation::gated_gelu;
  c.moe.policy = glam::second_expert_policy::random;
  const config back = glam::parse_config_string(glam::to_toml(c), "x.toml");
  expect_same(c, back);
}

TEST(ConfigValidate, ConfigsBuiltInCodeAreCheckedToo) {
  config c = glam::parse_config_string(render(base_doc()), "job.toml");
  EXPECT_NO_THROW(glam::validate_config(c));
  config wide = c;
  wide.model.heads = 64;
  try {
    glam::validate_config(wide);
    FAIL() << "accepted heads x d_head > 4 x d_model";
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("model.heads x model.d_head = 64 x 32 = 2048"),
              std::string::npos) << e.what();
  }
  config one_expert = c;
  one_expert.model.experts = 1;
  EXPECT_THROW(glam::validate_config(one_expert), config_error);
  config no_warmup = c;
  no_warmup.train.warmup = 0;
  EXPECT_THROW(glam::validate_config(no_warmup), config_error);
  config big_seed = c;
  big_seed.train.seed = 1ull << 63;
  EXPECT_THROW(glam::validate_config(big_seed), config_error);
  EXPECT_THROW(glam::validate_config(config{}), config_error);  // no name
}

TEST(ConfigValidate, HeadsTimesDHeadMayDifferFromDModelUpToFourTimes) {
  toml_doc doc = base_doc();
  doc["model"]["heads"] = "16";  // 16 x 32 = 512 = 4 x 128: the largest allowed
  EXPECT_FALSE(parse_error_of(render(doc)));
  doc["model"]["heads"] = "2";  // 64 < d_model: allowed too
  EXPECT_FALSE(parse_error_of(render(doc)));
}

TEST(ConfigValidate, AgainstData) {
  const config c = glam::parse_config_string(render(base_doc()), "job.toml");
  EXPECT_NO_THROW(glam::validate_against_data(c, 2048, 64));
  EXPECT_NO_THROW(glam::validate_against_data(c, 2048, 10000));
  try {
    glam::validate_against_data(c, 8192, 1000);
    FAIL() << "accepted a vocabulary mismatch";
  } catch (const config_error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("model.vocab_size = 2048"), std::string::npos) << m;
    EXPECT_NE(m.find("8192"), std::string::npos) << m;
    EXPECT_NE(m.find("demo/data"), std::string::npos) << m;
    EXPECT_NE(m.find("set model.vocab_size = 8192"), std::string::npos) << m;
  }
  try {
    glam::validate_against_data(c, 2048, 63);
    FAIL() << "accepted seq_len over the data's longest sequence";
  } catch (const config_error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("model.seq_len = 64"), std::string::npos) << m;
    EXPECT_NE(m.find("63"), std::string::npos) << m;
    EXPECT_NE(m.find("set model.seq_len <= 63"), std::string::npos) << m;
  }
}

TEST(ConfigHash, DependsOnEveryModelFieldAndNothingElse) {
  const config c = glam::parse_config_string(render(base_doc()), "job.toml");
  const std::uint64_t h = glam::model_config_hash(c);
  EXPECT_EQ(h, glam::model_config_hash(c));

  const auto differs = [&](auto change) {
    config other = c;
    change(other);
    return glam::model_config_hash(other) != h;
  };
  EXPECT_TRUE(differs([](config& x) { x.model.vocab_size += 1; }));
  EXPECT_TRUE(differs([](config& x) { x.model.layers += 1; }));
  EXPECT_TRUE(differs([](config& x) { x.model.d_model += 1; }));
  EXPECT_TRUE(differs([](config& x) { x.model.d_ff += 1; }));
  EXPECT_TRUE(differs([](config& x) { x.model.heads += 1; }));
  EXPECT_TRUE(differs([](config& x) { x.model.d_head += 1; }));
  EXPECT_TRUE(differs([](config& x) { x.model.experts += 1; }));
  EXPECT_TRUE(differs([](config& x) { x.model.moe_every += 1; }));
  EXPECT_TRUE(differs([](config& x) { x.model.activation = glam::expert_activation::gated_gelu; }));
  EXPECT_TRUE(differs([](config& x) { x.testing.router_bias = 4; }));  // a different function

  EXPECT_FALSE(differs([](config& x) { x.name = "renamed"; }));
  EXPECT_FALSE(differs([](config& x) { x.model.seq_len *= 2; }));
  EXPECT_FALSE(differs([](config& x) { x.train.steps += 1; }));
  EXPECT_FALSE(differs([](config& x) { x.train.seed += 1; }));
  EXPECT_FALSE(differs([](config& x) { x.moe.capacity_factor = 1.0; }));
  EXPECT_FALSE(differs([](config& x) { x.moe.gate_lr_scale = 0.1; }));  // an optimizer knob
  EXPECT_FALSE(differs([](config& x) { x.cluster.shards += 1; }));
  EXPECT_FALSE(differs([](config& x) { x.data.dir = "elsewhere"; }));

  config dense = c;
  dense.model.experts = 0;
  config dense_other = dense;
  dense_other.model.moe_every = 3;
  dense_other.model.activation = glam::expert_activation::gated_gelu;
  EXPECT_EQ(glam::model_config_hash(dense), glam::model_config_hash(dense_other));
}

TEST(ConfigHash, IsStableAcrossBuilds) {
  // Checkpoints store this value: it must not change unless the canonical text's version
  // tag does. FNV-1a 64 of "glam-model-v1;vocab_size=2048;layers=2;d_model=128;d_ff=512;
  // heads=4;d_head=32;experts=4;moe_every=2;expert_activation=relu".
  const config tiny = glam::load_config(k_configs_dir + "/glam-tiny.toml");
  std::uint64_t expected = 14695981039346656037ull;
  for (unsigned char ch : std::string("glam-model-v1;vocab_size=2048;layers=2;d_model=128;"
                                      "d_ff=512;heads=4;d_head=32;experts=4;moe_every=2;"
                                      "expert_activation=relu")) {
    expected ^= ch;
    expected *= 1099511628211ull;
  }
  EXPECT_EQ(glam::model_config_hash(tiny), expected);
}

// The testing options' gate: a config with [testing] router_bias is refused unless the
// process runs with GLAM_TESTING=1, and without the section nothing changes (to_toml does
// not write it, the model hash stays the one above).
class GlamTestingEnv {
 public:
  explicit GlamTestingEnv(const char* value) {
    if (const char* v = std::getenv("GLAM_TESTING")) saved_ = v;
    if (value) ::setenv("GLAM_TESTING", value, 1);
    else ::unsetenv("GLAM_TESTING");
  }
  ~GlamTestingEnv() {
    if (saved_) ::setenv("GLAM_TESTING", saved_->c_str(), 1);
    else ::unsetenv("GLAM_TESTING");
  }

 private:
  std::optional<std::string> saved_;
};

struct testing_gate_row {
  const char* env;     // GLAM_TESTING (null: unset)
  const char* bias;    // testing.router_bias
  bool accepted;
  const char* message;  // part of the refusal
};

class ConfigTestingGate : public ::testing::TestWithParam<testing_gate_row> {};

TEST_P(ConfigTestingGate, RouterBiasNeedsGlamTesting) {
  const auto& row = GetParam();
  GlamTestingEnv env(row.env);
  auto doc = base_doc();
  doc["testing"] = {{"router_bias", row.bias}};
  const auto error = parse_error_of(render(doc));
  EXPECT_EQ(!error.has_value(), row.accepted) << error.value_or("accepted");
  if (error) {
    EXPECT_NE(error->find(row.message), std::string::npos) << *error;
  } else {
    const config c = glam::parse_config_string(render(doc), "job.toml");
    const config back = glam::parse_config_string(glam::to_toml(c), "x.toml");
    expect_same(c, back);
  }
}

INSTANTIATE_TEST_SUITE_P(Rows, ConfigTestingGate,
                         ::testing::Values(testing_gate_row{nullptr, "4.0", false, "set GLAM_TESTING=1"},
                                           testing_gate_row{"0", "4.0", false, "testing.router_bias = 4"},
                                           testing_gate_row{"1", "4.0", true, ""},
                                           testing_gate_row{"1", "-2.5", true, ""},
                                           testing_gate_row{nullptr, "0.0", true, ""},
                                           testing_gate_row{"1", "101", false, "out of range"},
                                           testing_gate_row{"1", "\"4\"", false, "wrong type"}));

TEST(ConfigTestingGate, WithoutTheSectionNothingChanges) {
  const config c = glam::parse_config_string(render(base_doc()), "job.toml");
  EXPECT_EQ(c.testing.router_bias, 0.0);
  EXPECT_EQ(glam::to_toml(c).find("[testing]"), std::string::npos);
  config code = c;
  code.testing.router_bias = 3;
  GlamTestingEnv off(nullptr);
  EXPECT_THROW(glam::validate_config(code), config_error) << "a config built in code is gated too";
}

}  // namespace
