#pragma once
// Helpers shared by the data tests: scratch directories, files, and the demo corpus (the
// plain-text files of Debian's `fortunes` package, which the setup installs).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace glam::testing {

inline const std::string fortunes_dir = "/usr/share/games/fortunes";

// A few small fortune files: real text, with overstrike sequences ("goedel", "fortunes")
// and enough documents for a validation split.
inline std::vector<std::string> small_corpus() {
  return {fortunes_dir + "/fortunes", fortunes_dir + "/goedel", fortunes_dir + "/magic",
          fortunes_dir + "/paradoxum"};
}

// Every plain-text fortune file (no .dat index, no .u8 link), sorted.
inline std::vector<std::string> fortune_files() {
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(fortunes_dir)) {
    std::string name = e.path().filename().string();
    auto ends = [&](const std::string& s) {
      return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
    };
    if (!e.is_symlink() && e.is_regular_file() && !ends(".dat") && !ends(".u8"))
      files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

inline bool have_fortunes() { return std::filesystem::exists(fortunes_dir + "/fortunes"); }

#define GLAM_REQUIRE_FORTUNES()                                                           \
  do {                                                                                    \
    if (!::glam::testing::have_fortunes())                                                \
      GTEST_FAIL() << "the fortunes package is not installed (apt-get install fortunes)"; \
  } while (0)

// A fresh directory, removed with everything in it at scope exit.
class scratch_dir {
 public:
  scratch_dir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "glam-data-test-XXXXXX").string();
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    if (!mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed");
    path_ = buf.data();
  }
  ~scratch_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Expects `fn` to throw something whose message contains every one of `parts`.
template <class F>
void expect_error_mentions(F&& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "expected an error mentioning " << parts.front();
  } catch (const std::exception& e) {
    std::string what = e.what();
    for (const auto& p : parts)
      EXPECT_NE(what.find(p), std::string::npos) << what << "\n  lacks: " << p;
  }
}

}  // namespace glam::testing
