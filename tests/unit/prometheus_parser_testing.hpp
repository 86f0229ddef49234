#pragma once
// A strict parser of the Prometheus text exposition format 0.0.4, written from the format's
// description: it refuses everything the format does not allow. The writer's tests
// (runtime_prometheus_test.cpp) check the parser itself against a table of good and bad texts;
// every /metrics page glam serves must pass it.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace glam::prometheus_testing {

struct parsed_sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct parsed_family {
  std::string name;
  std::string type = "untyped";
  std::optional<std::string> help;
  bool typed = false;
  std::vector<parsed_sample> samples;
};

struct parse_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] inline void fail(int line, const std::string& why) {
  throw parse_error("line " + std::to_string(line) + ": " + why);
}

inline bool metric_name_ok(const std::string& s) {
  if (s.empty()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (!(std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':' ||
          (i > 0 && std::isdigit(static_cast<unsigned char>(c)))))
      return false;
  }
  return true;
}

inline bool label_name_ok(const std::string& s) {
  if (s.empty() || s.rfind("__", 0) == 0) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (!(std::isalpha(static_cast<unsigned char>(c)) || c == '_' || (i > 0 && std::isdigit(static_cast<unsigned char>(c)))))
      return false;
  }
  return true;
}

// Go's float syntax as the format uses it: decimal with optional exponent, or Inf/NaN.
inline std::optional<double> parse_float(const std::string& s) {
  if (s == "+Inf" || s == "Inf") return INFINITY;
  if (s == "-Inf") return -INFINITY;
  if (s == "NaN") return NAN;
  std::size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  std::size_t digits = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++digits;
  }
  if (digits == 0) return std::nullopt;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    std::size_t exp_digits = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++exp_digits;
    if (exp_digits == 0) return std::nullopt;
  }
  if (i != s.size()) return std::nullopt;
  return std::stod(s);
}

inline std::string unescape(const std::string& s, bool allow_quote, int line) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      out += s[i];
      continue;
    }
    if (i + 1 >= s.size()) fail(line, "a backslash ends the text");
    char c = s[++i];
    if (c == '\\')
      out += '\\';
    else if (c == 'n')
      out += '\n';
    else if (c == '"' && allow_quote)
      out += '"';
    else
      fail(line, std::string("escape \\") + c + " is not allowed here");
  }
  return out;
}

inline bool is_blank(char c) { return c == ' ' || c == '\t'; }

