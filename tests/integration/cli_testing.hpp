#pragma once
// Runs the real `glam` binary as a user would: its output and its exit status.
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace glam::testing {

struct run_result {
  int status = -1;
  std::string output;  // stdout, or stdout and stderr together when asked
};

inline run_result run_glam(const std::string& args, bool with_stderr = true) {
  const std::string command =
      "'" + std::string(GLAM_BINARY) + "' " + args + (with_stderr ? " 2>&1" : " 2>/dev/null");
  run_result r;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf{};
  std::size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
  const int raw = pclose(pipe);
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  return r;
}

}  // namespace glam::testing
