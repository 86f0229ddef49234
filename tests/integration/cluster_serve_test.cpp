// Serving on a real cluster survives a worker's death: a coordinator and three worker daemons
// (separate processes on 127.0.0.1, free ports, killed by their pids) and `glam serve
// --coordinator` serve a glam-tiny checkpoint trained here. In the middle of a streamed,
// seeded completion (after its first token, with the server held still by SIGSTOP so the
// kill cannot fall after the end), the worker hosting experts but not the shard is killed
// with SIGKILL: the coordinator places its experts on a survivor from the checkpoint, the
// pass runs again, and the completion finishes with the text of the undisturbed run. Then
// the same with the shard's worker: the sequence replays its tokens into a new KV cache on a
// survivor (counted in glam_serve_sequences_replayed_total) and the text is again the same.
// `glam generate --coordinator` gives the text of `glam generate` in-process.
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <regex>

#include "cluster_harness.hpp"

namespace {

using namespace glam::test;

// A streamed completion over a plain socket, read event by event with a deadline.
class stream_reader {
 public:
  stream_reader(int port, const std::string& body) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    const std::string req = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                            "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    ok_ = ok_ && ::send(fd_, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size());
  }
  ~stream_reader() { ::close(fd_); }
  // The next event's data ("" at the end of the stream or the deadline).
  std::string next(std::chrono::milliseconds limit = 60s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      const auto at = buf_.find("data: ", scan_);
      if (at != std::string::npos) {
        const auto end = buf_.find("\n\n", at);
        if (end != std::string::npos) {
          scan_ = end + 2;
          return buf_.substr(at + 6, end - at - 6);
        }
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (!ok_ || left.count() <= 0) return {};
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return {};
      char chunk[4096];
      const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n <= 0) return {};
      buf_.append(chunk, static_cast<std::size_t>(n));
    }
  }
  // The text of the rest of the stream, to [DONE]; *error gets an error event's body.
  std::string rest(std::string* error) {
    std::string text;
    for (std::string e = next(); !e.empty() && e != "[DONE]"; e = next()) {
      const auto j = nlohmann::json::parse(e);
      if (j.contains("error")) {
        *error = e;
        return text;
      }
      for (const auto& c : j["choices"]) text += c.value("text", "");
    }
    return text;
  }
  static std::string text_of(const std::string& event) {
    std::string t;
    const auto j = nlohmann::json::parse(event);
    for (const auto& c : j["choices"]) t += c.value("text", "");
    return t;
  }

 private:
  int fd_ = -1;
  bool ok_ = false;
  std::string buf_;
  std::size_t scan_ = 0;
};

