// The Prometheus text format writer, checked by a strict parser of format 0.0.4 written here
// from the format's description: the parser refuses everything the format does not allow
// (shown by the table of bad texts), and the writer's output must pass it.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "actors/prometheus.hpp"

namespace glam {
namespace {

// ---------------------------------------------------------------------------------------------
// A strict parser of the text exposition format 0.0.4.

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

[[noreturn]] void fail(int line, const std::string& why) {
  throw parse_error("line " + std::to_string(line) + ": " + why);
}

bool metric_name_ok(const std::string& s) {
  if (s.empty()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (!(std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':' ||
          (i > 0 && std::isdigit(static_cast<unsigned char>(c)))))
      return false;
  }
  return true;
}

bool label_name_ok(const std::string& s) {
  if (s.empty() || s.rfind("__", 0) == 0) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (!(std::isalpha(static_cast<unsigned char>(c)) || c == '_' || (i > 0 && std::isdigit(static_cast<unsigned char>(c)))))
      return false;
  }
  return true;
}

// Go's float syntax as the format uses it: decimal with optional exponent, or Inf/NaN.
std::optional<double> parse_float(const std::string& s) {
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

std::string unescape(const std::string& s, bool allow_quote, int line) {
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

bool is_blank(char c) { return c == ' ' || c == '\t'; }

std::vector<parsed_family> parse_exposition(const std::string& text) {
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

// ---------------------------------------------------------------------------------------------
// The parser itself: what it accepts and what it refuses.

struct text_case {
  const char* name;
  const char* text;
  bool valid;
};

class PrometheusParser : public ::testing::TestWithParam<text_case> {};

TEST_P(PrometheusParser, AcceptsOnlyWhatTheFormatAllows) {
  const auto& c = GetParam();
  if (c.valid) {
    EXPECT_NO_THROW(parse_exposition(c.text)) << c.text;
  } else {
    EXPECT_THROW(parse_exposition(c.text), parse_error) << c.text;
  }
}

const text_case parser_cases[] = {
    {"empty", "", true},
    {"counter", "# HELP a_total Things.\n# TYPE a_total counter\na_total 3\n", true},
    {"untyped_sample_alone", "x 1\n", true},
    {"labels_and_trailing_comma", "# TYPE g gauge\ng{a=\"1\",b=\"x\",} 2.5\n", true},
    {"escapes_in_label", "# TYPE g gauge\ng{path=\"C:\\\\dir\\\"q\\\"\\n\"} 1\n", true},
    {"timestamp", "# TYPE g gauge\ng 1 1395066363000\n", true},
    {"special_values", "# TYPE g gauge\ng{k=\"a\"} +Inf\ng{k=\"b\"} -Inf\ng{k=\"c\"} NaN\ng{k=\"d\"} 1.5e-3\n", true},
    {"comment_line", "# just a comment\n# TYPE g gauge\ng 1\n", true},
    {"histogram",
     "# TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 4\nh_sum 2.5\nh_count 4\n",
     true},
    {"no_final_newline", "# TYPE g gauge\ng 1", false},
    {"bad_metric_name", "# TYPE 1g gauge\n1g 1\n", false},
    {"bad_metric_name_dash", "a-b 1\n", false},
    {"bad_label_name", "# TYPE g gauge\ng{1a=\"x\"} 1\n", false},
    {"reserved_label_name", "# TYPE g gauge\ng{__name__=\"x\"} 1\n", false},
    {"unquoted_label_value", "# TYPE g gauge\ng{a=x} 1\n", false},
    {"bad_escape_in_label", "# TYPE g gauge\ng{a=\"\\t\"} 1\n", false},
    {"unterminated_label_value", "# TYPE g gauge\ng{a=\"x} 1\n", false},
    {"duplicate_label", "# TYPE g gauge\ng{a=\"1\",a=\"2\"} 1\n", false},
    {"bad_value", "# TYPE g gauge\ng one\n", false},
    {"value_missing", "# TYPE g gauge\ng\n", false},
    {"bad_timestamp", "# TYPE g gauge\ng 1 12.5\n", false},
    {"unknown_type", "# TYPE g meter\ng 1\n", false},
    {"type_after_sample", "g 1\n# TYPE g gauge\n", false},
    {"help_after_sample", "# TYPE g gauge\ng 1\n# HELP g late\n", false},
    {"two_types", "# TYPE g gauge\n# TYPE g counter\ng 1\n", false},
    {"two_helps", "# HELP g a\n# HELP g b\n# TYPE g gauge\ng 1\n", false},
    {"bad_escape_in_help", "# HELP g a\\\"b\n# TYPE g gauge\ng 1\n", false},
    {"duplicate_family", "# TYPE g gauge\ng 1\n# TYPE h gauge\nh 1\n# TYPE g gauge\n", false},
    {"family_split", "# TYPE g gauge\ng{a=\"1\"} 1\n# TYPE h gauge\nh 1\ng{a=\"2\"} 2\n", false},
    {"repeated_sample", "# TYPE g gauge\ng{a=\"1\"} 1\ng{a=\"1\"} 2\n", false},
    {"negative_counter", "# TYPE c counter\nc -1\n", false},
    {"carriage_return", "# TYPE g gauge\r\ng 1\r\n", false},
    {"histogram_bare_sample", "# TYPE h histogram\nh 1\n", false},
    {"histogram_without_inf",
     "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n", false},
    {"histogram_not_cumulative",
     "# TYPE h histogram\nh_bucket{le=\"1\"} 3\nh_bucket{le=\"2\"} 2\nh_bucket{le=\"+Inf\"} 3\nh_sum 1\nh_count 3\n", false},
    {"histogram_inf_not_count",
     "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n", false},
    {"histogram_bucket_without_le", "# TYPE h histogram\nh_bucket 1\nh_sum 1\nh_count 1\n", false},
    {"histogram_without_count", "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\n", false},
    {"histogram_bad_le", "# TYPE h histogram\nh_bucket{le=\"big\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
     false},
};

INSTANTIATE_TEST_SUITE_P(Table, PrometheusParser, ::testing::ValuesIn(parser_cases),
                         [](const auto& info) { return std::string(info.param.name); });

// ---------------------------------------------------------------------------------------------
// The writer's output passes the parser and says what it was given.

TEST(PrometheusWriter, RuntimeLikeMetricsParseAndReadBack) {
  prometheus_writer w;
  w.counter("glam_steps_total", "Training steps committed.", 1200, {{"job", "job-1"}});
  w.counter("glam_steps_total", "Training steps committed.", 7, {{"job", "job \"2\"\\\n"}});
  w.gauge("glam_loss", "Training loss of the last step.", 3.25, {{"job", "job-1"}});
  w.gauge("glam_mfu", "Model FLOP utilisation.", 0.1);
  w.gauge("glam_balancedness", "mean/max busy time.", std::nan(""));
  w.counter("glam_bytes_total", "Bytes sent.\nSecond line with a \\ backslash.", 1e18, {{"direction", "out"}});
  histogram latency({0.01, 0.1, 1});
  for (double v : {0.005, 0.01, 0.05, 0.5, 2.0, 3.0}) latency.observe(v);
  w.histogram("glam_ttft_seconds", "Time to first token.", latency.snapshot(), {{"model", "tiny"}});
  w.histogram("glam_ttft_seconds", "Time to first token.", histogram({0.01, 0.1, 1}).snapshot(), {{"model", "big"}});

  std::string text = w.text();
  std::vector<parsed_family> families;
  ASSERT_NO_THROW(families = parse_exposition(text)) << text;
  std::map<std::string, const parsed_family*> by_name;
  for (const auto& f : families) by_name[f.name] = &f;
  ASSERT_EQ(families.size(), 6u) << text;
  EXPECT_EQ(by_name.at("glam_steps_total")->type, "counter");
  EXPECT_EQ(*by_name.at("glam_steps_total")->help, "Training steps committed.");
  ASSERT_EQ(by_name.at("glam_steps_total")->samples.size(), 2u);
  EXPECT_EQ(by_name.at("glam_steps_total")->samples[1].labels.at("job"), "job \"2\"\\\n");
  EXPECT_EQ(by_name.at("glam_steps_total")->samples[0].value, 1200);
  EXPECT_EQ(by_name.at("glam_loss")->samples[0].value, 3.25);
  EXPECT_TRUE(std::isnan(by_name.at("glam_balancedness")->samples[0].value));
  EXPECT_EQ(*by_name.at("glam_bytes_total")->help, "Bytes sent.\nSecond line with a \\ backslash.");
  EXPECT_EQ(by_name.at("glam_bytes_total")->samples[0].value, 1e18);

  const auto& h = *by_name.at("glam_ttft_seconds");
  EXPECT_EQ(h.type, "histogram");
  std::map<std::string, double> tiny;
  for (const auto& s : h.samples)
    if (s.labels.at("model") == "tiny") tiny[s.name + (s.labels.count("le") ? "/" + s.labels.at("le") : "")] = s.value;
  // le is inclusive: 0.01 falls in the 0.01 bucket.
  EXPECT_EQ(tiny.at("glam_ttft_seconds_bucket/0.01"), 2);
  EXPECT_EQ(tiny.at("glam_ttft_seconds_bucket/0.1"), 3);
  EXPECT_EQ(tiny.at("glam_ttft_seconds_bucket/1"), 4);
  EXPECT_EQ(tiny.at("glam_ttft_seconds_bucket/+Inf"), 6);
  EXPECT_EQ(tiny.at("glam_ttft_seconds_count"), 6);
  EXPECT_DOUBLE_EQ(tiny.at("glam_ttft_seconds_sum"), 0.005 + 0.01 + 0.05 + 0.5 + 2.0 + 3.0);
}

TEST(PrometheusWriter, FamilyLinesComeOnceAndSamplesStayTogether) {
  prometheus_writer w;
  w.gauge("a", "A.", 1, {{"k", "1"}});
  w.gauge("b", "B.", 1);
  w.gauge("a", "A.", 2, {{"k", "2"}});  // a later sample of a joins a's group
  std::string text = w.text();
  EXPECT_EQ(text, "# HELP a A.\n# TYPE a gauge\na{k=\"1\"} 1\na{k=\"2\"} 2\n# HELP b B.\n# TYPE b gauge\nb 1\n");
  EXPECT_NO_THROW(parse_exposition(text));
}

struct value_case {
  double value;
  const char* text;
};

class PrometheusValues : public ::testing::TestWithParam<value_case> {};

TEST_P(PrometheusValues, FormatIsShortestAndReadsBackExactly) {
  const auto& c = GetParam();
  std::string s = prometheus_writer::format_value(c.value);
  EXPECT_EQ(s, c.text);
  auto back = parse_float(s);
  ASSERT_TRUE(back.has_value()) << s;
  if (std::isnan(c.value))
    EXPECT_TRUE(std::isnan(*back));
  else
    EXPECT_EQ(*back, c.value);
}

INSTANTIATE_TEST_SUITE_P(Table, PrometheusValues,
                         ::testing::Values(value_case{0, "0"}, value_case{42, "42"}, value_case{-7, "-7"},
                                           value_case{0.1, "0.1"}, value_case{1.0 / 3, "0.3333333333333333"},
                                           value_case{1e300, "1e+300"}, value_case{2.5e-7, "2.5e-07"},
                                           value_case{INFINITY, "+Inf"}, value_case{-INFINITY, "-Inf"},
                                           value_case{NAN, "NaN"}, value_case{123456789012345.0, "123456789012345"}));

// ---------------------------------------------------------------------------------------------
// Misuse is refused, and leaves the writer as it was.

struct misuse_case {
  const char* name;
  void (*apply)(prometheus_writer&);
};

class PrometheusMisuse : public ::testing::TestWithParam<misuse_case> {};

TEST_P(PrometheusMisuse, ThrowsAndKeepsTheTextValid) {
  prometheus_writer w;
  w.gauge("g", "G.", 1, {{"k", "1"}});
  w.histogram("h", "H.", histogram({1}).snapshot());
  std::string before = w.text();
  EXPECT_THROW(GetParam().apply(w), std::invalid_argument);
  EXPECT_EQ(w.text(), before);
  EXPECT_NO_THROW(parse_exposition(w.text()));
}

const misuse_case misuse_cases[] = {
    {"bad_name", [](prometheus_writer& w) { w.gauge("9lives", "x", 1); }},
    {"name_with_dash", [](prometheus_writer& w) { w.gauge("a-b", "x", 1); }},
    {"empty_help", [](prometheus_writer& w) { w.gauge("x", "", 1); }},
    {"bad_label_name", [](prometheus_writer& w) { w.gauge("x", "x", 1, {{"a-b", "1"}}); }},
    {"reserved_label_name", [](prometheus_writer& w) { w.gauge("x", "x", 1, {{"__x", "1"}}); }},
    {"label_twice", [](prometheus_writer& w) { w.gauge("x", "x", 1, {{"a", "1"}, {"a", "2"}}); }},
    {"same_labels_twice", [](prometheus_writer& w) { w.gauge("g", "G.", 2, {{"k", "1"}}); }},
    {"other_type", [](prometheus_writer& w) { w.counter("g", "G.", 2, {{"k", "2"}}); }},
    {"other_help", [](prometheus_writer& w) { w.gauge("g", "Other.", 2, {{"k", "2"}}); }},
    {"negative_counter", [](prometheus_writer& w) { w.counter("c_total", "C.", -1); }},
    {"nan_counter", [](prometheus_writer& w) { w.counter("c_total", "C.", std::nan("")); }},
    {"gauge_named_like_a_histogram_sample", [](prometheus_writer& w) { w.gauge("h_count", "x", 1); }},
    {"histogram_over_a_gauge_name", [](prometheus_writer& w) { w.histogram("g", "G.", histogram({1}).snapshot()); }},
    {"counter_named_like_a_histogram_bucket", [](prometheus_writer& w) { w.counter("h_bucket", "x", 1); }},
    {"histogram_le_label", [](prometheus_writer& w) { w.histogram("h2", "x", histogram({1}).snapshot(), {{"le", "1"}}); }},
    {"histogram_bounds_not_increasing", [](prometheus_writer& w) {
       histogram_snapshot s{{1, 1}, {0, 0, 0}, 0};
       w.histogram("h2", "x", s);
     }},
    {"histogram_infinite_bound", [](prometheus_writer& w) {
       histogram_snapshot s{{1, INFINITY}, {0, 0, 0}, 0};
       w.histogram("h2", "x", s);
     }},
    {"histogram_counts_mismatch", [](prometheus_writer& w) {
       histogram_snapshot s{{1, 2}, {0, 0}, 0};
       w.histogram("h2", "x", s);
     }},
};

INSTANTIATE_TEST_SUITE_P(Table, PrometheusMisuse, ::testing::ValuesIn(misuse_cases),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(PrometheusMisuse, FailedCallInTheMiddleKeepsEarlierFamilies) {
  // A histogram z would own z_sum, which a gauge has: the gauge stays, the histogram does not.
  prometheus_writer w;
  w.gauge("z_sum", "x", 1);
  EXPECT_THROW(w.histogram("z", "Z.", histogram({1}).snapshot()), std::invalid_argument);
  EXPECT_EQ(w.text(), "# HELP z_sum x\n# TYPE z_sum gauge\nz_sum 1\n");
}

TEST(PrometheusHistogram, RefusesBadBoundsAndBuildsExponentialOnes) {
  EXPECT_THROW(histogram({2, 1}), std::invalid_argument);
  EXPECT_THROW(histogram({NAN}), std::invalid_argument);
  auto bounds = histogram::exponential_bounds(0.001, 10, 4);
  ASSERT_EQ(bounds.size(), 4u);
  EXPECT_EQ(bounds[0], 0.001);
  EXPECT_NEAR(bounds[3], 1.0, 1e-12);
  EXPECT_THROW(histogram::exponential_bounds(0, 2, 3), std::invalid_argument);
  histogram h({1, 2});
  h.observe(NAN);
  h.observe(-5);
  EXPECT_EQ(h.snapshot().count(), 1u);
  EXPECT_EQ(h.snapshot().bucket_counts[0], 1u);
}

}  // namespace
}  // namespace glam
