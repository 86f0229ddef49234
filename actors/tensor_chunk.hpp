#pragma once
// Tensors on the wire: a tensor travels as one or more chunks, each a raw block of floats
// of bounded size (a CAF message peaks at 3-4x its payload in memory, and the wire format
// caps a message at 4 GiB). A chunk is serialised as its header plus one raw block, not
// float by float (caf-notes.md: ~45 MB/s float by float, ~800 MB/s raw).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/fwd.hpp>

#include "actors/messages.hpp"
#include "kernels/tensor.hpp"

namespace glam {

// The largest chunk payload a sender makes and a receiver accepts (floats).
inline constexpr std::int64_t max_chunk_floats = std::int64_t{1} << 20;  // 4 MiB
// The largest tensor the assembler accepts (floats): bounds what a peer can make us hold.
inline constexpr std::int64_t max_tensor_floats = std::int64_t{1} << 30;  // 4 GiB

struct tensor_chunk {
  job_tag tag;
  round_id round;
  std::int32_t from = -1;        // sending and receiving unit actor, by number
  std::int32_t to = -1;          // (unit_layout.hpp)
  std::int64_t tensor_id = 0;    // which tensor of the exchange (sender's numbering)
  std::vector<index> shape;      // of the whole tensor
  std::int64_t offset = 0;       // first element of this chunk in the whole tensor
  std::vector<float> data;       // raw block, at most max_chunk_floats
};

caf::error inspect(caf::serializer& f, tensor_chunk& x);
caf::error inspect(caf::deserializer& f, tensor_chunk& x);

// Splits t into chunks of at most chunk_floats elements (an empty tensor is one chunk
// with no data, so that "nothing for you" still arrives).
std::vector<tensor_chunk> split_tensor(const tensor& t, const job_tag& tag, const round_id& round,
                                       std::int64_t tensor_id,
                                       std::int64_t chunk_floats = max_chunk_floats);

// Collects the chunks of one tensor in any order; add() says why a chunk does not fit
// (another shape than the one expected, overlap, out of bounds, oversized) instead of
// trusting the sender. Nothing is allocated before the shape has been checked.
class tensor_assembler {
 public:
  // expected: the shape the receiver's job implies for this tensor ({0} is always accepted
  // too: an all-zero tensor travels empty).
  explicit tensor_assembler(std::vector<index> expected) : expected_(std::move(expected)) {}
  // Returns an empty string when accepted, else the reason.
  std::string add(tensor_chunk chunk);
  bool complete() const;
  // The tensor once complete (moves it out).
  tensor take();

 private:
  std::vector<index> expected_;
  bool started_ = false;
  tensor t_;
  std::int64_t received_ = 0;
  std::vector<std::pair<std::int64_t, std::int64_t>> ranges_;  // [begin, end) received
};

}  // namespace glam
