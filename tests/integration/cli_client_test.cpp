// The client commands as a user runs them on one machine: status, submit, stop and drain
// find the cluster without --coordinator when one coordinator runs here (or from
// GLAM_COORDINATOR), ask for --coordinator when several do, and skip a coordinator that was
// killed; `submit --wait` draws a progress bar on a terminal and plain lines elsewhere.
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "cli/progress_bar.hpp"
#include "cluster_harness.hpp"

namespace glam::test {
namespace {

using cli::eta_estimator;
using cli::format_duration;
using cli::job_progress_view;
using cli::progress_bar_line;
using cli::progress_plain_line;

// --- what the progress shows ------------------------------------------------------------------

TEST(Progress, DurationsReadAsAPersonWould) {
  const std::vector<std::pair<std::optional<double>, std::string>> table{
      {std::nullopt, "--"}, {-1.0, "--"},        {std::nan(""), "--"}, {0.0, "0s"},          {0.4, "0s"},
      {59.4, "59s"},        {59.6, "1m00s"},     {185.0, "3m05s"},     {3599.0, "59m59s"},   {3600.0, "1h00m"},
      {7380.0, "2h03m"},    {359999.0, "99h59m"},  {360000.0, ">99h"}};
  for (const auto& [seconds, text] : table) EXPECT_EQ(format_duration(seconds), text) << (seconds ? *seconds : -9);
}

job_progress_view view(std::int64_t step, std::int64_t steps, std::optional<double> eta = std::nullopt) {
  job_progress_view v;
  v.id = "tiny-1";
  v.state = "running";
  v.activity = "computing";
  v.step = step;
  v.steps = steps;
  v.loss = 3.14159;
  v.tokens_per_second = 1234.4;
  v.eta_seconds = eta;
  return v;
}

TEST(Progress, TheBarKeepsItsWidthAsTheNumbersGrow) {
  for (int width : {80, 100, 120}) {
    const auto a = progress_bar_line(view(1, 10), width), b = progress_bar_line(view(9999, 10000, 99999.0), width);
    EXPECT_EQ(a.find(']'), b.find(']')) << a << "\n" << b;
  }
  EXPECT_EQ(cli::progress_bar_columns(73), 0);
  EXPECT_EQ(cli::progress_bar_columns(74), 10);
  EXPECT_EQ(cli::progress_bar_columns(200), 40);
}

TEST(Progress, TheBarFillsWithTheStepsAndFitsTheTerminal) {
  struct bar_case {
    std::int64_t step, steps;
    int width;
    int hashes, dots;  // -1: no bar (too narrow)
  };
  const std::vector<bar_case> table{{0, 100, 120, 0, 40},  {50, 100, 120, 20, 20}, {100, 100, 120, 40, 0},
                                    {250, 100, 120, 40, 0}, {1, 3, 80, 5, 11},      {2, 3, 80, 10, 6},
                                    {5, 10, 30, -1, -1},    {5, 0, 120, 0, 40}};
  for (const auto& k : table) {
    const auto line = progress_bar_line(view(k.step, k.steps, 185.0), k.width);
    EXPECT_LE(static_cast<int>(line.size()), k.width) << line;
    if (k.hashes < 0) {
      EXPECT_EQ(line.find('['), std::string::npos) << line;
      continue;
    }
    ASSERT_EQ(line.front(), '[') << line;
    const auto bar = line.substr(1, line.find(']') - 1);
    EXPECT_EQ(std::count(bar.begin(), bar.end(), '#'), k.hashes) << line;
    EXPECT_EQ(std::count(bar.begin(), bar.end(), '.'), k.dots) << line;
    EXPECT_NE(line.find(std::to_string(k.step) + "/" + std::to_string(k.steps)), std::string::npos) << line;
    EXPECT_NE(line.find("loss 3.1416"), std::string::npos) << line;
    EXPECT_NE(line.find("1234 tok/s"), std::string::npos) << line;
    EXPECT_NE(line.find("ETA 3m05s"), std::string::npos) << line;
    EXPECT_NE(line.find("running (computing)"), std::string::npos) << line;
  }
}

TEST(Progress, PlainLinesKeepTheirForm) {
  EXPECT_EQ(progress_plain_line(view(120, 1000, 65.0)),
            "job tiny-1: running (computing), step 120/1000, loss 3.1416, 1234 tokens/s, ETA 1m05s");
  auto v = view(3, 10);
  v.activity.clear();
  v.state = "pending";
  EXPECT_EQ(progress_plain_line(v), "job tiny-1: pending, step 3/10, loss 3.1416, 1234 tokens/s, ETA --");
}

TEST(Progress, TheEtaFollowsTheRecentPace) {
  struct eta_case {
    std::vector<std::pair<double, std::int64_t>> looks;  // (seconds, step)
    std::int64_t steps;
    std::optional<double> eta;
  };
  const std::vector<eta_case> table{
      {{}, 100, std::nullopt},
      {{{0, 10}}, 100, std::nullopt},                              // one look: no pace yet
      {{{0, 10}, {1, 10}}, 100, std::nullopt},                     // no step in between
      {{{0, 10}, {2, 20}}, 100, 16.0},                             // 5 steps/s, 80 left
      {{{0, 0}, {10, 10}, {100, 100}, {101, 110}}, 200, 9.0},      // the window forgets the slow start
      {{{0, 50}, {1, 60}, {2, 30}, {3, 40}}, 100, 6.0},            // a rollback: measured again from there
      {{{0, 90}, {1, 100}}, 100, 0.0},
  };
  for (std::size_t i = 0; i < table.size(); ++i) {
    eta_estimator e(30);
    for (const auto& [t, step] : table[i].looks) e.observe(t, step);
    const auto got = e.eta(table[i].steps);
    ASSERT_EQ(got.has_value(), table[i].eta.has_value()) << "case " << i;
    if (got) EXPECT_DOUBLE_EQ(*got, *table[i].eta) << "case " << i;
  }
}

// --- finding the cluster ---------------------------------------------------------------------

// A coordinator of its own state directory, under a HOME shared with other coordinators.
std::unique_ptr<process> start_coordinator(const std::string& home, const std::string& tag,
                                           std::vector<std::string> extra = {}) {
  std::vector<std::string> args{glam_bin, "coordinator", "--listen", "127.0.0.1:0", "--state", home + "/" + tag};
  args.insert(args.end(), extra.begin(), extra.end());
  return std::make_unique<process>(args, home, tag, std::vector<std::string>{"HOME=" + home});
}

TEST(ClientDiscovery, OneRunningClusterIsFoundSeveralAreListedAKilledOneIsSkipped) {
  const std::string home = fresh_dir("discovery");
  // GLAM_COORDINATOR empty: as if it were not set (the test's own environment may set it).
  const std::vector<std::string> env{"HOME=" + home, "GLAM_COORDINATOR="};
  auto client = [&](std::vector<std::string> args, std::vector<std::string> more_env = {}) {
    args.insert(args.begin(), glam_bin);
    auto e = env;
    e.insert(e.end(), more_env.begin(), more_env.end());
    return run(args, home, 30s, e);
  };
  // No coordinator: every client says how to name one.
  for (const std::vector<std::string> args :
       {std::vector<std::string>{"status"}, {"stop", "tiny-1"}, {"drain", "w1"}, {"submit", home + "/job.toml"}}) {
    if (args[0] == "submit") write_file(home + "/job.toml", tiny_job);
    auto [rc, out] = client(args);
    EXPECT_NE(rc, 0) << args[0];
    EXPECT_NE(out.find("none runs on this machine"), std::string::npos) << args[0] << ": " << out;
  }

  auto a = start_coordinator(home, "a");
  const int a_port = a->wait_port();
  ASSERT_GT(a_port, 0) << a->err();
  const std::string a_end = "127.0.0.1:" + std::to_string(a_port);
  {
    auto [rc, out] = client({"status"});
    EXPECT_EQ(rc, 0) << out;
    EXPECT_NE(out.find("coordinator " + a_end), std::string::npos) << out;
  }
  auto b = start_coordinator(home, "b");
  const int b_port = b->wait_port();
  ASSERT_GT(b_port, 0) << b->err();
  const std::string b_end = "127.0.0.1:" + std::to_string(b_port);

  // Two run: each command lists both and asks for --coordinator, exiting non-zero.
  struct several_case {
    std::vector<std::string> args;
    std::vector<std::string> env;
    int rc;                 // 0, or -1 for "not 0"
    std::string expected;  // in the output
  };
  const std::vector<several_case> table{
      {{"status"}, {}, -1, "pick one with --coordinator HOST:PORT"},
      {{"stop", "tiny-1"}, {}, -1, "pick one with --coordinator HOST:PORT"},
      {{"drain", "w1"}, {}, -1, "pick one with --coordinator HOST:PORT"},
      {{"submit", home + "/job.toml"}, {}, -1, "pick one with --coordinator HOST:PORT"},
      {{"status", "--json"}, {"GLAM_COORDINATOR=" + b_end}, 0, "\"listen\":\"" + b_end + "\""},
      {{"status", "--json", "--coordinator", a_end}, {"GLAM_COORDINATOR=" + b_end}, 0, "\"listen\":\"" + a_end + "\""},
      {{"stop", "nosuch-1"}, {"GLAM_COORDINATOR=" + a_end}, -1, "no job 'nosuch-1'"},  // it reached a
  };
  for (const auto& k : table) {
    auto [rc, out] = client(k.args, k.env);
    if (k.rc == 0)
      EXPECT_EQ(rc, 0) << k.args[0] << ": " << out;
    else
      EXPECT_NE(rc, 0) << k.args[0] << ": " << out;
    EXPECT_NE(out.find(k.expected), std::string::npos) << k.args[0] << ": " << out;
    if (k.expected.rfind("pick one", 0) == 0) {
      EXPECT_NE(out.find(a_end), std::string::npos) << out;
      EXPECT_NE(out.find(b_end), std::string::npos) << out;
      EXPECT_NE(out.find("2 coordinators run on this machine"), std::string::npos) << out;
    }
  }

  // b is killed: its record stays, but it no longer counts.
  b->kill(SIGKILL);
  b->wait_exit(10s);
  {
    auto [rc, out] = client({"status", "--json"});
    EXPECT_EQ(rc, 0) << out;
    EXPECT_NE(out.find("\"listen\":\"" + a_end + "\""), std::string::npos) << out;
  }
  // a stops cleanly and removes its record.
  a->kill(SIGTERM);
  EXPECT_EQ(a->wait_exit(15s), 0) << a->err();
  EXPECT_FALSE(fs::exists(home + "/.glam/clusters/127.0.0.1_" + std::to_string(a_port)));
  EXPECT_TRUE(fs::exists(home + "/.glam/clusters/127.0.0.1_" + std::to_string(b_port)));
  {
    auto [rc, out] = client({"status"});
    EXPECT_NE(rc, 0);
    EXPECT_NE(out.find("none runs on this machine"), std::string::npos) << out;
  }
  fs::remove_all(home);
}

// --- submit --wait -------------------------------------------------------------------------

// The job of the progress tests: a few paced steps, so that the bar is drawn several times.
std::string short_job(int steps) {
  auto t = tiny_job;
  t.replace(t.find("steps = 1000000"), 15, "steps = " + std::to_string(steps));
  return t;
}

// Runs `args` with stdin, stdout and stderr on a new pseudo-terminal of `columns` columns and
// returns its exit code and everything it wrote there (bounded by timeout).
std::pair<int, std::string> run_on_terminal(const std::vector<std::string>& args, const std::vector<std::string>& env,
                                            std::chrono::seconds timeout) {
  int master = -1;
  winsize ws{};
  ws.ws_col = 100;
  ws.ws_row = 24;
  const pid_t pid = ::forkpty(&master, nullptr, nullptr, &ws);
  if (pid == 0) {
    for (const auto& kv : env) ::putenv(const_cast<char*>(kv.c_str()));
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  std::string out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = -1;
  bool exited = false;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{master, POLLIN, 0};
    if (::poll(&p, 1, 100) > 0) {
      char buf[4096];
      const ssize_t n = ::read(master, buf, sizeof buf);
      if (n > 0) {
        out.append(buf, static_cast<std::size_t>(n));
        continue;
      }
    }
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      exited = true;
      // What is still buffered in the terminal.
      for (;;) {
        pollfd q{master, POLLIN, 0};
        char buf[4096];
        if (::poll(&q, 1, 50) <= 0) break;
        const ssize_t n = ::read(master, buf, sizeof buf);
        if (n <= 0) break;
        out.append(buf, static_cast<std::size_t>(n));
      }
      break;
    }
  }
  if (!exited) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  }
  ::close(master);
  return {exited && WIFEXITED(status) ? WEXITSTATUS(status) : 1000, out};
}

