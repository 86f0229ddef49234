#pragma once
// The training step (docs/runtime.md, "The training step on actors") as seen by one unit
// actor: the units it hosts, its exchanges with the other unit actors, and what it reports
// to the coordinator. A plain class with no actors and no sockets: the unit actor feeds it
// messages and sends what it puts in its outbox, and a test can wire several engines by
// hand in any delivery order.
//
// It calls the per-unit functions of model/units.hpp exactly as the single-process
// reference (model/train_step.cpp) does, so the result is bitwise the reference's whatever
// the placement:
// - an expert lays the rows it receives out by (shard, slot) whatever their arrival order
//   (expert_unit keeps them per shard) and computes weight gradients once all S shards'
//   backward rows of a layer are in;
// - the dense gradient of parameter i is summed over shards in shard order by one
//   shard-hosting unit actor (owner = i mod the number of them), which sends the sum back
//   to the others: elementwise the same additions as sum_dense_gradients;
// - an all-zero buffer travels as an empty tensor (zero rows are what the receiver
//   fills in), so "nothing for you" costs no bytes and changes no bit.
// Every tensor it is handed is checked against the shape the job implies for that sender
// and exchange (expected_shape) before anything is allocated or computed.
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "actors/messages.hpp"
#include "actors/unit_layout.hpp"
#include "configs/config.hpp"
#include "model/checkpoint.hpp"
#include "model/train_step.hpp"
#include "model/units.hpp"

namespace glam {

// What one tensor of an exchange is. Encoded in the chunk's tensor_id.
enum class exchange_kind : std::int64_t {
  forward_rows = 1,   // shard -> expert actor: dispatch rows of that actor's experts
  forward_out = 2,    // expert actor -> shard: the experts' outputs for those rows
  backward_rows = 3,  // shard -> expert actor: gradients of the expert outputs
  backward_out = 4,   // expert actor -> shard: gradients of the expert inputs
  grad_part = 5,      // shard's gradient of dense parameter `item` -> its owner
  grad_sum = 6,       // owner -> shard actors: the sum over shards of parameter `item`
};

struct exchange_key {
  exchange_kind kind = exchange_kind::forward_rows;
  index layer = 0;  // MoE layer
  index shard = 0;
  index item = 0;   // dense parameter number (grad_part, grad_sum)

  std::int64_t encode() const;
  // nullopt when the id names no valid key (a peer's bytes are not trusted).
  static std::optional<exchange_key> decode(std::int64_t id);
};

struct outgoing_tensor {
  int to = 0;  // unit actor number
  exchange_key key;
  tensor value;
};

class step_engine {
 public:
  // Builds the units unit actor `self` hosts with their initial parameters (from the job
  // seed).
  step_engine(const config& c, unit_layout layout, int self, std::shared_ptr<const token_source> data);
  ~step_engine();

  const config& cfg() const { return cfg_; }
  const unit_layout& layout() const { return layout_; }
  int self() const { return self_; }

  // The shape a tensor from unit actor `from` under `key` must have in any round (an
  // all-zero buffer travels as shape {0}, also accepted); nullopt when that actor never
  // sends this actor such a tensor.
  std::optional<std::vector<index>> expected_shape(int from, const exchange_key& key) const;

  // Starts a round: a training step (forward, backward, dense reduction) or a validation
  // batch (forward only). Messages of this round that arrived before are replayed now.
  void begin(const round_id& round);
  // A tensor from unit actor `from` for `round`, of the expected shape. A message of another
  // round is held (it may belong to the next one, whose first messages can overtake the
  // coordinator's begin) up to a bound, and dropped at the next begin unless it is that
  // round's; returns false when held.
  bool receive(const round_id& round, int from, const exchange_key& key, tensor value);
  // What to send, in order.
  std::vector<outgoing_tensor> take_outbox();
  // The report, once every hosted unit is done with the round (once per round).
  std::optional<step_report> take_report();
  // The coordinator's decision for the current training round, once, after the report.
  void finish(bool apply);

  // Fault injection for tests: poison shard 0's gradient at this step, like
  // reference_trainer::inject_nonfinite_gradient_at.
  void inject_nonfinite_gradient_at(std::int64_t step) { poison_step_ = step; }

  // Checkpoints (model/checkpoint.hpp): the files of the units hosted here. The dense
  // state is written once, by the host of shard 0 (every replica is identical).
  std::vector<unit_file_info> write_checkpoint(const std::string& root, std::int64_t step, std::int64_t epoch);
  void load_checkpoint(const std::string& root, const checkpoint_manifest& m);
  // Snapshots (in memory, docs/fault-tolerance.md) of the units hosted here, after `step`
  // steps: the dense state when with_dense (one shard actor per worker keeps it), and every
  // expert.
  std::vector<unit_snapshot> snapshot(std::int64_t step, std::int64_t epoch, bool with_dense);
  // Loads every hosted unit from its snapshot ("dense" for the shards, "expert<e>"), each
  // checked as a checkpoint file is; throws checkpoint_error naming the unit when one is
  // missing or does not fit.
  void restore(const std::map<std::string, unit_snapshot>& states);

  std::vector<shard_unit>& shards() { return shards_; }
  std::vector<expert_unit>& experts() { return experts_; }

 private:
  struct pending_msg {
    round_id round;
    int from;
    exchange_key key;
    tensor value;
  };
  struct shard_progress {
    bool forward = true;                   // forward or backward phase
    bool done = false;
    std::optional<moe_exchange> exchange;  // the buffer in flight
    tensor replies;                        // [E, C, M] assembled from the expert actors
    std::set<int> waiting;                 // expert actors not yet answered
  };

  template <class F>
  void pump(F&& first);
  void deliver(int from, const exchange_key& key, tensor value);
  void send(int to, const exchange_key& key, tensor value);
  void advance_shard(std::size_t local);
  void send_exchange(std::size_t local, exchange_kind kind);
  void serve_experts(int from, const exchange_key& key, const tensor& rows);
  void take_replies(int from, const exchange_key& key, const tensor& rows);
  void shards_finished_backward();
  void take_grad_part(const exchange_key& key, tensor value);
  void sum_owned(index item);
  int dense_owner(index item) const;
  void check_done();
  shard_unit* local_shard(index shard);

  config cfg_;
  unit_layout layout_;
  int self_;
  std::shared_ptr<const token_source> data_;
  index capacity_ = 0;
  std::vector<shard_unit> shards_;    // hosted, ascending shard order
  std::vector<expert_unit> experts_;  // hosted, ascending expert order
  std::vector<std::vector<index>> dense_shapes_;  // of the dense parameters, in order
  std::size_t max_held_ = 0;

  round_id round_;
  bool started_ = false;   // a round is running
  bool reported_ = false;  // its report is out
  std::vector<shard_progress> progress_;
  // Per MoE layer: the shards whose rows came (each once per round and direction).
  std::vector<std::set<index>> forward_in_, backward_in_;
  index layers_finished_ = 0;
  // Dense gradient reduction (shard-hosting unit actors only).
  std::map<index, std::map<index, tensor>> parts_;  // item -> shard -> remote part
  std::vector<bool> summed_have_;
  param_set summed_;
  index summed_count_ = 0;
  bool grads_sent_ = false;
  std::int64_t tokens_computed_ = 0;
  std::optional<std::int64_t> poison_step_;

  std::deque<pending_msg> held_;   // other rounds
  std::deque<pending_msg> local_;  // to self, delivered after the current handler
  std::vector<outgoing_tensor> outbox_;
  std::optional<step_report> report_;
};

}  // namespace glam
