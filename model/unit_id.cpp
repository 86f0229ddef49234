#include "model/unit_id.hpp"

#include <cctype>

namespace glam {

std::string unit_id::name() const { return (type == kind::shard ? "shard" : "expert") + std::to_string(index); }

std::optional<unit_id> unit_id::parse(const std::string& name) {
  for (auto k : {kind::shard, kind::expert}) {
    const std::string prefix = k == kind::shard ? "shard" : "expert";
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const auto digits = name.substr(prefix.size());
    if (digits.size() > 9 || (digits.size() > 1 && digits[0] == '0')) return std::nullopt;
    for (char c : digits)
      if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
    return unit_id{k, std::stoll(digits)};
  }
  return std::nullopt;
}

}  // namespace glam
