#include "model/metrics.hpp"

#include <fstream>
#include <stdexcept>

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

void keep_metrics_before(const std::string& path, std::int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::string kept;
  bool dropped = false;
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.contains("step") && j["step"].is_number_integer() && j["step"].get<std::int64_t>() >= step)
      dropped = true;
    else
      kept += line + "\n";
  }
  in.close();
  if (!dropped) return;
  std::ofstream out(path, std::ios::trunc);
  out << kept;
  if (!out) throw std::runtime_error("cannot rewrite the metrics file '" + path + "'");
}

}  // namespace glam
