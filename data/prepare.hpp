#pragma once
// `glam data prepare` as a library function: text files in, a data directory out
// (tokenizer.model, train-NNNNN.bin, validation-NNNNN.bin, manifest.json).
//
// Deterministic: the same inputs and options give byte-identical files, wherever the output
// goes. Nothing is written until every input has been read and checked; the new files are
// built in a temporary folder inside the output directory and moved into place at the end,
// the manifest last.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace glam {

struct prepare_options {
  std::vector<std::string> inputs;            // files, or directories (see expand_inputs)
  std::vector<std::string> exclude_suffixes;  // skipped inside directories, e.g. ".dat"
  std::string out_dir;
  std::int64_t vocab_size = 8192;  // upper bound when training a tokenizer
  std::string tokenizer;           // an existing SentencePiece model; empty: train
  double val_fraction = 0.05;      // share of documents held out, in (0, 1)
  std::uint64_t seed = 0;          // validation split (by document hash)
  // Tokenizer training threads. SentencePiece's model depends on it (its EM sums per-thread
  // partial counts), so it is fixed by default, and the CLI does not offer it.
  int threads = 2;
  std::int64_t max_shard_tokens = std::int64_t{1} << 28;
  std::function<void(const std::string&)> progress;  // default: spdlog info
};

struct prepare_result {
  std::string out_dir;
  std::int64_t input_files = 0;
  std::uint64_t input_bytes = 0;
  std::int64_t vocab_size = 0;
  std::int64_t train_documents = 0, validation_documents = 0;
  std::int64_t train_tokens = 0, validation_tokens = 0;
  std::int64_t train_shards = 0, validation_shards = 0;
  double unigram_entropy = 0;
  bool trained_tokenizer = false;
  double tokenizer_seconds = 0, total_seconds = 0;
};

// Throws data_error (bad input, unusable output directory, tokenizer failure).
prepare_result prepare_data(const prepare_options& options);

// Whether a document goes to the validation split: a hash of (seed, its text) below
// val_fraction. Content-keyed, so duplicates land on the same side.
bool is_validation_document(std::uint64_t seed, const std::string& text, double val_fraction);

}  // namespace glam
