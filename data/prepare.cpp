#include "data/prepare.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "data/checksum.hpp"
#include "data/error.hpp"
#include "data/manifest.hpp"
#include "data/sample_order.hpp"
#include "data/text.hpp"
#include "data/token_file.hpp"
#include "data/tokenizer.hpp"

namespace glam {
namespace fs = std::filesystem;

namespace {

constexpr const char* temp_folder = ".glam-prepare.tmp";
constexpr const char* tokenizer_file = "tokenizer.model";

double split_draw(std::uint64_t seed, const std::string& text) {
  std::uint64_t h = mix_seed(seed, checksum64(text.data(), text.size()));
  return static_cast<double>(h >> 11) * 0x1.0p-53;  // uniform in [0, 1)
}

std::string read_bytes(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw data_error(what + " " + path + " cannot be read; check the path");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) throw data_error("cannot write " + path);
}

std::string megabytes(std::uint64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.2f MB", static_cast<double>(bytes) / 1e6);
  return text;
}

// Whether `dir` may receive a data directory: absent, empty, or holding a previous one
// (a glam-data manifest, or the temporary folder of a preparation that did not finish).
// Returns the files of the previous data directory, to be replaced.
std::vector<std::string> check_output_dir(const std::string& dir) {
  std::error_code ec;
  auto status = fs::status(dir, ec);
  if (!fs::exists(status)) return {};
  if (!fs::is_directory(status))
    throw data_error("output " + dir + " exists and is not a directory; choose another --out");
  std::vector<std::string> entries;
  for (const auto& e : fs::directory_iterator(dir)) entries.push_back(e.path().filename().string());
  if (entries.empty()) return {};
  std::vector<std::string> previous;
  bool ours = std::find(entries.begin(), entries.end(), temp_folder) != entries.end();
  std::string manifest_path = dir + "/" + manifest_file_name;
  if (fs::exists(manifest_path)) {
    try {
      data_manifest m = read_manifest(dir);
      ours = true;
      previous.push_back(m.tokenizer_file);
      for (const auto& s : m.train) previous.push_back(s.file);
      for (const auto& s : m.validation) previous.push_back(s.file);
    } catch (const data_error&) {
      // A damaged or older glam manifest still marks the directory as ours.
      std::string text = read_bytes(manifest_path, "manifest");
      if (text.find(std::string("\"") + manifest_format + "\"") != std::string::npos) ours = true;
    }
  }
  if (!ours) {
    std::sort(entries.begin(), entries.end());
    throw data_error(
        "output directory " + dir + " is not empty (it holds " + entries.front() +
        (entries.size() > 1 ? " and " + std::to_string(entries.size() - 1) + " more" : "") +
        ") and is not a glam data directory; refusing to overwrite unrelated files: "
        "choose a new or empty --out");
  }
  return previous;
}

struct input_document {
  std::string text;
  double draw;
};

}  // namespace

bool is_validation_document(std::uint64_t seed, const std::string& text, double val_fraction) {
  return split_draw(seed, text) < val_fraction;
}

