// glam data prepare --input PATH... --out DIR [...]: text files to a data directory
// (tokenizer, token shards, manifest); glam data info DIR: verify one and summarise it.
// docs/data.md describes the directory and the sample order.
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "data/checksum.hpp"
#include "data/dataset.hpp"
#include "data/prepare.hpp"

namespace glam::cli {

namespace {

void run_prepare(prepare_options options, bool quiet) {
  options.progress = [quiet](const std::string& message) {
    if (!quiet) std::fprintf(stderr, "glam data: %s\n", message.c_str());
  };
  prepare_result r = prepare_data(options);
  std::printf(
      "prepared %s: %lld files (%.2f MB), vocabulary %lld (%s), %lld train tokens in %lld "
      "documents, %lld validation tokens in %lld documents, unigram entropy %.4f nats, "
      "%.1f s\n",
      r.out_dir.c_str(), static_cast<long long>(r.input_files),
      static_cast<double>(r.input_bytes) / 1e6, static_cast<long long>(r.vocab_size),
      r.trained_tokenizer ? "trained" : "given", static_cast<long long>(r.train_tokens),
      static_cast<long long>(r.train_documents), static_cast<long long>(r.validation_tokens),
      static_cast<long long>(r.validation_documents), r.unigram_entropy, r.total_seconds);
}

void run_info(const std::string& dir) {
  dataset d = dataset::open(dir);  // verifies every checksum
  const data_manifest& m = d.manifest();
  std::printf("%s: glam data format %d, verified\n", dir.c_str(), m.format_version);
  std::printf("  vocabulary   %lld (%s tokenizer %s, eos id %d), tokens stored as %s\n",
              static_cast<long long>(m.vocab_size), m.tokenizer_trained ? "trained" : "given",
              m.tokenizer_file.c_str(), m.eos_id, dtype_name(m.dtype).c_str());
  std::printf("  train        %lld tokens, %lld documents, %zu shard(s)\n",
              static_cast<long long>(m.train_tokens), static_cast<long long>(m.train_documents),
              m.train.size());
  std::printf("  validation   %lld tokens, %lld documents, %zu shard(s)\n",
              static_cast<long long>(m.validation_tokens),
              static_cast<long long>(m.validation_documents), m.validation.size());
  std::printf("  entropy      %.4f nats per token (unigram, train)\n", m.unigram_entropy);
  std::printf("  longest seq  %lld tokens\n",
              static_cast<long long>(d.longest_trainable_sequence()));
  std::printf("  fingerprint  %s\n", checksum_to_hex(d.fingerprint()).c_str());
}

}  // namespace

void add_data_command(CLI::App& app) {
  CLI::App* data = app.add_subcommand("data", "Prepare and inspect token data");
  data->require_subcommand(1);

  auto options = std::make_shared<prepare_options>();
  auto quiet = std::make_shared<bool>(false);
  CLI::App* prepare = data->add_subcommand(
      "prepare",
      "Train a SentencePiece tokenizer (unless one is given) and encode text files into token "
      "shards with a manifest and a validation split; the same input gives the same bytes");
  prepare
      ->add_option("--input", options->inputs,
                   "UTF-8 text files, or directories (their regular files, sorted by name); a "
                   "file with lines holding only \"%\" is split into documents there")
      ->required()
      ->expected(1, -1);
  prepare
      ->add_option("--out", options->out_dir,
                   "output directory: new, empty, or a previous glam data directory")
      ->required();
  prepare
      ->add_option("--vocab-size", options->vocab_size,
                   "vocabulary size of the trained tokenizer (an upper bound on small text)")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{300}, std::int64_t{1} << 30));
  prepare->add_option("--tokenizer", options->tokenizer,
                      "use this SentencePiece model instead of training one (copied to the "
                      "output as tokenizer.model)");
  prepare
      ->add_option("--val-fraction", options->val_fraction,
                   "share of documents held out for validation, chosen by a seeded hash")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  prepare->add_option("--seed", options->seed, "seed of the validation split")
      ->capture_default_str();
  prepare->add_option("--exclude", options->exclude_suffixes,
                      "inside --input directories, skip files whose names end so (e.g. .dat)");
  prepare->add_flag("--quiet", *quiet, "print only the final summary");
  prepare->callback([options, quiet] { run_prepare(*options, *quiet); });

  auto dir = std::make_shared<std::string>();
  CLI::App* info = data->add_subcommand(
      "info", "Verify a data directory (manifest and every checksum) and summarise it");
  info->add_option("dir", *dir, "the data directory")->required();
  info->callback([dir] { run_info(*dir); });
}

}  // namespace glam::cli