inline std::vector<parsed_family> parse_exposition(const std::string& text) {
  if (!text.empty() && text.back() != '\n') fail(0, "the last line does not end with a line feed");
  std::vector<parsed_family> families;
  std::set<std::string> finished;        // families whose group has ended
  std::set<std::string> seen_sample_keys;  // name + labels, to refuse repeated samples
  auto current = [&]() -> parsed_family* { return families.empty() ? nullptr : &families.back(); };
  // Starts (or continues) the group of family `name`; a family reopened after another one
  // began is a duplicate family.
  auto open_family = [&](const std::string& name, int line) -> parsed_family& {
    if (current() && current()->name == name) return *current();
    if (current()) finished.insert(current()->name);
    if (finished.count(name)) fail(line, "family " + name + " appears twice (its lines must form one group)");
    families.push_back(parsed_family{name, "untyped", std::nullopt, false, {}});
    return families.back();
  };

  std::size_t pos = 0;
  int line_no = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (line.find('\r') != std::string::npos) fail(line_no, "carriage return in a line");
    std::size_t b = 0;
    while (b < line.size() && is_blank(line[b])) ++b;
    std::size_t e = line.size();
    while (e > b && is_blank(line[e - 1])) --e;
    line = line.substr(b, e - b);
    if (line.empty()) continue;

    if (line[0] == '#') {
      // "# HELP name doc" / "# TYPE name type"; any other comment is ignored.
      std::size_t p = 1;
      while (p < line.size() && is_blank(line[p])) ++p;
      std::size_t q = p;
      while (q < line.size() && !is_blank(line[q])) ++q;
      std::string keyword = line.substr(p, q - p);
      if (keyword != "HELP" && keyword != "TYPE") continue;
      while (q < line.size() && is_blank(line[q])) ++q;
      std::size_t r = q;
      while (r < line.size() && !is_blank(line[r])) ++r;
      std::string name = line.substr(q, r - q);
      if (!metric_name_ok(name)) fail(line_no, "bad metric name '" + name + "' in " + keyword);
      while (r < line.size() && is_blank(line[r])) ++r;
      std::string rest = line.substr(r);
      parsed_family& f = open_family(name, line_no);
      if (!f.samples.empty()) fail(line_no, keyword + " for " + name + " after its samples");
      if (keyword == "HELP") {
        if (f.help) fail(line_no, "second HELP for " + name);
        f.help = unescape(rest, false, line_no);
      } else {
        static const std::set<std::string> types = {"counter", "gauge", "histogram", "summary", "untyped"};
        if (!types.count(rest)) fail(line_no, "unknown TYPE '" + rest + "'");
        if (f.typed) fail(line_no, "second TYPE for " + name);
        f.typed = true;
        f.type = rest;
      }
      continue;
    }

    // A sample.
    std::size_t p = 0;
    while (p < line.size() && !is_blank(line[p]) && line[p] != '{') ++p;
    parsed_sample s;
    s.name = line.substr(0, p);
    if (!metric_name_ok(s.name)) fail(line_no, "bad metric name '" + s.name + "'");
    if (p < line.size() && line[p] == '{') {
      ++p;
      for (;;) {
        while (p < line.size() && is_blank(line[p])) ++p;
        if (p < line.size() && line[p] == '}') {
          ++p;
          break;
        }
        std::size_t n = p;
        while (p < line.size() && line[p] != '=' && !is_blank(line[p]) && line[p] != '}' && line[p] != ',') ++p;
        std::string label = line.substr(n, p - n);
        if (!label_name_ok(label)) fail(line_no, "bad label name '" + label + "'");
        while (p < line.size() && is_blank(line[p])) ++p;
        if (p >= line.size() || line[p] != '=') fail(line_no, "expected '=' after label " + label);
        ++p;
        while (p < line.size() && is_blank(line[p])) ++p;
        if (p >= line.size() || line[p] != '"') fail(line_no, "label value of " + label + " is not quoted");
        ++p;
        std::string raw;
        bool closed = false;
        while (p < line.size()) {
          if (line[p] == '\\' && p + 1 < line.size()) {
            raw += line[p];
            raw += line[p + 1];
            p += 2;
          } else if (line[p] == '"') {
            closed = true;
            ++p;
            break;
          } else {
            raw += line[p++];
          }
        }
        if (!closed) fail(line_no, "label value of " + label + " is not terminated");
        if (s.labels.count(label)) fail(line_no, "label " + label + " given twice");
        s.labels[label] = unescape(raw, true, line_no);
        while (p < line.size() && is_blank(line[p])) ++p;
        if (p < line.size() && line[p] == ',') {
          ++p;
          continue;
        }
        if (p < line.size() && line[p] == '}') {
          ++p;
          break;
        }
        fail(line_no, "expected ',' or '}' after label " + label);
      }
    }
    if (p >= line.size() || !is_blank(line[p])) fail(line_no, "no blank before the value");
    std::vector<std::string> tokens;
    while (p < line.size()) {
      while (p < line.size() && is_blank(line[p])) ++p;
      std::size_t t = p;
      while (p < line.size() && !is_blank(line[p])) ++p;
      if (p > t) tokens.push_back(line.substr(t, p - t));
    }
    if (tokens.empty() || tokens.size() > 2) fail(line_no, "expected a value and an optional timestamp");
    auto value = parse_float(tokens[0]);
    if (!value) fail(line_no, "bad value '" + tokens[0] + "'");
    s.value = *value;
    if (tokens.size() == 2) {
      const std::string& ts = tokens[1];
      std::size_t k = (ts[0] == '-') ? 1 : 0;
      if (k == ts.size() || ts.find_first_not_of("0123456789", k) != std::string::npos)
        fail(line_no, "bad timestamp '" + ts + "'");
    }

    // Which family: the current one if the name is its own (or one of its suffixed names).
    parsed_family* f = current();
    auto belongs = [&](const parsed_family& fam) {
      if (s.name == fam.name) return fam.type != "histogram";  // a histogram has no bare sample
      if (fam.type == "histogram")
        return s.name == fam.name + "_bucket" || s.name == fam.name + "_sum" || s.name == fam.name + "_count";
      if (fam.type == "summary") return s.name == fam.name + "_sum" || s.name == fam.name + "_count";
      return false;
    };
    if (!f || !belongs(*f)) {
      // Any family that could own this name must not have been typed elsewhere.
      for (const auto& other : families)
        if (belongs(other) || other.name == s.name)
          fail(line_no, "sample " + s.name + " outside the group of its family " + other.name);
      f = &open_family(s.name, line_no);
    }
    if (f->type == "counter" && (s.value < 0 || std::isnan(s.value))) fail(line_no, "negative or NaN counter");
    if (f->type == "histogram" && s.name == f->name + "_bucket") {
      if (!s.labels.count("le")) fail(line_no, "histogram bucket without le");
      if (!parse_float(s.labels["le"])) fail(line_no, "bad le '" + s.labels["le"] + "'");
    } else if (s.labels.count("le") && f->type == "histogram") {
      fail(line_no, "le on a histogram's _sum or _count");
    }
    std::string key = s.name;
    for (const auto& [k, v] : s.labels) key += "\x01" + k + "\x02" + v;
    if (!seen_sample_keys.insert(key).second) fail(line_no, "repeated sample " + s.name);
    f->samples.push_back(std::move(s));
  }

  // Histograms: per label set, buckets cumulative in le order, a +Inf bucket equal to _count,
  // and _sum and _count present.
  for (const auto& f : families) {
    if (f.type != "histogram") continue;
    struct series {
      std::vector<std::pair<double, double>> buckets;
      std::optional<double> sum, count;
    };
    std::map<std::map<std::string, std::string>, series> by_labels;
    for (const auto& s : f.samples) {
      auto labels = s.labels;
      labels.erase("le");
      auto& ser = by_labels[labels];
      if (s.name == f.name + "_bucket")
        ser.buckets.emplace_back(*parse_float(s.labels.at("le")), s.value);
      else if (s.name == f.name + "_sum")
        ser.sum = s.value;
      else
        ser.count = s.value;
    }
    for (auto& [labels, ser] : by_labels) {
      if (ser.buckets.empty()) fail(0, "histogram " + f.name + " has a series without buckets");
      if (!ser.sum || !ser.count) fail(0, "histogram " + f.name + " lacks _sum or _count");
      std::stable_sort(ser.buckets.begin(), ser.buckets.end());
      for (std::size_t i = 1; i < ser.buckets.size(); ++i) {
        if (ser.buckets[i].first == ser.buckets[i - 1].first) fail(0, "histogram " + f.name + ": le repeated");
        if (ser.buckets[i].second < ser.buckets[i - 1].second)
          fail(0, "histogram " + f.name + ": buckets not cumulative");
      }
      if (!std::isinf(ser.buckets.back().first)) fail(0, "histogram " + f.name + " without a +Inf bucket");
      if (ser.buckets.back().second != *ser.count) fail(0, "histogram " + f.name + ": +Inf bucket != _count");
    }
  }
  return families;
}

}  // namespace glam::prometheus_testing
