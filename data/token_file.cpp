#include "data/token_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "data/error.hpp"

namespace glam {

token_dtype dtype_for_vocab(std::int64_t vocab_size) {
  return vocab_size <= 65536 ? token_dtype::uint16 : token_dtype::uint32;
}

std::size_t bytes_per_token(token_dtype dtype) { return dtype == token_dtype::uint16 ? 2 : 4; }

std::string dtype_name(token_dtype dtype) {
  return dtype == token_dtype::uint16 ? "uint16" : "uint32";
}

token_dtype dtype_from_name(const std::string& name, const std::string& where) {
  if (name == "uint16") return token_dtype::uint16;
  if (name == "uint32") return token_dtype::uint32;
  throw data_error(where + ": token_dtype \"" + name +
                   "\" is not one of uint16, uint32; the manifest is damaged or from a newer "
                   "glam: prepare the data again");
}

token_stream_writer::token_stream_writer(std::string dir, std::string prefix, token_dtype dtype,
                                         std::int64_t max_tokens_per_shard)
    : dir_(std::move(dir)),
      prefix_(std::move(prefix)),
      dtype_(dtype),
      max_tokens_(max_tokens_per_shard) {
  if (max_tokens_ < 1)
    throw data_error("max_tokens_per_shard is " + std::to_string(max_tokens_) +
                     "; it must be at least 1");
}

token_stream_writer::~token_stream_writer() {
  if (file_) std::fclose(file_);
}

void token_stream_writer::open_next() {
  char name[64];
  std::snprintf(name, sizeof(name), "-%05zu.bin", shards_.size());
  current_ = shard_info{prefix_ + name, 0, 0, 0};
  current_checksum_ = checksum64_stream();
  std::string path = dir_ + "/" + current_.file;
  file_ = std::fopen(path.c_str(), "wb");
  if (!file_) throw data_error("cannot create shard " + path + ": " + std::strerror(errno));
}

void token_stream_writer::close_current() {
  std::string path = dir_ + "/" + current_.file;
  bool ok = std::fflush(file_) == 0;
  ok = (std::fclose(file_) == 0) && ok;
  file_ = nullptr;
  if (!ok) throw data_error("cannot write shard " + path + ": " + std::strerror(errno));
  current_.checksum = current_checksum_.digest();
  shards_.push_back(current_);
}

void token_stream_writer::append(const std::int32_t* ids, std::size_t count) {
  const std::size_t width = bytes_per_token(dtype_);
  const std::int64_t limit = dtype_ == token_dtype::uint16 ? 65535 : 2147483647;
  std::size_t done = 0;
  while (done < count) {
    if (!file_) open_next();
    std::size_t take = std::min<std::size_t>(
        count - done, static_cast<std::size_t>(max_tokens_ - current_.tokens));
    buffer_.resize(take * width);
    for (std::size_t i = 0; i < take; ++i) {
      std::int32_t id = ids[done + i];
      if (id < 0 || id > limit)
        throw data_error("token id " + std::to_string(id) + " does not fit the shard dtype " +
                         dtype_name(dtype_) + "; the tokenizer and the dtype disagree");
      auto v = static_cast<std::uint32_t>(id);
      for (std::size_t b = 0; b < width; ++b)
        buffer_[i * width + b] = static_cast<unsigned char>(v >> (8 * b));
    }
    if (std::fwrite(buffer_.data(), 1, buffer_.size(), file_) != buffer_.size())
      throw data_error("cannot write shard " + dir_ + "/" + current_.file + ": " +
                       std::strerror(errno));
    current_checksum_.update(buffer_.data(), buffer_.size());
    current_.tokens += static_cast<std::int64_t>(take);
    current_.bytes += buffer_.size();
    total_ += static_cast<std::int64_t>(take);
    done += take;
    if (current_.tokens == max_tokens_) close_current();
  }
}

std::vector<shard_info> token_stream_writer::finish() {
  if (file_) close_current();
  if (shards_.empty()) {
    open_next();
    close_current();
  }
  return shards_;
}

mapped_token_file mapped_token_file::open(const std::string& path, token_dtype dtype,
                                          std::int64_t expected_tokens, bool verify_checksum,
                                          std::uint64_t expected_checksum) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw data_error("shard " + path + " cannot be opened: " + std::strerror(errno) +
                     "; the data directory is incomplete: prepare it again");
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    throw data_error("shard " + path + " cannot be inspected: " + std::strerror(e));
  }
  const auto expected_bytes = static_cast<std::uint64_t>(expected_tokens) * bytes_per_token(dtype);
  if (static_cast<std::uint64_t>(st.st_size) != expected_bytes) {
    ::close(fd);
    throw data_error("shard " + path + " holds " + std::to_string(st.st_size) +
                     " bytes but the manifest says " + std::to_string(expected_tokens) + " " +
                     dtype_name(dtype) + " tokens (" + std::to_string(expected_bytes) +
                     " bytes); the file is truncated or replaced: prepare the data again");
  }
  mapped_token_file f;
  f.size_ = expected_bytes;
  f.tokens_ = expected_tokens;
  f.dtype_ = dtype;
  if (f.size_ > 0) {
    void* p = ::mmap(nullptr, f.size_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      throw data_error("shard " + path + " cannot be memory-mapped: " + std::strerror(e));
    }
    f.data_ = static_cast<const unsigned char*>(p);
  }
  ::close(fd);  // the mapping keeps the file alive
  if (verify_checksum) {
    if (f.size_ > 0) ::madvise(const_cast<unsigned char*>(f.data_), f.size_, MADV_SEQUENTIAL);
    std::uint64_t actual = checksum64(f.data_, f.size_);
    if (actual != expected_checksum)
      throw data_error("shard " + path + " has checksum " + checksum_to_hex(actual) +
                       " but the manifest says " + checksum_to_hex(expected_checksum) +
                       "; the file is corrupted or was changed: prepare the data again");
    if (f.size_ > 0) ::madvise(const_cast<unsigned char*>(f.data_), f.size_, MADV_RANDOM);
  }
  return f;
}

