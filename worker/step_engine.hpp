#pragma once
// The training step of design.md section 2 as seen by one worker: the units it hosts, the
// exchanges with the other workers, and what it reports to the coordinator. A plain class
// with no actors and no sockets: the compute actor feeds it messages and sends what it
// puts in its outbox, and a test can wire several engines by hand in any delivery order.
//
// It calls the per-unit functions of model/units.hpp exactly as the single-process
// reference (model/train_step.cpp) does, so the result is bitwise the reference's whatever
// the placement:
// - an expert lays the rows it receives out by (shard, slot) whatever their arrival order
//   (expert_unit keeps them per shard) and computes weight gradients once all S shards'
//   backward rows of a layer are in;
// - the dense gradient of parameter i is summed over shards in shard order by one
//   shard-hosting worker (owner = i mod the number of shard-hosting workers), which
//   sends the sum back to the others: elementwise the same additions as
//   sum_dense_gradients;
// - an all-zero buffer travels as an empty tensor (zero rows are what the receiver
//   fills in), so "nothing for you" costs no bytes and changes no bit.
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "actors/messages.hpp"
#include "actors/unit_actors.hpp"
#include "configs/config.hpp"
#include "model/checkpoint.hpp"
#include "model/train_step.hpp"
#include "model/units.hpp"

namespace glam {

// Who hosts which unit, by worker number (the order of the job plan's placement).
struct step_layout {
  std::vector<std::string> workers;
  std::vector<int> shard_worker;   // shard -> worker
  std::vector<int> expert_worker;  // expert -> worker

  static step_layout from_placement(const std::vector<unit_assignment>& placement, index shards, index experts);
  std::vector<int> expert_workers() const;  // workers hosting experts, ascending
  std::vector<int> shard_workers() const;   // workers hosting shards, ascending
  std::vector<index> experts_of(int worker) const;
  std::vector<index> shards_of(int worker) const;
};

// What one tensor of an exchange is. Encoded in the chunk's tensor_id.
enum class exchange_kind : std::int64_t {
  forward_rows = 1,   // shard -> expert worker: dispatch rows of that worker's experts
  forward_out = 2,    // expert worker -> shard: the experts' outputs for those rows
  backward_rows = 3,  // shard -> expert worker: gradients of the expert outputs
  backward_out = 4,   // expert worker -> shard: gradients of the expert inputs
  grad_part = 5,      // shard's gradient of dense parameter `item` -> its owner
  grad_sum = 6,       // owner -> shard workers: the sum over shards of parameter `item`
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
  int to = 0;  // worker number
  exchange_key key;
  tensor value;
};

class step_engine {
 public:
  // Builds the units `self` hosts with their initial parameters (from the job seed).
  step_engine(const config& c, step_layout layout, int self, std::shared_ptr<const token_source> data);
  ~step_engine();

  const config& cfg() const { return cfg_; }
  const step_layout& layout() const { return layout_; }
  int self() const { return self_; }

  // Starts training step k (train) or validation batch k (eval: forward only). Messages
  // of step k that arrived before are replayed now.
  void begin(std::int64_t step, bool train);
  // A tensor from worker `from` for step `step`. Older steps are dropped (returns false);
  // a newer one is held until begin() reaches it.
  bool receive(std::int64_t step, int from, const exchange_key& key, tensor value);
  // What to send, in order.
  std::vector<outgoing_tensor> take_outbox();
  // The report, once every hosted unit is done with the step (once per step).
  std::optional<step_report> take_report();
  // The coordinator's decision for the current training step.
  void finish(bool apply);

  // Fault injection for tests: poison shard 0's gradient at this step, like
  // reference_trainer::inject_nonfinite_gradient_at.
  void inject_nonfinite_gradient_at(std::int64_t step) { poison_step_ = step; }

  // Checkpoints (model/checkpoint.hpp): the files of the units hosted here. The dense
  // state is written once, by the host of shard 0 (every replica is identical).
  std::vector<unit_file_info> write_checkpoint(const std::string& root, std::int64_t step, std::int64_t epoch);
  void load_checkpoint(const std::string& root, const checkpoint_manifest& m);

  std::vector<shard_unit>& shards() { return shards_; }
  std::vector<expert_unit>& experts() { return experts_; }

 private:
  struct pending_msg {
    std::int64_t step;
    int from;
    exchange_key key;
    tensor value;
  };
  struct shard_progress {
    bool forward = true;               // forward or backward phase
    bool done = false;
    std::optional<moe_exchange> exchange;  // the buffer in flight
    tensor replies;                    // [E, C, M] assembled from the expert workers
    std::set<int> waiting;             // expert workers not yet answered
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
  void check_done();
  shard_unit* local_shard(index shard);

  config cfg_;
  step_layout layout_;
  int self_;
  std::shared_ptr<const token_source> data_;
  index capacity_ = 0;
  std::vector<shard_unit> shards_;    // hosted, ascending shard order
  std::vector<expert_unit> experts_;  // hosted, ascending expert order

  std::int64_t step_ = -1;
  bool train_ = true;
  bool started_ = false;
  bool reported_ = false;
  std::vector<shard_progress> progress_;
  std::vector<index> backward_shards_in_;  // per MoE layer: shards whose backward rows came
  index layers_finished_ = 0;
  // Dense gradient reduction (shard-hosting workers only).
  std::map<index, std::map<index, tensor>> parts_;  // item -> shard -> remote part
  std::vector<bool> summed_have_;
  param_set summed_;
  index summed_count_ = 0;
  bool grads_sent_ = false;
  std::int64_t tokens_computed_ = 0;
  std::optional<std::int64_t> poison_step_;

  std::deque<pending_msg> held_;     // newer steps
  std::deque<pending_msg> local_;    // to self, delivered after the current handler
  std::vector<outgoing_tensor> outbox_;
  std::optional<step_report> report_;
};

}  // namespace glam
