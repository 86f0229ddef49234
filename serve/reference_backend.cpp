#include "serve/reference_backend.hpp"

#include <utility>

namespace glam {

reference_backend::reference_backend(reference_inference model)
    : model_(std::move(model)), max_sequences_(model_.shard().max_sequences()) {}

std::unique_ptr<reference_backend> reference_backend::from_checkpoint(const inference_checkpoint& ck) {
  return std::make_unique<reference_backend>(reference_inference::from_checkpoint(ck));
}

std::string reference_backend::describe() const {
  const model_config& m = model_.cfg().model;
  return "in-process reference (" + std::to_string(m.layers) + " blocks, " + std::to_string(m.experts) +
         " experts, one shard)";
}

step_result reference_backend::run_step(const step_request& request) {
  inference_shard& shard = model_.shard();
  step_result result;
  try {
    for (sequence_id id : request.close) shard.close_sequence(id);
    for (sequence_id id : request.open) shard.open_sequence(id);
    if (!request.items.empty()) result.logits = model_.run_pass(request.items);
  } catch (const inference_error& e) {
    if (shard.pass_in_flight()) shard.abort_pass();
    throw inference_backend_error(e.what());
  }
  return result;
}

}  // namespace glam
