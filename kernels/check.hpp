#pragma once
// Always-on invariant checks (not compiled out with NDEBUG): a failure names the
// condition and file:line and throws, so a caller can turn it into an error value.
#include <stdexcept>
#include <string>

#define GLAM_CHECK(cond, message)                                                            \
  do {                                                                                        \
    if (!(cond))                                                                              \
      throw std::logic_error(std::string("check failed: ") + #cond + " (" + (message) + ") at " + \
                             __FILE__ + ":" + std::to_string(__LINE__));                      \
  } while (0)
