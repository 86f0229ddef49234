// The Prometheus text format writer, checked by a strict parser of format 0.0.4
// (prometheus_parser_testing.hpp, written from the format's description): the parser refuses
// everything the format does not allow (shown by the table of bad texts), and the writer's
// output must pass it.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "actors/prometheus.hpp"
#include "prometheus_parser_testing.hpp"

namespace glam {
namespace {

using namespace prometheus_testing;

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
