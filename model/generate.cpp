#include "model/generate.hpp"

#include <filesystem>
#include <utility>

#include "data/checksum.hpp"
#include "data/error.hpp"
#include "data/manifest.hpp"
#include "data/tokenizer.hpp"
#include "kernels/check.hpp"
#include "model/optimizer.hpp"

namespace glam {

namespace fs = std::filesystem;

namespace {

// "step-00000012" -> 12, else -1.
std::int64_t step_of_dir_name(const std::string& name) {
  if (name.size() < 6 || name.compare(0, 5, "step-") != 0) return -1;
  std::int64_t step = 0;
  for (std::size_t i = 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9' || step > (INT64_MAX - 9) / 10) return -1;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

// The job config of a manifest, or of config_path when given; checked against the
// manifest's config hash.
config job_config_of(const checkpoint_manifest& m, const std::string& dir, const std::string& config_path) {
  config c;
  if (!config_path.empty()) {
    c = load_config(config_path);
  } else if (!m.job_config.empty()) {
    try {
      c = parse_config_string(m.job_config, "the job config recorded in checkpoint '" + dir + "'");
    } catch (const config_error& e) {
      throw inference_error(std::string(e.what()) + "; pass the job's config with --config");
    }
  } else {
    throw inference_error("checkpoint '" + dir +
                          "' does not record its job's config (it was written by an older glam); pass the config "
                          "it was trained with, --config CONFIG");
  }
  if (model_config_hash(c) != m.config_hash)
    throw inference_error("checkpoint '" + dir + "' belongs to another model than " +
                          (config_path.empty() ? std::string("the config it records") : "'" + config_path + "'") +
                          " (config hash " + checksum_to_hex(m.config_hash) + ", the config's " +
                          checksum_to_hex(model_config_hash(c)) + "); pass the config it was trained with");
  return c;
}

param_set load_unit(const inference_checkpoint& ck, const std::string& unit, param_set layout) {
  const unit_file_info* f = ck.manifest.find(unit);
  if (!f)
    throw checkpoint_error("checkpoint '" + checkpoint_dir_for(ck.root, ck.manifest.step) + "' has no unit '" + unit +
                           "'; its manifest is incomplete");
  optimizer_state opt;
  opt.init(layout);
  read_unit_file(ck.root, ck.manifest.step, *f, layout, opt);
  return layout;
}

}  // namespace

inference_checkpoint find_checkpoint(const std::string& dir, const std::string& config_path) {
  std::error_code ec;
  if (dir.empty()) throw inference_error("no checkpoint given; pass --checkpoint DIR (a checkpoint directory of glam train)");
  if (!fs::is_directory(dir, ec))
    throw inference_error("checkpoint directory '" + dir +
                          "' does not exist; pass the --checkpoint-dir of a `glam train` run, or one of its "
                          "step-XXXXXXXX directories");
  inference_checkpoint ck;
  fs::path path = fs::path(dir).lexically_normal();
  if (!path.has_filename() && path.has_parent_path()) path = path.parent_path();  // a trailing "/"
  const std::int64_t own_step = step_of_dir_name(path.filename().string());
  if (own_step >= 0 && fs::exists(path / "manifest.capnp", ec)) {
    // One step directory.
    ck.root = path.parent_path().empty() ? "." : path.parent_path().string();
    ck.manifest = read_manifest(ck.root, own_step);
    ck.cfg = job_config_of(ck.manifest, dir, config_path);
    return ck;
  }
  ck.root = path.string();
  std::optional<checkpoint_manifest> newest;
  for (std::int64_t step : checkpoint_steps(ck.root)) {
    try {
      newest = read_manifest(ck.root, step);
      break;
    } catch (const checkpoint_error&) {
      // an interrupted or corrupt checkpoint: latest_valid_checkpoint says why below
    }
  }
  if (!newest)
    throw inference_error("no valid checkpoint in '" + dir +
                          "'; pass the --checkpoint-dir of a `glam train` run that wrote one");
  ck.cfg = job_config_of(*newest, checkpoint_dir_for(ck.root, newest->step), config_path);
  std::vector<std::string> skipped;
  auto valid = latest_valid_checkpoint(ck.root, ck.cfg, &skipped);
  if (!valid) {
    std::string why;
    for (const auto& s : skipped) why += "\n  " + s;
    throw inference_error("no valid checkpoint in '" + dir + "':" + why);
  }
  ck.manifest = *valid;
  // An older checkpoint may record its own config; the model is the same (same hash).
  if (config_path.empty() && !ck.manifest.job_config.empty())
    ck.cfg = job_config_of(ck.manifest, checkpoint_dir_for(ck.root, ck.manifest.step), "");
  return ck;
}

param_set load_dense_params(const inference_checkpoint& ck) {
  return load_unit(ck, dense_state_name(), dense_param_layout(ck.cfg.model));
}

param_set load_expert_params(const inference_checkpoint& ck, index expert) {
  GLAM_CHECK(expert >= 0 && expert < ck.cfg.model.experts, "load_expert_params: expert out of range");
  return load_unit(ck, unit_id::expert(expert).name(), expert_param_layout(ck.cfg.model));
}

std::string find_tokenizer_path(const inference_checkpoint& ck, const std::string& given) {
  std::error_code ec;
  if (!given.empty()) {
    if (!fs::is_regular_file(given, ec))
      throw inference_error("tokenizer '" + given + "' does not exist; pass the tokenizer.model of the data the model "
                            "was trained on");
    return given;
  }
  const std::string& data_dir = ck.cfg.data.dir;
  if (ck.cfg.data.synthetic)
    throw inference_error("the checkpoint's job trained on synthetic tokens (data.synthetic = true), which have no "
                          "tokenizer; generating text needs a model trained on prepared data");
  try {
    const data_manifest dm = read_manifest(data_dir);
    return (fs::path(data_dir) / dm.tokenizer_file).string();
  } catch (const data_error& e) {
    throw inference_error("the checkpoint's job trained on data.dir = '" + data_dir + "', whose tokenizer cannot be read (" +
                          e.what() + "); pass --tokenizer MODEL, the tokenizer.model of that data");
  }
}

void check_tokenizer(const inference_checkpoint& ck, const std::string& tokenizer_path, std::int64_t vocab_size) {
  if (vocab_size != ck.cfg.model.vocab_size)
    throw inference_error("tokenizer '" + tokenizer_path + "' has " + std::to_string(vocab_size) +
                          " tokens, but the checkpoint's model has model.vocab_size = " +
                          std::to_string(ck.cfg.model.vocab_size) +
                          ": they do not belong together; pass the tokenizer.model of the data the model was trained "
                          "on");
  if (ck.manifest.tokenizer_checksum == 0) return;
  const std::uint64_t sum = file_checksum64(tokenizer_path);
  if (sum != ck.manifest.tokenizer_checksum)
    throw inference_error("tokenizer '" + tokenizer_path + "' (checksum " + checksum_to_hex(sum) +
                          ") is not the one the checkpoint's model was trained with (checksum " +
                          checksum_to_hex(ck.manifest.tokenizer_checksum) +
                          "); pass the tokenizer.model of the data the model was trained on");
}

// ---------------------------------------------------------------------------------------

const char* to_string(finish_reason r) {
  switch (r) {
    case finish_reason::stop: return "stop";
    case finish_reason::length: return "length";
    default: return "";
  }
}

generation_state::generation_state(std::vector<std::int32_t> prompt, const generation_options& o,
                                   const model_config& m)
    : prompt_(std::move(prompt)), opt_(o), seq_len_(m.seq_len), vocab_(m.vocab_size) {
  if (prompt_.empty())
    throw inference_error("the prompt is empty; give at least one token of text to continue");
  if (static_cast<index>(prompt_.size()) > seq_len_)
    throw inference_error("the prompt is " + std::to_string(prompt_.size()) + " tokens, longer than the model's seq_len = " +
                          std::to_string(seq_len_) + "; shorten it to at most " + std::to_string(seq_len_) + " tokens");
  for (std::size_t i = 0; i < prompt_.size(); ++i)
    if (prompt_[i] < 0 || prompt_[i] >= vocab_)
      throw inference_error("prompt token " + std::to_string(prompt_[i]) + " at " + std::to_string(i) +
                            " is outside the vocabulary [0, " + std::to_string(vocab_) + ")");
  if (opt_.max_tokens < 1)
    throw inference_error("max_tokens = " + std::to_string(opt_.max_tokens) + " is not allowed; ask for at least 1");
  validate_sampling(opt_.sampling);
}

std::vector<std::int32_t> generation_state::next_input() const {
  GLAM_CHECK(!finished(), "next_input of a finished generation");
  if (fed_ == 0) return prompt_;
  return {generated_.back()};
}

std::int32_t generation_state::take(const float* logits) {
  GLAM_CHECK(!finished(), "take on a finished generation");
  fed_ += static_cast<index>(next_input().size());
  const std::int32_t token = sample_token(logits, vocab_, opt_.sampling, std::uint64_t(generated_.size()));
  if (opt_.stop_token >= 0 && token == opt_.stop_token) {
    reason_ = finish_reason::stop;
    return token;
  }
  generated_.push_back(token);
  // The next pass would feed this token: the cache must have room for it.
  if (static_cast<index>(generated_.size()) >= opt_.max_tokens || fed_ >= seq_len_) reason_ = finish_reason::length;
  return token;
}

std::vector<std::int32_t> generation_state::replay_input() const {
  std::vector<std::int32_t> all = prompt_;
  if (!generated_.empty()) all.insert(all.end(), generated_.begin(), generated_.end() - 1);
  return all;
}

// ---------------------------------------------------------------------------------------

reference_inference::reference_inference(const config& c, param_set dense, std::vector<param_set> experts)
    : shard_(c, std::move(dense)) {
  GLAM_CHECK(static_cast<index>(experts.size()) == (c.model.moe_as_dense_relu ? 0 : c.model.experts),
             "reference_inference needs every expert's parameters");
  for (std::size_t e = 0; e < experts.size(); ++e) experts_.emplace_back(c, index(e), std::move(experts[e]));
}

reference_inference reference_inference::from_checkpoint(const inference_checkpoint& ck) {
  std::vector<param_set> experts;
  for (index e = 0; e < ck.cfg.model.experts; ++e) experts.push_back(load_expert_params(ck, e));
  return reference_inference(ck.cfg, load_dense_params(ck), std::move(experts));
}

const tensor& reference_inference::run_pass(std::vector<pass_item> items, bool all_positions) {
  const index M = cfg().model.d_model;
  shard_.begin_pass(std::move(items), all_positions);
  while (auto ex = shard_.forward_next()) {
    tensor out(ex->rows.shape);
    for (const auto& e : experts_) {
      const index at = ex->offset[static_cast<std::size_t>(e.expert())];
      e.forward(ex->moe, ex->rows.ptr() + at * M, ex->counts[static_cast<std::size_t>(e.expert())], out.ptr() + at * M);
    }
    shard_.forward_resume(out);
  }
  return shard_.logits();
}

generation_result generate(reference_inference& model, const std::vector<std::int32_t>& prompt,
                           const generation_options& o, const std::function<void(std::int32_t)>& on_token,
                           sequence_id id) {
  generation_state state(prompt, o, model.cfg().model);
  inference_shard& shard = model.shard();
  shard.open_sequence(id);
  try {
    while (!state.finished()) {
      const tensor& logits = model.run_pass({pass_item{id, state.next_input()}});
      const std::int32_t token = state.take(logits.ptr());
      if (state.reason() != finish_reason::stop && on_token) on_token(token);
    }
  } catch (...) {
    if (shard.pass_in_flight()) shard.abort_pass();
    shard.close_sequence(id);
    throw;
  }
  shard.close_sequence(id);
  return {state.generated(), state.reason()};
}

}  // namespace glam
