#include "model/metrics.hpp"

namespace glam {

nlohmann::json step_metrics_json(const step_metrics& m, double seconds, double flops_per_token, double sgemm_flops,
                                 std::optional<double> val_loss) {
  const double tokens_per_second = seconds > 0 ? double(m.tokens) / seconds : 0;
  nlohmann::json j;
  j["step"] = m.step;
  j["loss"] = m.loss.loss;
  j["cross_entropy"] = m.loss.cross_entropy;
  j["aux_loss"] = m.loss.aux;
  j["z_loss"] = m.loss.z;
  j["tokens"] = m.tokens;
  j["seconds"] = seconds;
  j["tokens_per_second"] = tokens_per_second;
  if (sgemm_flops > 0) j["mfu"] = flops_per_token * tokens_per_second / sgemm_flops;
  j["skipped"] = m.skipped;
  j["dropped"] = m.dropped;
  j["tokens_per_expert"] = m.tokens_per_expert;
  if (val_loss) j["val_loss"] = *val_loss;
  return j;
}

}  // namespace glam