std::string http_get(int port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    const std::string req = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
    pollfd p{fd, POLLIN, 0};
    char chunk[4096];
    while (::poll(&p, 1, 10000) > 0) {
      const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
      if (n <= 0) break;
      out.append(chunk, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  return out;
}

double metric(const std::string& text, const std::string& name) {
  std::smatch m;
  if (!std::regex_search(text, m, std::regex("\n" + name + " ([0-9.e+]+)"))) return -1;
  return std::stod(m[1].str());
}

// The worker of a unit in the one session `glam status` shows ("" when none).
std::string owner_of(const nlohmann::json& status, const std::string& unit) {
  if (!status.contains("sessions") || status["sessions"].empty()) return {};
  return status["sessions"][0]["units"].value(unit, "");
}

TEST(ClusterServe, SurvivesTheDeathOfAnExpertWorkerAndOfTheShardWorker) {
  cluster c("serve");
  ASSERT_GT(c.port, 0) << c.coordinator->err();
  // Data and a glam-tiny checkpoint, under the directory the workers may read checkpoints in.
  auto [prep_rc, prep] = run({glam_bin, "data", "prepare", "--quiet", "--vocab-size", "2048", "--input",
                              "/usr/share/games/fortunes/computers", "/usr/share/games/fortunes/cookie", "--out",
                              c.dir + "/data"},
                             c.dir, 300s, c.env);
  ASSERT_EQ(prep_rc, 0) << prep;
  auto [train_rc, train] = run({glam_bin, "train", std::string(GLAM_SOURCE_DIR) + "/configs/glam-tiny.toml", "--steps",
                                "2", "--threads", "2", "--data", c.dir + "/data", "--checkpoint-dir", c.dir + "/ckpt"},
                               c.dir, 300s, c.env);
  ASSERT_EQ(train_rc, 0) << train;
  const std::string ckpt = c.dir + "/ckpt";

  for (const char* name : {"a", "b", "c"})
    c.add_worker(name, {}, {"--checkpoint-root", c.dir, "--threads", "1"});
  for (auto& w : c.workers) ASSERT_GT(w->wait_port(), 0) << w->err();
  ASSERT_EQ(c.wait_status([](const auto& s) { return s["workers"].size() == 3; })["workers"].size(), 3u);

  // glam generate on the cluster gives the in-process text.
  const std::vector<std::string> gen{"generate", "--checkpoint", ckpt, "--prompt", "Q: What is a computer?",
                                     "--temperature", "0.8", "--seed", "4", "--max-tokens", "24"};
  auto local = gen;
  local.insert(local.begin(), glam_bin);
  auto on_cluster = local;
  on_cluster.push_back("--coordinator");
  on_cluster.push_back(c.endpoint());
  auto [l_rc, l_out] = run(local, c.dir, 120s, c.env);
  auto [c_rc, c_out] = run(on_cluster, c.dir, 120s, c.env);
  ASSERT_EQ(l_rc, 0) << l_out;
  ASSERT_EQ(c_rc, 0) << c_out;
  auto text_of = [](const std::string& out) {  // stdout and stderr: the lines that are not the summary
    std::string t;
    std::istringstream in(out);
    for (std::string line; std::getline(in, line);)
      if (line.rfind("glam generate:", 0) != 0 && line.rfind("[", 0) != 0) t += line + "\n";
    return t;
  };
  EXPECT_EQ(text_of(c_out), text_of(l_out));

  // The server, on the cluster (found by the secret's record under HOME, as glam status is).
  auto serve = std::make_unique<process>(
      std::vector<std::string>{glam_bin, "serve", "--checkpoint", ckpt, "--listen", "127.0.0.1:0", "--coordinator"},
      c.dir, "serve", c.env);
  const int port = serve->wait_port(120s);
  ASSERT_GT(port, 0) << serve->err();
  const auto placed = c.wait_status([](const auto& s) { return !owner_of(s, "shard0").empty(); });
  const std::string shard_worker = owner_of(placed, "shard0");
  std::string expert_worker;
  for (const auto& [unit, worker] : placed["sessions"][0]["units"].items())
    if (worker.get<std::string>() != shard_worker) expert_worker = worker.get<std::string>();
  ASSERT_FALSE(shard_worker.empty());
  ASSERT_FALSE(expert_worker.empty()) << placed.dump();
  auto pid_of = [&](const std::string& name) {
    for (std::size_t i = 0; i < c.workers.size(); ++i)
      if (std::string("abc").substr(i, 1) == name) return c.workers[i].get();
    return static_cast<process*>(nullptr);
  };

  const std::string body = R"({"model": "glam-tiny", "prompt": "A computer is", "max_tokens": 40, "temperature": 0.8,
                              "seed": 12, "stream": true})";
  std::string error;
  const std::string undisturbed = stream_reader(port, body).rest(&error);
  ASSERT_TRUE(error.empty()) << error;
  ASSERT_FALSE(undisturbed.empty());

  // Kills `victim` after the stream's first token, while the server is held still; lets the
  // server go on once the victim's units are placed on the survivors (or after a bound).
  auto disturbed = [&](const std::string& victim) {
    stream_reader r(port, body);
    const std::string first = r.next();
    EXPECT_FALSE(first.empty());
    serve->kill(SIGSTOP);
    pid_of(victim)->kill(SIGKILL);
    EXPECT_EQ(pid_of(victim)->wait_exit(10s), -SIGKILL);
    c.wait_status(
        [&](const auto& s) {
          if (!s.contains("sessions") || s["sessions"].empty() || !s["sessions"][0]["loading"].empty()) return false;
          for (const auto& [unit, worker] : s["sessions"][0]["units"].items())
            if (worker.template get<std::string>() == victim) return false;
          return true;
        },
        1500ms);
    serve->kill(SIGCONT);
    std::string err;
    const std::string head = stream_reader::text_of(first);
    std::string text = head + r.rest(&err);
    EXPECT_TRUE(err.empty()) << err << "\n" << serve->err();
    EXPECT_FALSE(head.empty()) << first;
    return text;
  };

  EXPECT_EQ(disturbed(expert_worker), undisturbed) << serve->err();
  EXPECT_NE(c.coordinator->err().find("worker " + expert_worker + " lost; its units are placed again"), std::string::npos)
      << c.coordinator->err();
  EXPECT_EQ(metric(http_get(port, "/metrics"), "glam_serve_sequences_replayed_total"), 0)
      << "an expert's loss costs no KV cache";

  EXPECT_EQ(disturbed(shard_worker), undisturbed) << serve->err();
  EXPECT_GE(metric(http_get(port, "/metrics"), "glam_serve_sequences_replayed_total"), 1)
      << "the shard's sequence replays its tokens on the survivor";

  serve->kill(SIGTERM);
  EXPECT_EQ(serve->wait_exit(20s), 0) << serve->err();
}

}  // namespace
