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

// Prepares DIR/data from two of the fortune files (enough text for glam-tiny's 2048-token
// vocabulary, a tokenizer trained in seconds) and trains glam-tiny on it for two steps into
// DIR/ckpt; the failed command's output, or empty.
inline std::string train_tiny_checkpoint(const std::string& dir) {
  auto prep = run_glam("data prepare --quiet --vocab-size 2048 --input /usr/share/games/fortunes/computers "
                       "/usr/share/games/fortunes/cookie --out '" + dir + "/data'");
  if (prep.status != 0) return "glam data prepare: " + prep.output;
  auto train = run_glam("train '" + std::string(GLAM_SOURCE_DIR) + "/configs/glam-tiny.toml' --steps 2 --threads 2 --data '" +
                        dir + "/data' --checkpoint-dir '" + dir + "/ckpt'");
  if (train.status != 0) return "glam train: " + train.output;
  return {};
}

}  // namespace glam::testing
