#pragma once
// Tensors and unit states on the wire: each travels as one or more chunks, each a raw block
// of bounded size (a CAF message peaks at 3-4x its payload in memory, the wire format caps
// a message at 4 GiB, and the relay refuses frames over 5 MiB). A chunk is serialised as its
// header plus one raw block, not element by element (~45 MB/s element by element, ~800 MB/s
// raw).
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
// A unit's state (a snapshot, model/checkpoint.hpp's unit_snapshot) in chunks: to a buddy
// worker that keeps a copy, or to a worker that fetches it to restore the unit.
inline constexpr std::int64_t max_blob_chunk_bytes = std::int64_t{4} << 20;

struct blob_chunk {
  job_tag tag;
  std::string unit;
  std::int64_t step = 0;
  std::uint64_t checksum = 0;  // of the whole state
  std::uint64_t total = 0;     // bytes of the whole state
  std::uint64_t offset = 0;
  std::string data;            // raw block, at most max_blob_chunk_bytes
};

caf::error inspect(caf::serializer& f, blob_chunk& x);
caf::error inspect(caf::deserializer& f, blob_chunk& x);

std::vector<blob_chunk> split_state(const unit_snapshot& s, const job_tag& tag,
                                    std::int64_t chunk_bytes = max_blob_chunk_bytes);

// Collects the chunks of one unit state in any order, refusing a total over `max_total`
// (what the job's layout makes of the unit) before allocating, and chunks that overlap, fall
// outside or disagree; the whole must match its checksum.
class state_assembler {
 public:
  explicit state_assembler(std::uint64_t max_total) : max_total_(max_total) {}
  // Empty when accepted, else the reason.
  std::string add(blob_chunk c);
  bool complete() const { return started_ && received_ == state_.bytes.size(); }
  // The state once complete; empty unit and the reason in *why when its checksum is wrong.
  unit_snapshot take(std::string* why);

 private:
  std::uint64_t max_total_;
  bool started_ = false;
  unit_snapshot state_;
  std::uint64_t received_ = 0;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges_;
};

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
