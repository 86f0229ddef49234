// `glam serve` and `glam bench serve` as a user runs them: options that cannot work are
// refused before anything is loaded (a non-loopback address without a key first); on a
// glam-tiny checkpoint trained here, the server binds loopback on a free port, prints the
// base URL, answers /health and completions (with its API key), refuses a request without
// the key, and ends cleanly on SIGTERM; the benchmark runs and prints its figures. The
// server is a child process started here, on 127.0.0.1, and killed by its pid.
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli_testing.hpp"

namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

class CliServe : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("glam-serve-cli-test-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

struct option_case {
  const char* name;
  std::string args;
  std::string message;
};

class CliServeOptions : public CliServe, public ::testing::WithParamInterface<option_case> {};

TEST_P(CliServeOptions, AreRefusedWithAClearMessage) {
  auto r = glam::testing::run_glam("serve " + GetParam().args);
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find(GetParam().message), std::string::npos) << r.output;
}

INSTANTIATE_TEST_SUITE_P(
    Table, CliServeOptions,
    ::testing::Values(
        option_case{"OffLoopbackWithoutAKey", "--checkpoint /nowhere --listen 0.0.0.0:0", "needs a key: pass --api-key-file"},
        option_case{"ListenNotHostPort", "--checkpoint /nowhere --listen 8000", "is not HOST:PORT"},
        option_case{"ListenBadPort", "--checkpoint /nowhere --listen 127.0.0.1:99999", "the port must be a number"},
        option_case{"MissingKeyFile", "--checkpoint /nowhere --api-key-file /nowhere/key", "/nowhere/key"},
        option_case{"MissingCheckpoint", "--checkpoint /nowhere/ckpt", "checkpoint directory '/nowhere/ckpt' does not exist"},
        option_case{"MaxBatchZero", "--checkpoint /nowhere --max-batch 0", "--max-batch"}),
    [](const auto& info) { return std::string(info.param.name); });

// A child process with stdout to a file, killed by its pid at the end.
class child {
 public:
  child(const std::vector<std::string>& args, const fs::path& out) : out_(out) {
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      std::vector<char*> argv;
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  ~child() {
    if (!exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  std::string output() const {
    std::ifstream in(out_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  // The port of "glam serve listening on 127.0.0.1:PORT" (0 if it does not come in time).
  int wait_port(std::chrono::milliseconds limit) {
    const std::string needle = "glam serve listening on 127.0.0.1:";
    const auto deadline = clock_type::now() + limit;
    while (clock_type::now() < deadline) {
      const std::string s = output();
      const auto at = s.find(needle);
      if (at != std::string::npos) return std::stoi(s.substr(at + needle.size()));
      std::this_thread::sleep_for(20ms);
    }
    return 0;
  }
  // Sends the signal and waits (bounded) for the exit: the exit status, or -1.
  int stop(int signal, std::chrono::milliseconds limit) {
    ::kill(pid_, signal);
    const auto deadline = clock_type::now() + limit;
    while (clock_type::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(10ms);
    }
    return -1;
  }

 private:
  fs::path out_;
  pid_t pid_ = -1;
  bool exited_ = false;
};

// One request on a fresh connection; the status and the body (bounded wait).
std::optional<std::pair<int, std::string>> http(int port, const std::string& request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string got;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == ssize_t(request.size())) {
    const auto deadline = clock_type::now() + 20s;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now()).count();
      pollfd p{fd, POLLIN, 0};
      if (left <= 0 || ::poll(&p, 1, int(left)) <= 0) break;
      char buf[8192];
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      got.append(buf, std::size_t(n));
    }
  }
  ::close(fd);
  if (got.rfind("HTTP/1.1 ", 0) != 0) return std::nullopt;
  const auto body = got.find("\r\n\r\n");
  return std::make_pair(std::stoi(got.substr(9, 3)), body == std::string::npos ? "" : got.substr(body + 4));
}

std::string post(const std::string& body, const std::string& key) {
  return "POST /v1/completions HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\n" +
         (key.empty() ? std::string() : "Authorization: Bearer " + key + "\r\n") +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

// One test for everything that needs a trained checkpoint (ctest runs each test in a
// process of its own; training is most of the time).
TEST_F(CliServe, ServesATrainedCheckpointAndTheBenchmarkRuns) {
  ASSERT_EQ(glam::testing::train_tiny_checkpoint(dir_.string()), "");
  const fs::path key_file = dir_ / "key";
  std::ofstream(key_file) << "test-key-123\n";
  fs::permissions(key_file, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::replace);

  {
    child server({GLAM_BINARY, "serve", "--checkpoint", (dir_ / "ckpt").string(), "--listen", "127.0.0.1:0",
                  "--api-key-file", key_file.string(), "--threads", "2", "--max-concurrent", "4"},
                 dir_ / "serve.out");
    const int port = server.wait_port(30s);
    ASSERT_GT(port, 0) << server.output();
    EXPECT_NE(server.output().find("(OpenAI base URL http://127.0.0.1:" + std::to_string(port) + "/v1)"),
              std::string::npos)
        << server.output();
    auto health = http(port, "GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    ASSERT_TRUE(health);
    EXPECT_EQ(health->first, 200);
    EXPECT_NE(health->second.find("\"status\":\"ok\""), std::string::npos) << health->second;
    const std::string body = R"({"model": "glam-tiny", "prompt": "Q: Why", "max_tokens": 5, "seed": 1})";
    auto ok = http(port, post(body, "test-key-123"));
    ASSERT_TRUE(ok);
    EXPECT_EQ(ok->first, 200) << ok->second;
    EXPECT_NE(ok->second.find("\"object\":\"text_completion\""), std::string::npos) << ok->second;
    auto again = http(port, post(body, "test-key-123"));
    ASSERT_TRUE(again);
    // The same seed gives the same choices (the id and the time differ).
    const auto choices = [](const std::string& json) {
      const auto from = json.find("\"choices\""), to = json.find("\"created\"");
      return from == std::string::npos || to == std::string::npos ? json : json.substr(from, to - from);
    };
    EXPECT_EQ(choices(again->second), choices(ok->second));
    auto refused = http(port, post(body, ""));
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->first, 401);
    EXPECT_EQ(server.stop(SIGTERM, 10s), 0) << server.output();
    EXPECT_NE(server.output().find("terminated; stopping"), std::string::npos) << server.output();
  }

  auto bench = glam::testing::run_glam("bench serve '" + (dir_ / "ckpt").string() +
                                       "' --seconds 0.3 --streams 1 2 --bandwidth-mib 64 --max-tokens 8");
  ASSERT_EQ(bench.status, 0) << bench.output;
  for (const char* line : {"memory read bandwidth:", "the batch-1 bound", "batching gain (tokens/s at 2 streams over 1)",
                           "batch-1 decode step:"})
    EXPECT_NE(bench.output.find(line), std::string::npos) << line << "\n" << bench.output;
}

}  // namespace
