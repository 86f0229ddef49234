#include "data/dataset.hpp"

#include <algorithm>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <tuple>

#include "data/checksum.hpp"
#include "data/error.hpp"
#include "data/sample_order.hpp"

namespace glam {
namespace {

// A token stream made of consecutive shard files.
struct token_stream {
  std::vector<mapped_token_file> files;
  std::vector<std::int64_t> starts;  // first token of each file in the stream
  std::int64_t tokens = 0;

  void read(std::int64_t offset, std::int64_t count, std::int32_t* out, const char* name) const {
    if (offset < 0 || count < 0 || offset > tokens - count)
      throw data_error(std::string("read of ") + name + " tokens [" + std::to_string(offset) +
                       ", " + std::to_string(offset + count) + ") is outside the " +
                       std::to_string(tokens) + " tokens of the stream");
    // The last file that starts at or before `offset`.
    auto it = std::upper_bound(starts.begin(), starts.end(), offset);
    std::size_t f = static_cast<std::size_t>(it - starts.begin()) - 1;
    while (count > 0) {
      std::int64_t local = offset - starts[f];
      std::int64_t take = std::min(count, files[f].tokens() - local);
      if (take > 0) files[f].read(local, take, out);
      out += take;
      offset += take;
      count -= take;
      ++f;
    }
  }
};

token_stream open_stream(const std::string& dir, const std::vector<shard_info>& shards,
                         token_dtype dtype) {
  token_stream s;
  for (const auto& info : shards) {
    s.starts.push_back(s.tokens);
    s.files.push_back(
        mapped_token_file::open(dir + "/" + info.file, dtype, info.tokens, true, info.checksum));
    s.tokens += info.tokens;
  }
  return s;
}

}  // namespace

struct dataset::impl {
  std::string dir;
  data_manifest manifest;
  std::uint64_t fingerprint = 0;
  token_stream train, validation;

  // Permutations of recent (seed, epoch, windows): a training run asks for one or two
  // epochs at a time, evaluation code for another seq_len perhaps; a few entries suffice.
  using key = std::tuple<std::uint64_t, std::int64_t, std::int64_t>;
  mutable std::mutex cache_mutex;
  mutable std::deque<std::pair<key, std::shared_ptr<const std::vector<std::int64_t>>>> cache;
  static constexpr std::size_t cache_entries = 8;

  std::shared_ptr<const std::vector<std::int64_t>> permutation(std::uint64_t seed,
                                                               std::int64_t epoch,
                                                               std::int64_t windows) const {
    key k{seed, epoch, windows};
    std::lock_guard<std::mutex> lock(cache_mutex);
    for (const auto& entry : cache)
      if (entry.first == k) return entry.second;
    auto perm =
        std::make_shared<const std::vector<std::int64_t>>(epoch_permutation(seed, epoch, windows));
    cache.emplace_back(k, perm);
    if (cache.size() > cache_entries) cache.pop_front();
    return perm;
  }
};

dataset::dataset(std::shared_ptr<const impl> p) : impl_(std::move(p)) {}

dataset dataset::open(const std::string& dir) {
  auto p = std::make_shared<impl>();
  p->dir = dir;
  std::string manifest_path = dir + "/" + manifest_file_name;
  {
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec))
      throw data_error("data directory " + dir +
                       " does not exist; prepare one with `glam data prepare --input ... --out " +
                       dir + "`");
    std::ifstream in(manifest_path, std::ios::binary);
    if (!in)
      throw data_error("data directory " + dir + " has no " + manifest_file_name +
                       "; it is not a prepared data directory (or its preparation did not "
                       "finish): run `glam data prepare --input ... --out " +
                       dir + "`");
    std::ostringstream text;
    text << in.rdbuf();
    std::string bytes = text.str();
    p->fingerprint = checksum64(bytes.data(), bytes.size());
    p->manifest = manifest_from_json(bytes, manifest_path);
  }
  const data_manifest& m = p->manifest;
  std::string tokenizer = dir + "/" + m.tokenizer_file;
  std::error_code ec;
  auto size = std::filesystem::file_size(tokenizer, ec);
  if (ec)
    throw data_error("tokenizer " + tokenizer + " named by " + manifest_path + " cannot be read (" +
                     ec.message() + "); prepare the data again");
  if (size != m.tokenizer_bytes)
    throw data_error("tokenizer " + tokenizer + " holds " + std::to_string(size) +
                     " bytes but the manifest says " + std::to_string(m.tokenizer_bytes) +
                     "; the file was changed: prepare the data again");
  std::uint64_t sum = file_checksum64(tokenizer);
  if (sum != m.tokenizer_checksum)
    throw data_error("tokenizer " + tokenizer + " has checksum " + checksum_to_hex(sum) +
                     " but the manifest says " + checksum_to_hex(m.tokenizer_checksum) +
                     "; the file is corrupted or was changed: prepare the data again");
  p->train = open_stream(dir, m.train, m.dtype);
  p->validation = open_stream(dir, m.validation, m.dtype);
  return dataset(std::move(p));
}

