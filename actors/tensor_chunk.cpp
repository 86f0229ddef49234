#include "actors/tensor_chunk.hpp"

#include <algorithm>

#include <caf/deserializer.hpp>
#include <caf/sec.hpp>
#include <caf/serializer.hpp>

#include "data/checksum.hpp"

namespace glam {

caf::error inspect(caf::serializer& f, tensor_chunk& x) {
  auto n = static_cast<std::uint64_t>(x.data.size());
  if (auto err = f(x.tag, x.round, x.from, x.to, x.tensor_id, x.shape, x.offset, n)) return err;
  if (n == 0) return caf::none;
  return f.apply_raw(n * sizeof(float), x.data.data());
}

caf::error inspect(caf::deserializer& f, tensor_chunk& x) {
  std::uint64_t n = 0;
  if (auto err = f(x.tag, x.round, x.from, x.to, x.tensor_id, x.shape, x.offset, n)) return err;
  // A forged count must not make us allocate: chunks are bounded by construction.
  if (n > static_cast<std::uint64_t>(max_chunk_floats))
    return caf::make_error(caf::sec::invalid_argument,
                           "tensor chunk of " + std::to_string(n) + " floats exceeds the bound of " +
                               std::to_string(max_chunk_floats));
  x.data.resize(static_cast<std::size_t>(n));
  if (n == 0) return caf::none;
  return f.apply_raw(n * sizeof(float), x.data.data());
}

std::vector<tensor_chunk> split_tensor(const tensor& t, const job_tag& tag, const round_id& round,
                                       std::int64_t tensor_id, std::int64_t chunk_floats) {
  if (chunk_floats <= 0 || chunk_floats > max_chunk_floats)
    throw std::invalid_argument("split_tensor: chunk_floats " + std::to_string(chunk_floats) +
                                " must be in [1, " + std::to_string(max_chunk_floats) + "]");
  std::vector<tensor_chunk> out;
  const index n = t.size();
  index offset = 0;
  do {
    const index len = std::min<index>(chunk_floats, n - offset);
    tensor_chunk c;
    c.tag = tag;
    c.round = round;
    c.tensor_id = tensor_id;
    c.shape = t.shape;
    c.offset = offset;
    c.data.assign(t.data.begin() + offset, t.data.begin() + offset + len);
    out.push_back(std::move(c));
    offset += len;
  } while (offset < n);
  return out;
}

caf::error inspect(caf::serializer& f, blob_chunk& x) {
  auto n = static_cast<std::uint64_t>(x.data.size());
  if (auto err = f(x.tag, x.unit, x.step, x.checksum, x.total, x.offset, n)) return err;
  if (n == 0) return caf::none;
  return f.apply_raw(n, x.data.data());
}

caf::error inspect(caf::deserializer& f, blob_chunk& x) {
  std::uint64_t n = 0;
  if (auto err = f(x.tag, x.unit, x.step, x.checksum, x.total, x.offset, n)) return err;
  if (n > static_cast<std::uint64_t>(max_blob_chunk_bytes))
    return caf::make_error(caf::sec::invalid_argument, "state chunk of " + std::to_string(n) +
                                                           " bytes exceeds the bound of " +
                                                           std::to_string(max_blob_chunk_bytes));
  x.data.resize(static_cast<std::size_t>(n));
  if (n == 0) return caf::none;
  return f.apply_raw(n, x.data.data());
}

std::vector<blob_chunk> split_state(const unit_snapshot& s, const job_tag& tag, std::int64_t chunk_bytes) {
  if (chunk_bytes <= 0 || chunk_bytes > max_blob_chunk_bytes)
    throw std::invalid_argument("split_state: chunk_bytes " + std::to_string(chunk_bytes) + " must be in [1, " +
                                std::to_string(max_blob_chunk_bytes) + "]");
  std::vector<blob_chunk> out;
  const std::uint64_t n = s.bytes.size();
  std::uint64_t offset = 0;
  do {
    const auto len = std::min<std::uint64_t>(static_cast<std::uint64_t>(chunk_bytes), n - offset);
    out.push_back({tag, s.unit, s.step, s.checksum, n, offset, s.bytes.substr(offset, len)});
    offset += len;
  } while (offset < n);
  return out;
}

std::string state_assembler::add(blob_chunk c) {
  if (c.total > max_total_)
    return "state chunk: a state of " + std::to_string(c.total) + " bytes where the job's layout allows at most " +
           std::to_string(max_total_);
  const auto len = static_cast<std::uint64_t>(c.data.size());
  if (c.offset > c.total || len > c.total - c.offset)
    return "state chunk: range [" + std::to_string(c.offset) + ", " + std::to_string(c.offset + len) +
           ") outside a state of " + std::to_string(c.total) + " bytes";
  if (!started_) {
    state_.unit = c.unit;
    state_.step = c.step;
    state_.checksum = c.checksum;
    state_.bytes.assign(static_cast<std::size_t>(c.total), '\0');
    started_ = true;
  } else if (c.unit != state_.unit || c.step != state_.step || c.checksum != state_.checksum ||
             c.total != state_.bytes.size()) {
    return "state chunk: of another state than the first chunk's";
  }
  for (const auto& r : ranges_)
    if (c.offset < r.second && r.first < c.offset + len) return "state chunk: a range received twice";
  if (len == 0 && c.total != 0) return "state chunk: empty chunk of a non-empty state";
  std::copy(c.data.begin(), c.data.end(), state_.bytes.begin() + static_cast<std::ptrdiff_t>(c.offset));
  ranges_.emplace_back(c.offset, c.offset + len);
  received_ += len;
  return {};
}

unit_snapshot state_assembler::take(std::string* why) {
  if (!complete()) throw std::logic_error("state_assembler::take before the state is complete");
  if (checksum64(state_.bytes.data(), state_.bytes.size()) != state_.checksum) {
    if (why) *why = "the state of " + state_.unit + " at step " + std::to_string(state_.step) + " fails its checksum";
    return {};
  }
  return std::move(state_);
}

std::string tensor_assembler::add(tensor_chunk c) {
  const bool empty = c.shape.size() == 1 && c.shape[0] == 0;
  if (c.shape != expected_ && !empty)
    return "tensor chunk: shape " + shape_string(c.shape) + " where the job implies " + shape_string(expected_);
  index total = 1;
  for (index d : c.shape) {
    if (d < 0) return "tensor chunk: negative dimension in shape " + shape_string(c.shape);
    if (d > 0 && total > max_tensor_floats / d)
      return "tensor chunk: shape " + shape_string(c.shape) + " exceeds the bound of " +
             std::to_string(max_tensor_floats) + " elements";
    total *= d;
  }
  if (total > max_tensor_floats)
    return "tensor chunk: shape " + shape_string(c.shape) + " exceeds the bound";
  const auto len = static_cast<index>(c.data.size());
  if (len > max_chunk_floats) return "tensor chunk: " + std::to_string(len) + " floats exceed the chunk bound";
  if (c.offset < 0 || c.offset > total || len > total - c.offset)
    return "tensor chunk: range [" + std::to_string(c.offset) + ", " + std::to_string(c.offset + len) +
           ") outside a tensor of " + std::to_string(total) + " elements";
  if (!started_) {
    t_ = tensor(c.shape);
    started_ = true;
  } else if (t_.shape != c.shape) {
    return "tensor chunk: shape " + shape_string(c.shape) + " differs from the first chunk's " +
           shape_string(t_.shape);
  }
  for (const auto& r : ranges_)
    if (c.offset < r.second && r.first < c.offset + len)
      return "tensor chunk: range starting at " + std::to_string(c.offset) + " overlaps one received";
  if (len == 0 && total != 0) return "tensor chunk: empty chunk of a non-empty tensor";
  std::copy(c.data.begin(), c.data.end(), t_.data.begin() + c.offset);
  ranges_.emplace_back(c.offset, c.offset + len);
  received_ += len;
  return {};
}

bool tensor_assembler::complete() const { return started_ && received_ == t_.size(); }

tensor tensor_assembler::take() {
  if (!complete()) throw std::logic_error("tensor_assembler::take before the tensor is complete");
  started_ = false;
  received_ = 0;
  ranges_.clear();
  return std::move(t_);
}

}  // namespace glam
