#include "coordinator/job_table.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "configs/config.hpp"
#include "model/metrics.hpp"

namespace glam {

namespace fs = std::filesystem;

const char* to_string(job_state s) {
  switch (s) {
    case job_state::pending: return "pending";
    case job_state::running: return "running";
    case job_state::finished: return "finished";
    case job_state::failed: return "failed";
    case job_state::stopped: return "stopped";
  }
  return "unknown";
}

std::optional<job_state> job_state_from_string(const std::string& s) {
  for (auto st : {job_state::pending, job_state::running, job_state::finished, job_state::failed,
                  job_state::stopped})
    if (s == to_string(st)) return st;
  return std::nullopt;
}

namespace {

void write_durably(const std::string& path, const std::string& text) {
  auto tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw std::runtime_error("cannot write " + tmp + ": check the state directory's permissions");
  auto n = ::write(fd, text.data(), text.size());
  bool ok = n == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) throw std::runtime_error("cannot write " + tmp + ": disk full?");
  if (::rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error("cannot rename " + tmp + " to " + path);
  int dfd = ::open(fs::path(path).parent_path().c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace

job_table::job_table(std::string state_dir) : dir_(std::move(state_dir)) {
  std::error_code ec;
  fs::create_directories(fs::path(dir_) / "jobs", ec);
  if (ec) throw std::runtime_error("cannot create state directory " + dir_ + ": " + ec.message());
  auto path = dir_ + "/jobs.json";
  std::ifstream in(path);
  if (!in) return;
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    auto j = nlohmann::json::parse(ss.str());
    epoch_ = j.at("epoch").get<std::int64_t>();
    next_id_ = j.at("next_id").get<std::int64_t>();
    for (const auto& r : j.at("jobs")) {
      job_record rec;
      rec.id = r.at("id");
      rec.name = r.at("name");
      auto st = job_state_from_string(r.at("state").get<std::string>());
      if (!st) throw std::runtime_error("unknown job state " + r.at("state").dump());
      rec.state = *st;
      if (!name_problem(rec.name).empty() || rec.id.rfind(rec.name + "-", 0) != 0)
        throw std::runtime_error("job id '" + rec.id + "' is not '<name>-<n>' with a valid name");
      std::ifstream toml(job_dir(rec.id) + "/job.toml");
      std::stringstream text;
      text << toml.rdbuf();
      if (!toml) throw std::runtime_error("job " + rec.id + " has no readable " + job_dir(rec.id) + "/job.toml");
      rec.config_toml = text.str();
      rec.steps = r.at("steps");
      rec.step = r.at("step");
      rec.loss = r.value("loss", 0.0);
      rec.error = r.value("error", "");
      rec.workers = r.value("workers", std::vector<std::string>{});
      jobs_.push_back(rec);
    }
  } catch (const std::exception& e) {
    throw std::runtime_error("state file " + path + " is not a valid job table (" + e.what() +
                             "): restore it or move it away to start empty");
  }
}

std::int64_t job_table::bump_epoch() {
  ++epoch_;
  persist();
  return epoch_;
}

job_record& job_table::add(const std::string& name, const std::string& config_toml, std::int64_t steps) {
  job_record r;
  // The id names a directory: the name must be a safe one already.
  if (auto why = name_problem(name); !why.empty()) throw std::invalid_argument("job name '" + name + "': " + why);
  r.id = name + "-" + std::to_string(next_id_++);
  r.name = name;
  r.config_toml = config_toml;
  r.steps = steps;
  std::error_code ec;
  fs::create_directories(job_dir(r.id), ec);
  if (ec) throw std::runtime_error("cannot create " + job_dir(r.id) + ": " + ec.message());
  write_durably(job_dir(r.id) + "/job.toml", config_toml);
  jobs_.push_back(r);
  persist();
  return jobs_.back();
}

job_record* job_table::find(const std::string& id) {
  for (auto& j : jobs_)
    if (j.id == id) return &j;
  return nullptr;
}

job_record* job_table::active() {
  for (auto& j : jobs_)
    if (!is_final(j.state)) return &j;
  return nullptr;
}

std::string job_table::job_dir(const std::string& id) const { return dir_ + "/jobs/" + id; }

namespace {

std::optional<double> number_of(const nlohmann::json& line, const char* key) {
  auto it = line.find(key);
  if (it == line.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

void count_line(job_progress& p, const nlohmann::json& line) {
  if (!line.is_object()) return;
  if (auto e = line.find("event"); e != line.end()) {
    if (e->is_string()) ++p.events[e->get<std::string>()];
    return;
  }
  if (!line.contains("step")) return;
  ++p.steps_committed;
  p.tokens += line.value("tokens", std::int64_t{0});
  if (line.value("skipped", false)) ++p.skipped_steps;
  p.dropped_choices += line.value("dropped", std::int64_t{0});
  p.tokens_per_second = number_of(line, "tokens_per_second");
  p.mfu = number_of(line, "mfu");
  p.exchange_share = number_of(line, "exchange_share");
  if (auto v = number_of(line, "val_loss")) p.val_loss = v;
}

}  // namespace

nlohmann::json to_json(const job_progress& p) {
  nlohmann::json o{{"steps_committed", p.steps_committed},
                   {"tokens", p.tokens},
                   {"skipped_steps", p.skipped_steps},
                   {"dropped_choices", p.dropped_choices},
                   {"events", p.events}};
  const std::pair<const char*, const std::optional<double>*> gauges[] = {
      {"tokens_per_second", &p.tokens_per_second},
      {"mfu", &p.mfu},
      {"exchange_share", &p.exchange_share},
      {"val_loss", &p.val_loss}};
  for (const auto& [key, value] : gauges)
    if (*value) o[key] = **value;
  return o;
}

void job_table::append_metrics(const std::string& id, const std::string& json_line) {
  std::ofstream out(job_dir(id) + "/metrics.jsonl", std::ios::app);
  out << json_line << "\n";
  if (auto* j = find(id)) count_line(j->progress, nlohmann::json::parse(json_line, nullptr, false));
}

void job_table::truncate_metrics(const std::string& id, std::int64_t step) const {
  keep_metrics_before(job_dir(id) + "/metrics.jsonl", step);
}

void job_table::persist() const {
  nlohmann::json j;
  j["epoch"] = epoch_;
  j["next_id"] = next_id_;
  j["jobs"] = nlohmann::json::array();
  for (const auto& r : jobs_)
    j["jobs"].push_back({{"id", r.id},     {"name", r.name}, {"state", to_string(r.state)}, {"steps", r.steps},
                         {"step", r.step}, {"loss", r.loss}, {"error", r.error},              {"workers", r.workers}});
  write_durably(dir_ + "/jobs.json", j.dump(2));
}

}  // namespace glam
