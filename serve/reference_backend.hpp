#pragma once
// The in-process inference backend: the whole model (one shard and every expert) in this
// process, each step run by reference_inference::run_pass on the calling thread (the batch
// scheduler's own thread, so HTTP threads never compute) with the compute threads of
// kernels/parallel.hpp. It never loses a sequence.
#include <memory>
#include <string>

#include "model/generate.hpp"
#include "serve/inference_backend.hpp"

namespace glam {

class reference_backend : public inference_backend {
 public:
  explicit reference_backend(reference_inference model);
  static std::unique_ptr<reference_backend> from_checkpoint(const inference_checkpoint& ck);

  const config& cfg() const override { return model_.cfg(); }
  index max_sequences() const override { return max_sequences_; }
  std::string describe() const override;
  step_result run_step(const step_request& request) override;

  reference_inference& model() { return model_; }

 private:
  reference_inference model_;
  index max_sequences_;
};

}  // namespace glam
