#include "data/tokenizer.hpp"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <fstream>
#include <mutex>
#include <unordered_map>

#include "data/error.hpp"

// Exported by libsentencepiece but not declared in its public headers: the trainer logs
// every EM iteration to stderr at level 0 otherwise.
namespace sentencepiece::logging {
int GetMinLogLevel();
void SetMinLogLevel(int v);
}  // namespace sentencepiece::logging

namespace glam {
namespace {

// Feeds SentencePiece the non-empty lines of the documents, in order, without copying them
// into a file first.
class line_iterator : public sentencepiece::SentenceIterator {
 public:
  explicit line_iterator(const std::vector<std::string>& documents) : documents_(documents) {
    advance();
  }
  bool done() const override { return doc_ >= documents_.size(); }
  void Next() override { advance(); }
  const std::string& value() const override { return value_; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  void advance() {
    while (doc_ < documents_.size()) {
      const std::string& d = documents_[doc_];
      if (pos_ > d.size()) {
        ++doc_;
        pos_ = 0;
        continue;
      }
      std::size_t end = d.find('\n', pos_);
      if (end == std::string::npos) end = d.size();
      value_.assign(d, pos_, end - pos_);
      pos_ = end + 1;
      if (!value_.empty()) return;
    }
  }
  const std::vector<std::string>& documents_;
  std::size_t doc_ = 0, pos_ = 0;
  std::string value_;
};

// SentencePiece keeps its random seed and log level in globals: one training at a time.
std::mutex& training_mutex() {
  static std::mutex m;
  return m;
}

}  // namespace

void train_tokenizer(const std::vector<std::string>& documents,
                     const tokenizer_training_options& options, const std::string& model_path) {
  if (options.vocab_size < 300)
    throw data_error("tokenizer vocab_size " + std::to_string(options.vocab_size) +
                     " is too small: byte fallback alone takes 256 ids plus the control "
                     "pieces; use at least 300 (8192 is the default)");
  std::unordered_map<std::string, std::string> args = {
      {"model_type", "unigram"},
      {"vocab_size", std::to_string(options.vocab_size)},
      {"hard_vocab_limit", options.hard_vocab_limit ? "true" : "false"},
      {"character_coverage", "1.0"},
      {"byte_fallback", "true"},
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"add_dummy_prefix", "false"},
      {"split_digits", "true"},
      {"user_defined_symbols", "\n"},
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "-1"},
      {"num_threads", std::to_string(options.threads)},
      {"input_sentence_size", std::to_string(options.max_sentences)},
      {"shuffle_input_sentence", "true"},
      {"max_sentence_length", "16384"},
  };
  std::string serialized;
  {
    std::lock_guard<std::mutex> lock(training_mutex());
    sentencepiece::SetRandomGeneratorSeed(options.seed);
    int old_level = sentencepiece::logging::GetMinLogLevel();
    sentencepiece::logging::SetMinLogLevel(2);
    line_iterator lines(documents);
    auto status = sentencepiece::SentencePieceTrainer::Train(args, &lines, &serialized);
    sentencepiece::logging::SetMinLogLevel(old_level);
    if (!status.ok())
      throw data_error("tokenizer training failed: " + std::string(status.message()) +
                       (options.hard_vocab_limit ? "; a smaller --vocab-size may help" : ""));
  }
  std::ofstream out(model_path, std::ios::binary | std::ios::trunc);
  out.write(serialized.data(), static_cast<std::streamsize>(serialized.size()));
  out.close();
  if (!out) throw data_error("cannot write the tokenizer model " + model_path);
}

tokenizer::tokenizer(std::shared_ptr<const sentencepiece::SentencePieceProcessor> processor)
    : processor_(std::move(processor)) {}

tokenizer tokenizer::load(const std::string& model_path) {
  auto processor = std::make_shared<sentencepiece::SentencePieceProcessor>();
  auto status = processor->Load(model_path);
  if (!status.ok())
    throw data_error("cannot load the tokenizer model " + model_path + ": " +
                     std::string(status.message()) +
                     "; give a SentencePiece .model file (or let `glam data prepare` train one)");
  return tokenizer(std::move(processor));
}

std::vector<std::int32_t> tokenizer::encode(std::string_view text) const {
  std::vector<int> ids;
  auto status = processor_->Encode(text, &ids);
  if (!status.ok()) throw data_error("tokenizer encode failed: " + std::string(status.message()));
  return std::vector<std::int32_t>(ids.begin(), ids.end());
}

std::string tokenizer::decode(const std::int32_t* ids, std::size_t count) const {
  std::vector<int> v(ids, ids + count);
  std::string text;
  auto status = processor_->Decode(v, &text);
  if (!status.ok()) throw data_error("tokenizer decode failed: " + std::string(status.message()));
  return text;
}

std::int64_t tokenizer::vocab_size() const { return processor_->GetPieceSize(); }
std::int32_t tokenizer::eos_id() const { return processor_->eos_id(); }
std::int32_t tokenizer::bos_id() const { return processor_->bos_id(); }
std::int32_t tokenizer::unk_id() const { return processor_->unk_id(); }
std::string tokenizer::piece(std::int32_t id) const { return processor_->IdToPiece(id); }

std::string text_stream::push(std::int32_t id) {
  ids_.push_back(id);
  const std::string text = tokenizer_.decode(ids_);
  static const std::string replacement = "\xEF\xBF\xBD";  // U+FFFD
  if (text.size() >= replacement.size() && text.compare(text.size() - replacement.size(), replacement.size(), replacement) == 0)
    return "";
  // Decoding more tokens only appends (identity normalisation, no dummy prefix); the check
  // keeps a surprise from repeating text.
  if (text.size() <= given_.size() || text.compare(0, given_.size(), given_) != 0) return "";
  std::string piece = text.substr(given_.size());
  given_ = text;
  return piece;
}

std::string text_stream::finish() {
  const std::string text = tokenizer_.decode(ids_);
  if (text.size() <= given_.size() || text.compare(0, given_.size(), given_) != 0) return "";
  std::string piece = text.substr(given_.size());
  given_ = text;
  return piece;
}

}  // namespace glam
