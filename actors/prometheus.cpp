#include "actors/prometheus.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

namespace glam {

namespace {

const char* type_name(int k) {
  static const char* names[] = {"counter", "gauge", "histogram"};
  return names[k];
}

void check_bounds(const std::vector<double>& bounds, const std::string& what) {
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i]))
      throw std::invalid_argument(what + ": bucket bound " + std::to_string(i) + " is not finite (+Inf is implicit)");
    if (i > 0 && !(bounds[i] > bounds[i - 1]))
      throw std::invalid_argument(what + ": bucket bounds must be strictly increasing (bound " + std::to_string(i) +
                                  " is not above the one before)");
  }
}

}  // namespace

std::uint64_t histogram_snapshot::count() const {
  std::uint64_t n = 0;
  for (auto c : bucket_counts) n += c;
  return n;
}

histogram::histogram(std::vector<double> upper_bounds) {
  check_bounds(upper_bounds, "histogram");
  state_.bucket_counts.assign(upper_bounds.size() + 1, 0);
  state_.upper_bounds = std::move(upper_bounds);
}

void histogram::observe(double value) {
  if (std::isnan(value)) return;
  // Bucket i counts values <= upper_bounds[i] (Prometheus' "le"); the last counts the rest.
  auto it = std::lower_bound(state_.upper_bounds.begin(), state_.upper_bounds.end(), value);
  std::size_t i = static_cast<std::size_t>(it - state_.upper_bounds.begin());
  std::lock_guard<std::mutex> lock(mutex_);
  ++state_.bucket_counts[i];
  state_.sum += value;
}

histogram_snapshot histogram::snapshot() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return state_;
}

std::vector<double> histogram::exponential_bounds(double start, double factor, int count) {
  if (!(start > 0) || !std::isfinite(start) || !(factor > 1) || !std::isfinite(factor) || count < 1)
    throw std::invalid_argument("exponential_bounds: need start > 0, factor > 1 and count >= 1");
  std::vector<double> bounds;
  double b = start;
  for (int i = 0; i < count; ++i, b *= factor) bounds.push_back(b);
  return bounds;
}

