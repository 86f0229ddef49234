#pragma once
// The one exception type of the data pipeline. Messages name the file (or argument), what is
// wrong with it and what to do about it, so that the CLI can print them as they are.
#include <stdexcept>
#include <string>

namespace glam {

class data_error : public std::runtime_error {
 public:
  explicit data_error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace glam
