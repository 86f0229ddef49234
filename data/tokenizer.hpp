#pragma once
// A thin layer over SentencePiece: training a unigram model with the settings that make the
// text round-trip exactly and the model deterministic, and encoding/decoding with it.
//
// Settings (why): identity normalisation and no whitespace clean-up (decode(encode(t)) == t
// for any UTF-8 text); byte fallback (a character never seen in training still encodes, as
// its bytes); "\n" a piece of its own (documents are multi-line); no dummy prefix (a word
// at the start of a line is encoded the same in training, where each line is a sentence,
// and in documents, where it follows "\n"); ids unk 0, bos 1, eos 2, no pad.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace glam {

struct tokenizer_training_options {
  std::int64_t vocab_size = 8192;
  // When false, vocab_size is an upper bound (SentencePiece stops early on a small corpus
  // instead of failing); the model's own size is what counts.
  bool hard_vocab_limit = false;
  // Part of the result: SentencePiece's EM adds per-thread partial counts, so another thread
  // count gives a (slightly) different model.
  int threads = 2;
  // Training samples at most this many sentences (lines), chosen with `seed`.
  std::int64_t max_sentences = 2'000'000;
  std::uint32_t seed = 20220101;
};

// Trains on the lines of `documents` (each line one sentence) and writes the model to
// `model_path`. The same documents and options give a byte-identical file. Throws
// data_error with SentencePiece's message when training fails.
void train_tokenizer(const std::vector<std::string>& documents,
                     const tokenizer_training_options& options, const std::string& model_path);

class tokenizer {
 public:
  // Throws data_error naming the path if it is missing or not a SentencePiece model.
  static tokenizer load(const std::string& model_path);

  std::vector<std::int32_t> encode(std::string_view text) const;
  std::string decode(const std::int32_t* ids, std::size_t count) const;
  std::string decode(const std::vector<std::int32_t>& ids) const {
    return decode(ids.data(), ids.size());
  }

  std::int64_t vocab_size() const;
  std::int32_t eos_id() const;
  std::int32_t bos_id() const;
  std::int32_t unk_id() const;
  std::string piece(std::int32_t id) const;

 private:
  explicit tokenizer(std::shared_ptr<const sentencepiece::SentencePieceProcessor> processor);
  std::shared_ptr<const sentencepiece::SentencePieceProcessor> processor_;
};

// The text of a growing token sequence, given out as the tokens arrive (streaming): push
// returns the text the new token adds. A character whose bytes span several byte-fallback
// tokens is held back until it is complete (SentencePiece decodes an incomplete one as
// U+FFFD), so the pieces concatenate to decode(all tokens).
class text_stream {
 public:
  explicit text_stream(const tokenizer& t) : tokenizer_(t) {}
  std::string push(std::int32_t id);
  // What is still held back (an incomplete character at the end); after it, the pieces
  // given out equal decode(all tokens).
  std::string finish();

 private:
  const tokenizer& tokenizer_;
  std::vector<std::int32_t> ids_;
  std::string given_;  // the text given out so far
};

}  // namespace glam