mapped_token_file::mapped_token_file(mapped_token_file&& other) noexcept {
  *this = std::move(other);
}

mapped_token_file& mapped_token_file::operator=(mapped_token_file&& other) noexcept {
  if (this != &other) {
    if (data_) ::munmap(const_cast<unsigned char*>(data_), size_);
    data_ = other.data_;
    size_ = other.size_;
    tokens_ = other.tokens_;
    dtype_ = other.dtype_;
    other.data_ = nullptr;
    other.size_ = 0;
    other.tokens_ = 0;
  }
  return *this;
}

mapped_token_file::~mapped_token_file() {
  if (data_) ::munmap(const_cast<unsigned char*>(data_), size_);
}

void mapped_token_file::read(std::int64_t offset, std::int64_t count, std::int32_t* out) const {
  if (offset < 0 || count < 0 || offset + count > tokens_)
    throw data_error("shard read [" + std::to_string(offset) + ", " +
                     std::to_string(offset + count) + ") is outside its " +
                     std::to_string(tokens_) + " tokens");
  if (dtype_ == token_dtype::uint16) {
    const unsigned char* p = data_ + offset * 2;
    for (std::int64_t i = 0; i < count; ++i)
      out[i] = static_cast<std::int32_t>(p[2 * i] | (p[2 * i + 1] << 8));
  } else {
    const unsigned char* p = data_ + offset * 4;
    for (std::int64_t i = 0; i < count; ++i)
      out[i] = static_cast<std::int32_t>(static_cast<std::uint32_t>(p[4 * i]) |
                                         (static_cast<std::uint32_t>(p[4 * i + 1]) << 8) |
                                         (static_cast<std::uint32_t>(p[4 * i + 2]) << 16) |
                                         (static_cast<std::uint32_t>(p[4 * i + 3]) << 24));
  }
}

}  // namespace glam
