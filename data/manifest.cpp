#include "data/manifest.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "data/checksum.hpp"
#include "data/error.hpp"

namespace glam {
namespace {

using json = nlohmann::json;

json shard_json(const shard_info& s) {
  return {{"file", s.file},
          {"tokens", s.tokens},
          {"bytes", s.bytes},
          {"checksum", checksum_to_hex(s.checksum)}};
}

// Field access that names the file and the field in every failure.
class reader {
 public:
  explicit reader(std::string where) : where_(std::move(where)) {}

  const json& field(const json& obj, const std::string& key, const std::string& path) const {
    if (!obj.is_object() || !obj.contains(key)) fail(path + key + " is missing");
    return obj.at(key);
  }
  std::int64_t integer(const json& obj, const std::string& key, const std::string& path = "",
                       std::int64_t min = 0) const {
    const json& v = field(obj, key, path);
    if (!v.is_number_integer()) fail(path + key + " is not an integer");
    auto x = v.get<std::int64_t>();
    if (x < min) fail(path + key + " is " + std::to_string(x) + ", below " + std::to_string(min));
    return x;
  }
  double number(const json& obj, const std::string& key, const std::string& path = "") const {
    const json& v = field(obj, key, path);
    if (!v.is_number()) fail(path + key + " is not a number");
    return v.get<double>();
  }
  std::string string(const json& obj, const std::string& key, const std::string& path = "") const {
    const json& v = field(obj, key, path);
    if (!v.is_string()) fail(path + key + " is not a string");
    return v.get<std::string>();
  }
  bool boolean(const json& obj, const std::string& key, const std::string& path = "") const {
    const json& v = field(obj, key, path);
    if (!v.is_boolean()) fail(path + key + " is not true or false");
    return v.get<bool>();
  }
  std::uint64_t checksum(const json& obj, const std::string& key, const std::string& path) const {
    std::string text = string(obj, key, path);
    std::uint64_t value = 0;
    if (!checksum_from_hex(text, value))
      fail(path + key + " is \"" + text + "\", not a checksum of the form 0x + 16 hex digits");
    return value;
  }
  // A plain file name: shard and tokenizer files live in the data directory itself.
  std::string file_name(const json& obj, const std::string& key, const std::string& path) const {
    std::string name = string(obj, key, path);
    if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos)
      fail(path + key + " is \"" + name + "\", not a file name inside the data directory");
    return name;
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw data_error("manifest " + where_ + ": " + what +
                     "; the manifest is damaged or not from glam: prepare the data again");
  }

 private:
  std::string where_;
};

std::vector<shard_info> read_stream(const reader& r, const json& root, const std::string& name,
                                    std::int64_t& total) {
  const json& stream = r.field(root, name, "");
  const json& shards = r.field(stream, "shards", name + ".");
  if (!shards.is_array() || shards.empty()) r.fail(name + ".shards is not a non-empty list");
  total = r.integer(stream, "tokens", name + ".");
  std::vector<shard_info> out;
  std::int64_t sum = 0;
  for (std::size_t i = 0; i < shards.size(); ++i) {
    std::string path = name + ".shards[" + std::to_string(i) + "].";
    shard_info s;
    s.file = r.file_name(shards[i], "file", path);
    s.tokens = r.integer(shards[i], "tokens", path);
    s.bytes = static_cast<std::uint64_t>(r.integer(shards[i], "bytes", path));
    s.checksum = r.checksum(shards[i], "checksum", path);
    sum += s.tokens;
    out.push_back(std::move(s));
  }
  if (sum != total)
    r.fail(name + ".tokens is " + std::to_string(total) + " but its shards hold " +
           std::to_string(sum));
  return out;
}

}  // namespace

std::string manifest_to_json(const data_manifest& m) {
  json train_shards = json::array(), validation_shards = json::array(), sources = json::array();
  for (const auto& s : m.train) train_shards.push_back(shard_json(s));
  for (const auto& s : m.validation) validation_shards.push_back(shard_json(s));
  for (const auto& s : m.sources)
    sources.push_back({{"file", s.file},
                       {"bytes", s.bytes},
                       {"checksum", checksum_to_hex(s.checksum)},
                       {"documents", s.documents}});
  json j = {
      {"format", manifest_format},
      {"format_version", m.format_version},
      {"vocab_size", m.vocab_size},
      {"unk_id", m.unk_id},
      {"bos_id", m.bos_id},
      {"eos_id", m.eos_id},
      {"tokenizer",
       {{"file", m.tokenizer_file},
        {"bytes", m.tokenizer_bytes},
        {"checksum", checksum_to_hex(m.tokenizer_checksum)},
        {"trained", m.tokenizer_trained}}},
      {"token_dtype", dtype_name(m.dtype)},
      {"train",
       {{"tokens", m.train_tokens}, {"documents", m.train_documents}, {"shards", train_shards}}},
      {"validation",
       {{"tokens", m.validation_tokens},
        {"documents", m.validation_documents},
        {"shards", validation_shards}}},
      {"unigram_entropy_nats", m.unigram_entropy},
      {"prepared_with",
       {{"vocab_size_requested", m.vocab_size_requested},
        {"val_fraction", m.val_fraction},
        {"split_seed", m.split_seed},
        {"sources", sources}}},
  };
  return j.dump(2) + "\n";
}

