#include "actors/inference_messages.hpp"

#include <algorithm>

#include <caf/deserializer.hpp>
#include <caf/sec.hpp>
#include <caf/serializer.hpp>

namespace glam {

caf::error inspect(caf::serializer& f, float_block& x) {
  auto n = static_cast<std::uint64_t>(x.data.size());
  if (auto err = f(x.shape, x.offset, n)) return err;
  if (n == 0) return caf::none;
  return f.apply_raw(n * sizeof(float), x.data.data());
}

caf::error inspect(caf::deserializer& f, float_block& x) {
  std::uint64_t n = 0;
  if (auto err = f(x.shape, x.offset, n)) return err;
  // A forged count must not make us allocate: parts are bounded by construction.
  if (n > static_cast<std::uint64_t>(max_chunk_floats))
    return caf::make_error(caf::sec::invalid_argument, "a tensor part of " + std::to_string(n) +
                                                           " floats exceeds the bound of " +
                                                           std::to_string(max_chunk_floats));
  x.data.resize(static_cast<std::size_t>(n));
  if (n == 0) return caf::none;
  return f.apply_raw(n * sizeof(float), x.data.data());
}

float_block block_of(const tensor& t, std::int64_t offset, std::int64_t count) {
  float_block b;
  b.shape = t.shape;
  const std::int64_t n = t.size();
  b.offset = std::clamp<std::int64_t>(offset, 0, n);
  const std::int64_t len = std::clamp<std::int64_t>(std::min(count, max_chunk_floats), 0, n - b.offset);
  b.data.assign(t.data.begin() + b.offset, t.data.begin() + b.offset + len);
  return b;
}

const char* to_string(infer_op op) {
  switch (op) {
    case infer_op::prepare: return "prepare";
    case infer_op::begin: return "begin";
    case infer_op::read: return "read";
    case infer_op::write: return "write";
    case infer_op::resume: return "resume";
    case infer_op::abort: return "abort";
    case infer_op::expert: return "expert";
  }
  return "unknown";
}

}  // namespace glam