TEST(SubmitWait, ABarOnATerminalAndPlainLinesElsewhere) {
  cluster c("progress", 3000, 0, {"--min-round-ms", "150"});
  ASSERT_GT(c.port, 0) << c.coordinator->err();
  ASSERT_GT(c.add_worker("w1").wait_port(), 0);
  write_file(c.dir + "/job.toml", short_job(8));

  // Not a terminal: a plain line per step, ending with the finished one; no redrawing.
  auto [rc, out] = run({glam_bin, "submit", "--coordinator", c.endpoint(), c.dir + "/job.toml", "--wait", "--timeout",
                        "120"},
                       c.dir, 150s, c.env);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(out.find('\r'), std::string::npos) << out;
  EXPECT_EQ(out.find("\x1b["), std::string::npos) << out;
  EXPECT_NE(out.find("job tiny-1: finished, step 8/8, loss "), std::string::npos) << out;
  EXPECT_NE(out.find(", ETA 0s"), std::string::npos) << out;
  int running_lines = 0;
  for (std::size_t at = out.find("job tiny-1: running, step "); at != std::string::npos;
       at = out.find("job tiny-1: running, step ", at + 1))
    ++running_lines;
  EXPECT_GE(running_lines, 2) << out;

  // A terminal: one line redrawn in place, with the bar, and a line feed at the end.
  auto [trc, screen] = run_on_terminal(
      {glam_bin, "submit", "--coordinator", c.endpoint(), c.dir + "/job.toml", "--wait", "--timeout", "120"}, c.env,
      150s);
  ASSERT_EQ(trc, 0) << screen;
  EXPECT_GE(std::count(screen.begin(), screen.end(), '\r'), 3) << screen;
  EXPECT_NE(screen.find("\x1b[2K["), std::string::npos) << screen;
  // The terminal is 100 columns wide; the bar leaves the last one free.
  EXPECT_NE(screen.find("[" + std::string(cli::progress_bar_columns(99), '#') + "]  8/8  loss "), std::string::npos)
      << screen;
  EXPECT_NE(screen.find("tok/s  ETA 0s  finished"), std::string::npos) << screen;
  EXPECT_EQ(screen.find("job tiny-2: running, step"), std::string::npos) << screen;  // no plain lines
}

}  // namespace
}  // namespace glam::test
