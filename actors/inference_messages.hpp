#pragma once
// The messages of inference on the actor runtime (docs/serving.md, "The actor backend"): a
// serving session's units (one attention shard, every expert) hosted on workers, loaded from
// a checkpoint, and the calls that run passes on them. A client (the actor backend) sends
// each call to the coordinator, which routes it to the worker hosting the unit named and
// relays the answer; the worker hands it to the session's inference actor
// (worker/inference_actor.hpp), which calls the plain inference_host (worker/inference_host.hpp).
//
// Tensors travel as float_block parts of at most max_chunk_floats floats (the relay refuses
// frames over 5 MiB), serialised as one raw block. A tensor larger than one part is read or
// written in several calls; expert rows are independent, so a client splits them freely.
#include <cstdint>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/fwd.hpp>
#include <caf/meta/type_name.hpp>

#include "actors/tensor_chunk.hpp"
#include "model/inference.hpp"

namespace glam {

// Sessions a coordinator serves at once, and that one worker hosts units of.
inline constexpr std::size_t max_inference_sessions = 8;
// Items of a pass, and tokens of one item, a call may carry (the scheduler's max batch is
// 256 sequences; a sequence holds at most seq_len tokens).
inline constexpr std::size_t max_pass_items = 1024;
inline constexpr std::size_t max_item_tokens = std::size_t{1} << 16;

// A part of a tensor: elements [offset, offset + data.size()) of a tensor of `shape`.
struct float_block {
  std::vector<index> shape;
  std::int64_t offset = 0;
  std::vector<float> data;  // at most max_chunk_floats
};

caf::error inspect(caf::serializer& f, float_block& x);
caf::error inspect(caf::deserializer& f, float_block& x);

// The part [offset, offset + count) of t (count clipped to the end and to max_chunk_floats).
float_block block_of(const tensor& t, std::int64_t offset, std::int64_t count = max_chunk_floats);

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pass_item& x) {
  return f(caf::meta::type_name("glam_passitem"), x.sequence, x.tokens);
}

// What a session serves and where its units are: sent by a client to start a session (units
// and workers empty, session empty: the coordinator names it), by the coordinator to a worker
// (the units it hosts), and back to the client (every unit, its worker and its generation:
// a unit placed again after its worker died has a higher generation, and a shard of a new
// generation holds no sequence).
struct infer_assignment {
  std::string session;
  std::string checkpoint;         // one step directory (absolute), readable by the workers
  std::int64_t step = 0;          // the checkpoint's step and config hash: a worker checks both
  std::uint64_t config_hash = 0;
  std::int64_t max_sequences = 256;
  std::int64_t experts = 0;       // units: shard0 and expert0 .. expert<experts-1>
  std::vector<std::string> units;
  std::vector<std::string> workers;
  std::vector<std::int64_t> generations;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, infer_assignment& x) {
  return f(caf::meta::type_name("glam_inferassign"), x.session, x.checkpoint, x.step, x.config_hash, x.max_sequences,
           x.experts, x.units, x.workers, x.generations);
}

// One call on one unit. The phases of a shard's pass (inference_host checks them):
//   prepare(close, open)             between passes
//   begin(items) -> stage            starts a pass; the stage is an exchange or the logits
//   read(offset, count) -> part      more of the stage's tensor than its first part
//   write(part)                      a part of the experts' outputs for the exchange
//   resume(part) -> stage            the last part; the pass goes on to the next stage
//   abort                            drops the pass in flight (an expert was lost)
// and an expert's: expert(moe, rows) -> outputs.
enum class infer_op : std::int32_t { prepare = 1, begin, read, write, resume, abort, expert };
const char* to_string(infer_op op);

struct infer_request {
  std::string session;
  std::string unit;
  std::int32_t op = 0;
  std::vector<sequence_id> close, open;
  std::vector<pass_item> items;
  std::int64_t moe = 0;
  std::int64_t offset = 0, count = 0;  // read
  float_block data;                    // write, resume: a part of the outputs; expert: rows [n, M]
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, infer_request& x) {
  return f(caf::meta::type_name("glam_inferreq"), x.session, x.unit, x.op, x.close, x.open, x.items, x.moe, x.offset,
           x.count, x.data);
}

// stage: 0 an acknowledgement (prepare, write, abort), 1 an exchange of MoE layer `moe`
// (counts, offsets and the rows' first part), 2 the logits (their first part), 3 a part
// (read, expert).
struct infer_reply {
  std::int32_t stage = 0;
  std::int64_t moe = 0;
  std::vector<index> counts, offset;
  float_block data;
  std::int64_t open_sequences = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, infer_reply& x) {
  return f(caf::meta::type_name("glam_inferreply"), x.stage, x.moe, x.counts, x.offset, x.data, x.open_sequences);
}

}  // namespace glam
