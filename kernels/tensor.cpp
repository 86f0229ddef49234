#include "kernels/tensor.hpp"

namespace glam {

std::string shape_string(const std::vector<index>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace glam
