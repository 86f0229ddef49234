#pragma once
// A writer of the Prometheus text exposition format, version 0.0.4, for the /metrics
// endpoints (Debian packages no Prometheus client for C++). It refuses, with
// std::invalid_argument naming the metric, anything the format does not allow, so the text it
// renders always parses: names, label names, a family declared twice with another type or
// help, a sample name claimed by two families (a histogram "x" owns x_bucket, x_sum and
// x_count), a label set repeated within a family, a negative or NaN counter, histogram bounds
// that do not increase. docs/http.md lists the metrics glam exports.
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace glam {

inline constexpr const char* prometheus_content_type = "text/plain; version=0.0.4; charset=utf-8";

using metric_labels = std::vector<std::pair<std::string, std::string>>;

// A histogram's state at one moment: counts per bucket (not cumulative; the writer sums them),
// one more than there are bounds, the last for observations above every bound (+Inf).
struct histogram_snapshot {
  std::vector<double> upper_bounds;  // finite, strictly increasing
  std::vector<std::uint64_t> bucket_counts;
  double sum = 0;
  std::uint64_t count() const;
};

// A thread-safe histogram for latencies and sizes.
class histogram {
 public:
  // Throws std::invalid_argument unless bounds are finite and strictly increasing.
  explicit histogram(std::vector<double> upper_bounds);
  void observe(double value);  // NaN is ignored
  histogram_snapshot snapshot() const;

  // Bounds start, start*factor, ... (count of them): for latencies in seconds.
  static std::vector<double> exponential_bounds(double start, double factor, int count);

 private:
  mutable std::mutex mutex_;
  histogram_snapshot state_;
};

class prometheus_writer {
 public:
  // Each call adds one sample to the family `name`, declaring the family on first use (its
  // HELP and TYPE lines) and checking that later uses agree on type and help.
  void counter(const std::string& name, const std::string& help, double value, const metric_labels& labels = {});
  void gauge(const std::string& name, const std::string& help, double value, const metric_labels& labels = {});
  void histogram(const std::string& name, const std::string& help, const histogram_snapshot& h,
                 const metric_labels& labels = {});

  // The exposition text: every family once, in the order first used, its samples together.
  std::string text() const;

  // Rules of the format, usable on their own.
  static bool valid_metric_name(std::string_view name);  // [a-zA-Z_:][a-zA-Z0-9_:]*
  static bool valid_label_name(std::string_view name);   // [a-zA-Z_][a-zA-Z0-9_]*, not "__" first
  static std::string escape_label_value(std::string_view value);  // \ " and newline
  static std::string escape_help(std::string_view help);          // \ and newline
  static std::string format_value(double value);                  // shortest exact, +Inf, -Inf, NaN

 private:
  enum class kind { counter, gauge, histogram };
  struct family {
    std::string name;
    std::string help;
    kind type;
    std::vector<std::string> label_keys;  // canonical label sets seen, for duplicates
    std::string samples;
  };
  family& declare(const std::string& name, const std::string& help, kind type, const metric_labels& labels);
  static std::string label_text(const metric_labels& labels, const std::string& extra_name = {},
                                const std::string& extra_value = {});

  std::vector<family> families_;
};

}  // namespace glam
