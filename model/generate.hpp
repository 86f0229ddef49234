#pragma once
// Text generation from a checkpoint: finding the model and its tokenizer, one request's
// decoding state, and the single-thread reference `generate` that composes the inference
// units of model/inference.hpp (one shard, every expert) in the runtime's order — the way
// reference_trainer composes the training units.
//
// Legend: V vocabulary, T = seq_len.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "configs/config.hpp"
#include "model/checkpoint.hpp"
#include "model/inference.hpp"
#include "model/sampling.hpp"

namespace glam {

// A checkpoint found for inference: its root, the manifest of the step used, and the job's
// config that the manifest records.
struct inference_checkpoint {
  std::string root;
  checkpoint_manifest manifest;
  config cfg;
};

// dir is a checkpoint root (ROOT, holding step-XXXXXXXX/; the newest valid one is used) or
// one step directory. config_path, when not empty, gives the job's config for a checkpoint
// that does not record it (its model must match the checkpoint's config hash). Throws
// inference_error naming the directory and the fix when there is no such directory, no
// valid checkpoint in it, or no config; checkpoint_error for a corrupt one.
inference_checkpoint find_checkpoint(const std::string& dir, const std::string& config_path = "");

// The units' parameters from the checkpoint's files (checked against their checksums and
// the model's layout). Each unit's owner loads its own.
param_set load_dense_params(const inference_checkpoint& ck);
param_set load_expert_params(const inference_checkpoint& ck, index expert);

// The tokenizer model to use: `given` when not empty, else the tokenizer of the data
// directory the job names (data.dir/manifest.json). Throws inference_error naming the
// path and the fix (pass --tokenizer) when it cannot be found.
std::string find_tokenizer_path(const inference_checkpoint& ck, const std::string& given = "");
// Throws inference_error when the tokenizer does not belong to the model: its vocabulary
// size differs from model.vocab_size, or the checkpoint records the checksum of its
// tokenizer and the file's differs.
void check_tokenizer(const inference_checkpoint& ck, const std::string& tokenizer_path, std::int64_t vocab_size);

// How one request ends.
enum class finish_reason { none, stop, length };
const char* to_string(finish_reason r);  // "", "stop", "length"

struct generation_options {
  index max_tokens = 64;  // ≥ 1: tokens to generate at most
  sampling_options sampling;
  std::int32_t stop_token = -1;  // end of text (the tokenizer's eos); < 0: none
};

// One request's decoding: what to feed the next pass, and the token chosen from its logits.
// A sequence holds at most T tokens, so a request generates at most
// min(max_tokens, T − prompt + 1) tokens (the last one sampled is never fed), then finishes
// with `length`; sampling the stop token finishes it with `stop` (the stop token is not
// part of the text).
class generation_state {
 public:
  // Throws inference_error for an empty prompt, a prompt longer than seq_len, a token
  // outside [0, V), max_tokens < 1 or invalid sampling options.
  generation_state(std::vector<std::int32_t> prompt, const generation_options& o, const model_config& m);

  // The tokens of the next pass: the prompt first, then the last sampled token.
  std::vector<std::int32_t> next_input() const;
  // The logits [V] of the last position fed: samples the next token and returns it (the
  // stop token included), or finishes.
  std::int32_t take(const float* logits);
  bool finished() const { return reason_ != finish_reason::none; }
  finish_reason reason() const { return reason_; }
  const std::vector<std::int32_t>& prompt() const { return prompt_; }
  const std::vector<std::int32_t>& generated() const { return generated_; }  // without the stop token
  // What a fresh shard prefills to rebuild this sequence's cache after a failure (bitwise
  // the cache it had): the prompt and every generated token but the last.
  std::vector<std::int32_t> replay_input() const;

 private:
  std::vector<std::int32_t> prompt_, generated_;
  generation_options opt_;
  index seq_len_, vocab_;
  index fed_ = 0;  // tokens in the sequence's cache
  finish_reason reason_ = finish_reason::none;
};

// The whole model in one process, one thread of control: a shard and every expert.
class reference_inference {
 public:
  reference_inference(const config& c, param_set dense, std::vector<param_set> experts);
  static reference_inference from_checkpoint(const inference_checkpoint& ck);

  const config& cfg() const { return shard_.cfg(); }
  inference_shard& shard() { return shard_; }
  const std::vector<inference_expert>& experts() const { return experts_; }

  // One pass through the shard and all experts, in the runtime's order (expert e serves
  // its rows of each exchange); returns the shard's logits.
  const tensor& run_pass(std::vector<pass_item> items, bool all_positions = false);

 private:
  inference_shard shard_;
  std::vector<inference_expert> experts_;
};

struct generation_result {
  std::vector<std::int32_t> tokens;  // generated, without the stop token
  finish_reason reason = finish_reason::none;
};

// Prefill, then one decode pass per token, on sequence `id` (opened and closed here);
// on_token(token) is called for every generated token (not the stop token) as soon as it
// is chosen.
generation_result generate(reference_inference& model, const std::vector<std::int32_t>& prompt,
                           const generation_options& o,
                           const std::function<void(std::int32_t)>& on_token = nullptr, sequence_id id = 0);

}  // namespace glam