bool prometheus_writer::valid_metric_name(std::string_view name) {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

bool prometheus_writer::valid_label_name(std::string_view name) {
  if (name.empty() || name.substr(0, 2) == "__") return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

std::string prometheus_writer::escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string prometheus_writer::escape_help(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string prometheus_writer::format_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buf[64];
  // Integers print as integers (counts read naturally); the rest in the shortest form that
  // reads back to the same double.
  if (value == std::trunc(value) && std::fabs(value) < 1e15) {
    auto r = std::to_chars(buf, buf + sizeof buf, static_cast<long long>(value));
    std::string s(buf, r.ptr);
    if (value == 0 && std::signbit(value)) s = "-0";
    return s;
  }
  auto r = std::to_chars(buf, buf + sizeof buf, value);
  return std::string(buf, r.ptr);
}

std::string prometheus_writer::label_text(const metric_labels& labels, const std::string& extra_name,
                                          const std::string& extra_value) {
  if (labels.empty() && extra_name.empty()) return {};
  std::string out = "{";
  bool first = true;
  for (const auto& [name, value] : labels) {
    out += (first ? "" : ",") + name + "=\"" + escape_label_value(value) + "\"";
    first = false;
  }
  if (!extra_name.empty()) out += (first ? "" : ",") + extra_name + "=\"" + escape_label_value(extra_value) + "\"";
  return out + "}";
}

prometheus_writer::family& prometheus_writer::declare(const std::string& name, const std::string& help, kind type,
                                                      const metric_labels& labels) {
  if (!valid_metric_name(name))
    throw std::invalid_argument("metric name '" + name + "' is not valid: use [a-zA-Z_:][a-zA-Z0-9_:]*");
  if (help.empty()) throw std::invalid_argument("metric " + name + ": the help text is empty");
  // Label names valid and distinct; "le" belongs to histogram buckets.
  std::vector<std::pair<std::string, std::string>> sorted(labels.begin(), labels.end());
  std::sort(sorted.begin(), sorted.end());
  for (std::size_t i = 0; i < sorted.size(); ++i) {
    if (!valid_label_name(sorted[i].first))
      throw std::invalid_argument("metric " + name + ": label name '" + sorted[i].first +
                                  "' is not valid: use [a-zA-Z_][a-zA-Z0-9_]*, not starting with __");
    if (i > 0 && sorted[i].first == sorted[i - 1].first)
      throw std::invalid_argument("metric " + name + ": label '" + sorted[i].first + "' given twice");
    if (type == kind::histogram && sorted[i].first == "le")
      throw std::invalid_argument("metric " + name + ": a histogram cannot have a label named 'le'");
  }
  std::string key;
  for (const auto& [n, v] : sorted) key += n + '\0' + v + '\0';

  auto owned = [](const std::string& n, kind k) -> std::vector<std::string> {
    if (k == kind::histogram) return {n + "_bucket", n + "_sum", n + "_count"};
    return {n};
  };
  family* found = nullptr;
  for (auto& f : families_) {
    if (f.name == name) {
      found = &f;
      continue;
    }
    // A sample name must say which family it belongs to: no name may be one family's name
    // or sample and another's.
    std::vector<std::string> theirs = owned(f.name, f.type);
    theirs.push_back(f.name);
    std::vector<std::string> mine = owned(name, type);
    mine.push_back(name);
    for (const auto& m : mine)
      if (std::find(theirs.begin(), theirs.end(), m) != theirs.end())
        throw std::invalid_argument("metric " + name + ": the name " + m + " is also used by the family " + f.name);
  }
  if (found) {
    if (found->type != type)
      throw std::invalid_argument("metric " + name + " was declared as a " + type_name(static_cast<int>(found->type)) +
                                  ", now used as a " + type_name(static_cast<int>(type)));
    if (found->help != help) throw std::invalid_argument("metric " + name + " was declared with another help text");
  } else {
    families_.push_back(family{name, help, type, {}, {}});
    found = &families_.back();
  }
  if (std::find(found->label_keys.begin(), found->label_keys.end(), key) != found->label_keys.end())
    throw std::invalid_argument("metric " + name + ": a sample with the labels " + label_text(labels) +
                                " was already added");
  found->label_keys.push_back(std::move(key));
  return *found;
}

void prometheus_writer::counter(const std::string& name, const std::string& help, double value,
                                const metric_labels& labels) {
  if (std::isnan(value) || value < 0)
    throw std::invalid_argument("metric " + name + ": a counter cannot be negative or NaN");
  auto& f = declare(name, help, kind::counter, labels);
  f.samples += name + label_text(labels) + " " + format_value(value) + "\n";
}

void prometheus_writer::gauge(const std::string& name, const std::string& help, double value,
                              const metric_labels& labels) {
  auto& f = declare(name, help, kind::gauge, labels);
  f.samples += name + label_text(labels) + " " + format_value(value) + "\n";
}

void prometheus_writer::histogram(const std::string& name, const std::string& help, const histogram_snapshot& h,
                                  const metric_labels& labels) {
  check_bounds(h.upper_bounds, "metric " + name);
  if (h.bucket_counts.size() != h.upper_bounds.size() + 1)
    throw std::invalid_argument("metric " + name + ": need one bucket count per bound plus one for +Inf");
  auto& f = declare(name, help, kind::histogram, labels);
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < h.bucket_counts.size(); ++i) {
    cumulative += h.bucket_counts[i];
    std::string le = i < h.upper_bounds.size() ? format_value(h.upper_bounds[i]) : "+Inf";
    f.samples += name + "_bucket" + label_text(labels, "le", le) + " " + std::to_string(cumulative) + "\n";
  }
  f.samples += name + "_sum" + label_text(labels) + " " + format_value(h.sum) + "\n";
  f.samples += name + "_count" + label_text(labels) + " " + std::to_string(cumulative) + "\n";
}

std::string prometheus_writer::text() const {
  std::string out;
  for (const auto& f : families_) {
    out += "# HELP " + f.name + " " + escape_help(f.help) + "\n";
    out += "# TYPE " + f.name + " " + type_name(static_cast<int>(f.type)) + "\n";
    out += f.samples;
  }
  return out;
}

}  // namespace glam