data_manifest manifest_from_json(const std::string& text, const std::string& where) {
  reader r(where);
  json root;
  try {
    root = json::parse(text);
  } catch (const json::exception& e) {
    r.fail(std::string("not valid JSON (") + e.what() + ")");
  }
  if (!root.is_object()) r.fail("the top level is not a JSON object");
  if (r.string(root, "format") != manifest_format)
    r.fail("format is not \"" + std::string(manifest_format) + "\"");
  data_manifest m;
  m.format_version = static_cast<int>(r.integer(root, "format_version"));
  if (m.format_version != manifest_format_version)
    throw data_error("manifest " + where + ": format_version " + std::to_string(m.format_version) +
                     " is not the supported version " + std::to_string(manifest_format_version) +
                     "; prepare the data again with this glam");
  m.vocab_size = r.integer(root, "vocab_size", "", 1);
  m.unk_id = static_cast<std::int32_t>(r.integer(root, "unk_id", "", -1));
  m.bos_id = static_cast<std::int32_t>(r.integer(root, "bos_id", "", -1));
  m.eos_id = static_cast<std::int32_t>(r.integer(root, "eos_id"));
  if (m.eos_id >= m.vocab_size) r.fail("eos_id is not below vocab_size");
  const json& tok = r.field(root, "tokenizer", "");
  m.tokenizer_file = r.file_name(tok, "file", "tokenizer.");
  m.tokenizer_bytes = static_cast<std::uint64_t>(r.integer(tok, "bytes", "tokenizer."));
  m.tokenizer_checksum = r.checksum(tok, "checksum", "tokenizer.");
  m.tokenizer_trained = r.boolean(tok, "trained", "tokenizer.");
  m.dtype = dtype_from_name(r.string(root, "token_dtype"), "manifest " + where);
  if (m.dtype == token_dtype::uint16 && m.vocab_size > 65536)
    r.fail("token_dtype uint16 cannot hold vocab_size " + std::to_string(m.vocab_size));
  m.train = read_stream(r, root, "train", m.train_tokens);
  m.validation = read_stream(r, root, "validation", m.validation_tokens);
  m.train_documents = r.integer(r.field(root, "train", ""), "documents", "train.");
  m.validation_documents = r.integer(r.field(root, "validation", ""), "documents", "validation.");
  for (const auto* stream : {&m.train, &m.validation})
    for (const auto& s : *stream)
      if (s.bytes != static_cast<std::uint64_t>(s.tokens) * bytes_per_token(m.dtype))
        r.fail("shard " + s.file + " lists " + std::to_string(s.bytes) + " bytes for " +
               std::to_string(s.tokens) + " " + dtype_name(m.dtype) + " tokens");
  m.unigram_entropy = r.number(root, "unigram_entropy_nats");
  if (root.contains("prepared_with")) {
    const json& how = root.at("prepared_with");
    if (how.is_object()) {
      if (how.contains("vocab_size_requested") && how["vocab_size_requested"].is_number_integer())
        m.vocab_size_requested = how["vocab_size_requested"].get<std::int64_t>();
      if (how.contains("val_fraction") && how["val_fraction"].is_number())
        m.val_fraction = how["val_fraction"].get<double>();
      if (how.contains("split_seed") && how["split_seed"].is_number_unsigned())
        m.split_seed = how["split_seed"].get<std::uint64_t>();
      if (how.contains("sources") && how["sources"].is_array())
        for (const auto& s : how["sources"]) {
          source_info info;
          if (!s.is_object()) continue;
          info.file = s.value("file", std::string());
          info.bytes = s.value("bytes", std::uint64_t{0});
          checksum_from_hex(s.value("checksum", std::string()), info.checksum);
          info.documents = s.value("documents", std::int64_t{0});
          m.sources.push_back(std::move(info));
        }
    }
  }
  return m;
}

data_manifest read_manifest(const std::string& dir) {
  std::string path = dir + "/" + manifest_file_name;
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw data_error("data directory " + dir + " has no readable " + manifest_file_name +
                     "; prepare it with `glam data prepare --input ... --out " + dir + "`");
  std::ostringstream text;
  text << in.rdbuf();
  return manifest_from_json(text.str(), path);
}

void write_manifest(const std::string& dir, const data_manifest& m) {
  std::string path = dir + "/" + manifest_file_name;
  std::string temp = path + ".tmp";
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    std::string text = manifest_to_json(m);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.close();
    if (!out) throw data_error("cannot write " + temp + ": " + std::strerror(errno));
  }
  std::error_code ec;
  std::filesystem::rename(temp, path, ec);
  if (ec) throw data_error("cannot rename " + temp + " to " + path + ": " + ec.message());
}

}  // namespace glam
