#include "data/text.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "data/error.hpp"

namespace glam {
namespace fs = std::filesystem;

namespace {

std::string hex_byte(unsigned char b) {
  char text[8];
  std::snprintf(text, sizeof(text), "0x%02x", b);
  return text;
}

// Length of the UTF-8 sequence at bytes[i], or 0 if it is not a valid one.
std::size_t utf8_length(std::string_view bytes, std::size_t i) {
  auto at = [&](std::size_t k) { return static_cast<unsigned char>(bytes[k]); };
  unsigned char b = at(i);
  std::size_t n;
  std::uint32_t cp;
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF)
    n = 2, cp = b & 0x1F;
  else if (b >= 0xE0 && b <= 0xEF)
    n = 3, cp = b & 0x0F;
  else if (b >= 0xF0 && b <= 0xF4)
    n = 4, cp = b & 0x07;
  else
    return 0;
  if (i + n > bytes.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    unsigned char c = at(i + k);
    if ((c & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (c & 0x3F);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000)) return 0;  // overlong
  if (cp >= 0xD800 && cp <= 0xDFFF) return 0;                        // surrogate
  if (cp > 0x10FFFF) return 0;
  return n;
}

bool is_dropped_control(std::string_view cp) {
  if (cp.size() == 1) {
    unsigned char c = static_cast<unsigned char>(cp[0]);
    return (c < 0x20 && c != '\t') || c == 0x7F;
  }
  // C1 controls (U+0080..U+009F) and the byte-order mark / zero-width no-break space.
  if (cp == "\xEF\xBB\xBF") return true;
  return cp.size() == 2 && static_cast<unsigned char>(cp[0]) == 0xC2 &&
         static_cast<unsigned char>(cp[1]) < 0xA0;
}

// What a printer leaves when `struck` is printed over `existing`.
std::string_view overstrike(std::string_view existing, std::string_view struck) {
  if (existing == "_" || existing == " ") return struck;
  if (struck == "_" || struck == " ") return existing;
  return struck;
}

void normalise_line(std::string_view line, std::string& out) {
  if (line.find('\b') == std::string_view::npos) {
    for (std::size_t i = 0; i < line.size();) {
      std::size_t n = std::max<std::size_t>(1, utf8_length(line, i));
      std::string_view cp = line.substr(i, n);
      if (!is_dropped_control(cp)) out.append(cp);
      i += n;
    }
    return;
  }
  std::vector<std::string_view> cells;
  std::size_t cursor = 0;
  for (std::size_t i = 0; i < line.size();) {
    std::size_t n = std::max<std::size_t>(1, utf8_length(line, i));
    std::string_view cp = line.substr(i, n);
    i += n;
    if (cp == "\b") {
      if (cursor > 0) --cursor;
      continue;
    }
    if (is_dropped_control(cp)) continue;
    if (cursor < cells.size())
      cells[cursor] = overstrike(cells[cursor], cp);
    else
      cells.push_back(cp);
    ++cursor;
  }
  for (std::string_view cp : cells) out.append(cp);
}

bool only_whitespace(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\t' || c == '\n'; });
}

std::string trim_newlines(std::string_view s) {
  std::size_t b = 0, e = s.size();
  while (b < e && s[b] == '\n') ++b;
  while (e > b && s[e - 1] == '\n') --e;
  return std::string(s.substr(b, e - b));
}

}  // namespace

std::size_t first_invalid_utf8(std::string_view bytes) {
  for (std::size_t i = 0; i < bytes.size();) {
    std::size_t n = utf8_length(bytes, i);
    if (n == 0) return i;
    i += n;
  }
  return std::string_view::npos;
}

std::string read_text_file(const std::string& path) {
  std::error_code ec;
  auto status = fs::status(path, ec);
  if (ec || !fs::exists(status))
    throw data_error("input " + path + " does not exist; check the --input path");
  if (fs::is_directory(status))
    throw data_error("input " + path + " is a directory; give its text files");
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw data_error("cannot read input " + path + ": " + std::strerror(errno) +
                     "; check its permissions");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw data_error("read error in input " + path);
  std::string bytes = std::move(buffer).str();
  if (bytes.empty())
    throw data_error("input " + path + " is empty; give files that hold text, or leave it out");
  if (std::size_t nul = bytes.find('\0'); nul != std::string::npos)
    throw data_error("input " + path + " looks binary (a NUL byte at offset " +
                     std::to_string(nul) +
                     "); give plain UTF-8 text files (for the fortunes package, leave out "
                     "the .dat index files)");
  if (std::size_t bad = first_invalid_utf8(bytes); bad != std::string::npos)
    throw data_error("input " + path + " is not valid UTF-8: byte " +
                     hex_byte(static_cast<unsigned char>(bytes[bad])) + " at offset " +
                     std::to_string(bad) +
                     " does not start a valid sequence; convert the file to UTF-8 (e.g. "
                     "iconv -f LATIN1 -t UTF-8)");
  return bytes;
}

std::string normalise_text(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  std::size_t start = 0;
  for (;;) {
    std::size_t end = text.find('\n', start);
    normalise_line(
        text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start),
        out);
    if (end == std::string_view::npos) break;
    out.push_back('\n');
    start = end + 1;
  }
  return out;
}

std::vector<std::string> split_documents(std::string_view text) {
  std::vector<std::string_view> lines;
  for (std::size_t start = 0; start <= text.size();) {
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  bool separated = std::find(lines.begin(), lines.end(), std::string_view("%")) != lines.end();
  std::vector<std::string> documents;
  auto emit = [&](std::string_view piece) {
    if (!only_whitespace(piece)) documents.push_back(trim_newlines(piece));
  };
  if (!separated) {
    emit(text);
    return documents;
  }
  // Documents are the spans between separator lines, cut from the text itself.
  std::size_t doc_start = 0, offset = 0;
  for (std::string_view line : lines) {
    if (line == "%") {
      emit(text.substr(doc_start, offset - doc_start));
      doc_start = std::min(text.size(), offset + line.size() + 1);
    }
    offset += line.size() + 1;
  }
  if (doc_start < text.size()) emit(text.substr(doc_start));
  return documents;
}

std::vector<std::string> expand_inputs(const std::vector<std::string>& paths,
                                       const std::vector<std::string>& exclude_suffixes) {
  auto excluded = [&](const std::string& name) {
    for (const auto& suffix : exclude_suffixes)
      if (!suffix.empty() && name.size() >= suffix.size() &&
          name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
        return true;
    return false;
  };
  std::vector<std::string> files;
  for (const auto& path : paths) {
    std::error_code ec;
    auto status = fs::status(path, ec);
    if (ec || !fs::exists(status))
      throw data_error("input " + path + " does not exist; check the --input path");
    if (!fs::is_directory(status)) {
      files.push_back(path);
      continue;
    }
    std::vector<std::string> found;
    for (const auto& entry : fs::directory_iterator(path)) {
      std::string name = entry.path().filename().string();
      if (name.empty() || name[0] == '.' || entry.is_symlink() || !entry.is_regular_file() ||
          excluded(name))
        continue;
      found.push_back(entry.path().string());
    }
    if (found.empty())
      throw data_error("input directory " + path +
                       " holds no regular files to read (symbolic links, hidden and excluded "
                       "files are skipped); give text files");
    std::sort(found.begin(), found.end());
    files.insert(files.end(), found.begin(), found.end());
  }
  return files;
}

}  // namespace glam