prepare_result prepare_data(const prepare_options& options) {
  using clock = std::chrono::steady_clock;
  auto t0 = clock::now();
  auto progress = [&](const std::string& message) {
    if (options.progress)
      options.progress(message);
    else
      spdlog::info("data prepare: {}", message);
  };
  if (options.inputs.empty())
    throw data_error("no --input given; name the text files (or directories) to prepare");
  if (options.out_dir.empty()) throw data_error("no --out given; name the output directory");
  if (!(options.val_fraction > 0 && options.val_fraction < 1))
    throw data_error("--val-fraction is " + std::to_string(options.val_fraction) +
                     "; it must lie strictly between 0 and 1 (0.05 is the default)");
  if (options.tokenizer.empty() && (options.vocab_size < 300 || options.vocab_size > (1 << 30)))
    throw data_error("--vocab-size is " + std::to_string(options.vocab_size) +
                     "; use a value between 300 and 2^30 (8192 is the default)");

  // 1. Read and check every input before touching the output directory.
  prepare_result result;
  result.out_dir = options.out_dir;
  std::vector<std::string> files = expand_inputs(options.inputs, options.exclude_suffixes);
  std::vector<source_info> sources;
  std::vector<input_document> documents;
  for (const auto& path : files) {
    std::string raw = read_text_file(path);
    std::vector<std::string> docs = split_documents(normalise_text(raw));
    if (docs.empty())
      throw data_error("input " + path +
                       " holds no text (only whitespace and control characters); leave it out");
    source_info info;
    info.file = fs::path(path).filename().string();
    info.bytes = raw.size();
    info.checksum = checksum64(raw.data(), raw.size());
    info.documents = static_cast<std::int64_t>(docs.size());
    sources.push_back(info);
    result.input_bytes += raw.size();
    for (auto& d : docs) {
      double draw = split_draw(options.seed, d);
      documents.push_back({std::move(d), draw});
    }
  }
  result.input_files = static_cast<std::int64_t>(files.size());
  if (documents.size() < 2)
    throw data_error(
        "the input holds 1 document, and a validation split needs at least 2: give "
        "several files, or separate documents inside a file with lines holding only "
        "\"%\"");

  // 2. Validation split by document hash; each side gets at least one document.
  std::vector<bool> is_val(documents.size());
  std::size_t val_count = 0;
  for (std::size_t i = 0; i < documents.size(); ++i) {
    is_val[i] = documents[i].draw < options.val_fraction;
    val_count += is_val[i];
  }
  auto by_draw = [&](std::size_t a, std::size_t b) {
    return documents[a].draw < documents[b].draw;
  };
  std::vector<std::size_t> order(documents.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  if (val_count == 0) is_val[*std::min_element(order.begin(), order.end(), by_draw)] = true;
  if (val_count == documents.size())
    is_val[*std::max_element(order.begin(), order.end(), by_draw)] = false;
  std::vector<std::string> train_docs, val_docs;
  for (std::size_t i = 0; i < documents.size(); ++i)
    (is_val[i] ? val_docs : train_docs).push_back(std::move(documents[i].text));
  documents.clear();
  result.train_documents = static_cast<std::int64_t>(train_docs.size());
  result.validation_documents = static_cast<std::int64_t>(val_docs.size());
  progress("read " + std::to_string(files.size()) + (files.size() == 1 ? " file, " : " files, ") +
           megabytes(result.input_bytes) + ", " +
           std::to_string(train_docs.size() + val_docs.size()) + " documents (" +
           std::to_string(train_docs.size()) + " train, " + std::to_string(val_docs.size()) +
           " validation)");

  std::string given_tokenizer;
  if (!options.tokenizer.empty()) {
    given_tokenizer = read_bytes(options.tokenizer, "tokenizer");
    tokenizer::load(options.tokenizer);  // fails early, naming the file, if it is no model
  }

  // 3. Build everything in a temporary folder inside the output directory.
  std::vector<std::string> previous = check_output_dir(options.out_dir);
  const std::string temp = options.out_dir + "/" + temp_folder;
  std::error_code ec;
  fs::remove_all(temp, ec);
  fs::create_directories(temp, ec);
  if (ec)
    throw data_error("cannot create the output directory " + temp + ": " + ec.message() +
                     "; check --out and its permissions");

  const std::string temp_tokenizer = temp + "/" + tokenizer_file;
  auto t_tok = clock::now();
  if (given_tokenizer.empty()) {
    progress("training a unigram tokenizer (vocab size up to " +
             std::to_string(options.vocab_size) + ") on the train documents");
    tokenizer_training_options topt;
    topt.vocab_size = options.vocab_size;
    topt.threads = options.threads;
    train_tokenizer(train_docs, topt, temp_tokenizer);
    result.trained_tokenizer = true;
  } else {
    write_bytes(temp_tokenizer, given_tokenizer);
  }
  result.tokenizer_seconds = std::chrono::duration<double>(clock::now() - t_tok).count();
  tokenizer tok = tokenizer::load(temp_tokenizer);
  if (tok.eos_id() < 0)
    throw data_error("tokenizer " +
                     (options.tokenizer.empty() ? temp_tokenizer : options.tokenizer) +
                     " has no end-of-sequence piece; train it with an eos id (e.g. "
                     "spm_train --eos_id=2) or let glam train one");
  result.vocab_size = tok.vocab_size();
  if (result.trained_tokenizer)
    progress("tokenizer trained in " + std::to_string(result.tokenizer_seconds).substr(0, 5) +
             " s: " + std::to_string(result.vocab_size) + " pieces");

  // 4. Encode both streams: each document's tokens, then eos.
  data_manifest m;
  m.vocab_size = result.vocab_size;
  m.unk_id = tok.unk_id();
  m.bos_id = tok.bos_id();
  m.eos_id = tok.eos_id();
  m.dtype = dtype_for_vocab(m.vocab_size);
  std::vector<std::int64_t> counts(static_cast<std::size_t>(m.vocab_size), 0);
  auto encode_stream = [&](const std::vector<std::string>& docs, const char* prefix, bool count) {
    token_stream_writer writer(temp, prefix, m.dtype, options.max_shard_tokens);
    const std::int32_t eos = tok.eos_id();
    for (const auto& d : docs) {
      std::vector<std::int32_t> ids = tok.encode(d);
      ids.push_back(eos);
      writer.append(ids.data(), ids.size());
      if (count)
        for (std::int32_t id : ids) ++counts[static_cast<std::size_t>(id)];
    }
    return writer.finish();
  };
  m.train = encode_stream(train_docs, "train", true);
  m.validation = encode_stream(val_docs, "validation", false);
  for (const auto& s : m.train) m.train_tokens += s.tokens;
  for (const auto& s : m.validation) m.validation_tokens += s.tokens;
  m.train_documents = result.train_documents;
  m.validation_documents = result.validation_documents;
  // Entropy of the train tokens' unigram distribution, summed in id order.
  double entropy = 0;
  for (std::int64_t c : counts)
    if (c > 0) {
      double p = static_cast<double>(c) / static_cast<double>(m.train_tokens);
      entropy -= p * std::log(p);
    }
  m.unigram_entropy = entropy;
  m.tokenizer_file = tokenizer_file;
  m.tokenizer_checksum = file_checksum64(temp_tokenizer);
  m.tokenizer_bytes = fs::file_size(temp_tokenizer);
  m.tokenizer_trained = result.trained_tokenizer;
  m.vocab_size_requested = given_tokenizer.empty() ? options.vocab_size : 0;
  m.val_fraction = options.val_fraction;
  m.split_seed = options.seed;
  m.sources = sources;
  progress("encoded " + std::to_string(m.train_tokens) + " train tokens (" +
           std::to_string(m.train.size()) + " shard" + (m.train.size() == 1 ? "" : "s") + ") and " +
           std::to_string(m.validation_tokens) + " validation tokens, " + dtype_name(m.dtype) +
           "; unigram entropy " + std::to_string(m.unigram_entropy) + " nats");

  // 5. Move into place: the old manifest goes first (a half-replaced directory must not look
  // complete), the new manifest last.
  fs::remove(options.out_dir + "/" + manifest_file_name, ec);
  std::set<std::string> fresh{tokenizer_file};
  for (const auto* stream : {&m.train, &m.validation})
    for (const auto& s : *stream) fresh.insert(s.file);
  for (const auto& name : fresh) {
    fs::rename(temp + "/" + name, options.out_dir + "/" + name, ec);
    if (ec)
      throw data_error("cannot move " + name + " into " + options.out_dir + ": " + ec.message());
  }
  for (const auto& name : previous)
    if (!fresh.count(name)) fs::remove(options.out_dir + "/" + name, ec);
  write_manifest(options.out_dir, m);
  fs::remove_all(temp, ec);

  result.train_tokens = m.train_tokens;
  result.validation_tokens = m.validation_tokens;
  result.train_shards = static_cast<std::int64_t>(m.train.size());
  result.validation_shards = static_cast<std::int64_t>(m.validation.size());
  result.unigram_entropy = m.unigram_entropy;
  result.total_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  progress("wrote " + options.out_dir + "/" + manifest_file_name);
  return result;
}

}  // namespace glam
