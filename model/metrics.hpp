#pragma once
// One training step's metrics as the JSON line every trainer writes (glam train's
// --metrics file, a submitted job's STATE/jobs/<id>/metrics.jsonl). Losses are floats
// and print round-trip exact.
#include <optional>

#include <nlohmann/json.hpp>

#include "model/train_step.hpp"

namespace glam {

// mfu = flops_per_token × tokens/s / sgemm_flops; omitted when sgemm_flops is 0 (unknown).
nlohmann::json step_metrics_json(const step_metrics& m, double seconds, double flops_per_token, double sgemm_flops,
                                 std::optional<double> val_loss);

}  // namespace glam
