#pragma once
// One training step's metrics as the JSON line every trainer writes (glam train's
// --metrics file, a submitted job's STATE/jobs/<id>/metrics.jsonl). Losses are floats
// and print round-trip exact.
#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "model/train_step.hpp"

namespace glam {

// mfu = flops_per_token × tokens/s / sgemm_flops; omitted when sgemm_flops is 0 (unknown).
nlohmann::json step_metrics_json(const step_metrics& m, double seconds, double flops_per_token, double sgemm_flops,
                                 std::optional<double> val_loss);

// Drops the lines of steps >= step from a metrics file (a run resumed from a checkpoint
// replays those steps and records them again). A missing file is left alone; throws
// std::runtime_error naming the file when it cannot be rewritten.
void keep_metrics_before(const std::string& path, std::int64_t step);

}  // namespace glam