std::int64_t dataset::vocab_size() const { return impl_->manifest.vocab_size; }
std::int64_t dataset::train_tokens() const { return impl_->train.tokens; }
std::int64_t dataset::validation_tokens() const { return impl_->validation.tokens; }
std::int64_t dataset::longest_trainable_sequence() const {
  return std::max<std::int64_t>(0, std::min(train_tokens(), validation_tokens()) - 1);
}
double dataset::unigram_entropy() const { return impl_->manifest.unigram_entropy; }
std::int32_t dataset::eos_id() const { return impl_->manifest.eos_id; }
std::string dataset::tokenizer_path() const {
  return impl_->dir + "/" + impl_->manifest.tokenizer_file;
}
std::string dataset::directory() const { return impl_->dir; }
const data_manifest& dataset::manifest() const { return impl_->manifest; }
std::uint64_t dataset::fingerprint() const { return impl_->fingerprint; }

namespace {
void check_batch(std::int64_t batch) {
  if (batch < 1)
    throw data_error("batch is " + std::to_string(batch) + "; it must be at least 1 row per shard");
}

void check_seq_len(std::int64_t seq_len, std::int64_t windows, std::int64_t tokens,
                   const char* stream) {
  if (seq_len < 1 || windows < 1)
    throw data_error(
        "seq_len " + std::to_string(seq_len) + " does not fit the " + stream + " stream of " +
        std::to_string(tokens) + " tokens (a window needs seq_len + 1 " +
        "tokens); use a seq_len between 1 and " +
        std::to_string(std::max<std::int64_t>(0, tokens - 1)) + " or prepare more text");
}
}  // namespace

std::int64_t dataset::train_windows(std::int64_t seq_len) const {
  return seq_len < 1 ? 0 : (train_tokens() - 1) / seq_len;
}

std::int64_t dataset::validation_windows(std::int64_t seq_len) const {
  return seq_len < 1 ? 0 : (validation_tokens() - 1) / seq_len;
}

std::int64_t dataset::train_window(std::uint64_t seed, std::int64_t position,
                                   std::int64_t seq_len) const {
  std::int64_t windows = train_windows(seq_len);
  check_seq_len(seq_len, windows, train_tokens(), "train");
  if (position < 0)
    throw data_error("sample position " + std::to_string(position) + " is negative");
  auto perm = impl_->permutation(seed, position / windows, windows);
  return (*perm)[static_cast<std::size_t>(position % windows)];
}

void dataset::train_batch(std::uint64_t seed, std::int64_t step, std::int64_t shard,
                          std::int64_t shards, std::int64_t batch, std::int64_t seq_len,
                          std::int32_t* out) const {
  std::int64_t windows = train_windows(seq_len);
  check_seq_len(seq_len, windows, train_tokens(), "train");
  check_batch(batch);
  std::shared_ptr<const std::vector<std::int64_t>> perm;
  std::int64_t perm_epoch = -1;
  for (std::int64_t b = 0; b < batch; ++b) {
    std::int64_t p = sample_position(step, shard, shards, batch, b);
    std::int64_t epoch = p / windows;
    if (epoch != perm_epoch) {  // a batch may straddle an epoch boundary
      perm = impl_->permutation(seed, epoch, windows);
      perm_epoch = epoch;
    }
    std::int64_t w = (*perm)[static_cast<std::size_t>(p % windows)];
    impl_->train.read(w * seq_len, seq_len + 1, out + b * (seq_len + 1), "train");
  }
}

void dataset::validation_batch(std::int64_t index, std::int64_t shard, std::int64_t shards,
                               std::int64_t batch, std::int64_t seq_len, std::int32_t* out) const {
  std::int64_t windows = validation_windows(seq_len);
  check_seq_len(seq_len, windows, validation_tokens(), "validation");
  check_batch(batch);
  for (std::int64_t b = 0; b < batch; ++b) {
    std::int64_t w = sample_position(index, shard, shards, batch, b) % windows;
    impl_->validation.read(w * seq_len, seq_len + 1, out + b * (seq_len + 1), "validation");
  }
}

void dataset::read_train_tokens(std::int64_t offset, std::int64_t count, std::int32_t* out) const {
  impl_->train.read(offset, count, out, "train");
}

void dataset::read_validation_tokens(std::int64_t offset, std::int64_t count,
                                     std::int32_t* out) const {
  impl_->validation.read(offset, count, out, "validation");
}

}  // namespace glam
