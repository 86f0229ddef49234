// Bad bytes at the daemons' ports: garbage, a forged oversized BASP header, a client that
// disconnects mid-message, a connection flood, and a node without the secret sending
// actor messages. Each daemon must stay up, answer, and keep its memory bounded.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "actors/coordinator_protocol.hpp"
#include "actors/runtime_config.hpp"
#include "actors/worker_protocol.hpp"
#include "cluster_harness.hpp"

namespace glam::test {
namespace {

using namespace std::chrono_literals;


int connect_raw(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

// A BASP header as CAF 0.17 writes it (big-endian).
std::string basp_header(std::uint8_t op, std::uint32_t payload_len) {
  std::string h(32, '\0');
  h[0] = static_cast<char>(op);
  for (int i = 0; i < 4; ++i) h[4 + i] = static_cast<char>((payload_len >> (24 - 8 * i)) & 0xff);
  return h;
}

// True when the peer closed the connection (read returns 0 or an error) within 2 s,
// after draining what it sent first (CAF's server handshake).
bool closed_by_peer(int fd) {
  char buf[4096];
  for (int i = 0; i < 100; ++i) {
    auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0) return true;
    if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK ? true : false;
  }
  return false;
}

struct small_cluster {
  std::string dir = fresh_dir("hardening");
  std::vector<std::string> env{"HOME=" + dir};
  process coordinator{{glam_bin, "coordinator", "--listen", "127.0.0.1:0", "--state", dir + "/state"}, dir,
                      "coordinator", env};
  int port = coordinator.wait_port();
  process worker{{glam_bin, "worker", "--coordinator", "127.0.0.1:" + std::to_string(port), "--name", "w0",
                  "--listen", "127.0.0.1:0", "--heartbeat-ms", "200"},
                 dir, "worker", env};
  int worker_port = worker.wait_port();

  nlohmann::json status() {
    auto [rc, out] = run({glam_bin, "status", "--coordinator", "127.0.0.1:" + std::to_string(port), "--json"}, dir,
                         30s, env);
    auto i = out.find('{');
    return rc == 0 && i != std::string::npos ? nlohmann::json::parse(out.substr(i)) : nlohmann::json{};
  }
  ~small_cluster() { fs::remove_all(dir); }
};

TEST(ClusterHardening, GarbageForgedHeadersAndTornMessagesLeaveDaemonsUpAndSmall) {
  small_cluster c;
  ASSERT_GT(c.port, 0) << c.coordinator.err();
  ASSERT_GT(c.worker_port, 0) << c.worker.err();
  const long coord_before = c.coordinator.rss_kb();
  const long worker_before = c.worker.rss_kb();
  for (int port : {c.port, c.worker_port}) {
    // Garbage: an unknown operation is refused at the front door.
    int fd = connect_raw(port);
    ASSERT_GE(fd, 0);
    std::string junk(4096, '\xff');
    ::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
    EXPECT_TRUE(closed_by_peer(fd));
    ::close(fd);
    // A forged header announcing a 4 GiB payload: closed before CAF allocates.
    for (std::uint8_t op : {0x01, 0x02, 0x06}) {
      fd = connect_raw(port);
      auto h = basp_header(op, 0xFFFFFFF0u);
      ::send(fd, h.data(), h.size(), MSG_NOSIGNAL);
      std::string tail(1000, 'x');
      ::send(fd, tail.data(), tail.size(), MSG_NOSIGNAL);
      EXPECT_TRUE(closed_by_peer(fd)) << "port " << port << " op " << int(op);
      ::close(fd);
    }
    // A client that disconnects mid-message (a plausible header, a tenth of its payload).
    fd = connect_raw(port);
    auto h = basp_header(0x01, 1u << 20);
    ::send(fd, h.data(), h.size(), MSG_NOSIGNAL);
    std::string part(100 * 1024, 'y');
    ::send(fd, part.data(), part.size(), MSG_NOSIGNAL);
    ::close(fd);
    // Garbage after a valid-looking handshake header with a small payload.
    fd = connect_raw(port);
    auto small = basp_header(0x01, 64) + std::string(64, '\x07') + std::string(200, '\xee');
    ::send(fd, small.data(), small.size(), MSG_NOSIGNAL);
    closed_by_peer(fd);
    ::close(fd);
  }
  // A connection flood is bounded too.
  std::vector<int> flood;
  for (int i = 0; i < 100; ++i) flood.push_back(connect_raw(c.port));
  std::this_thread::sleep_for(300ms);
  for (int fd : flood)
    if (fd >= 0) ::close(fd);
  std::this_thread::sleep_for(500ms);
  ASSERT_FALSE(c.coordinator.exited()) << c.coordinator.err();
  ASSERT_FALSE(c.worker.exited()) << c.worker.err();
  const long coord_after = c.coordinator.rss_kb();
  const long worker_after = c.worker.rss_kb();
  std::printf("coordinator RSS %ld -> %ld kB, worker RSS %ld -> %ld kB\n", coord_before, coord_after, worker_before,
              worker_after);
  EXPECT_LT(coord_after, coord_before + 64 * 1024);
  EXPECT_LT(worker_after, worker_before + 64 * 1024);
  // Both still serve: the worker is still registered and heartbeating.
  auto s = c.status();
  ASSERT_FALSE(s.empty());
  ASSERT_EQ(s["workers"].size(), 1u) << s.dump();
  EXPECT_LT(s["workers"][0]["last_heard_ms"].get<int>(), 2000);
  EXPECT_GE(s["coordinator"]["refused_frames"].get<int>(), 4) << s.dump();
  EXPECT_GT(s["coordinator"]["refused_connections"].get<int>(), 0) << s.dump();
  EXPECT_NE(c.coordinator.err().find("exceeds the bound"), std::string::npos);
}

TEST(ClusterHardening, NodeWithoutTheSecretAchievesNothing) {
  small_cluster c;
  ASSERT_GT(c.worker_port, 0) << c.worker.err();
  caf::actor_system_config cfg;
  cfg.load<caf::io::middleman>();
  register_message_types(cfg);
  cfg.set("scheduler.max-threads", std::size_t{1});
  caf::actor_system sys{cfg};
  {
    auto worker = sys.middleman().remote_actor("127.0.0.1", static_cast<std::uint16_t>(c.worker_port));
    ASSERT_TRUE(worker) << sys.render(worker.error());
    auto coord = sys.middleman().remote_actor("127.0.0.1", static_cast<std::uint16_t>(c.port));
    ASSERT_TRUE(coord) << sys.render(coord.error());
    caf::scoped_actor self{sys};
    bool got_stats = false;
    self->request(*worker, 3s, ping_atom::value)
        .receive([&](const worker_stats&) { got_stats = true; }, [&](const caf::error&) {});
    EXPECT_FALSE(got_stats);
    // Units, releases and tensor chunks from a stranger are dropped.
    result_msg r{true, ""};
    self->request(*worker, 3s, release_atom::value, step_tag{"x", 1, 99})
        .receive([&](const result_msg& m) { r = m; }, [&](const caf::error&) { r = {false, "error"}; });
    EXPECT_FALSE(r.ok);
    self->send(*worker, tensor_chunk{});
    self->request(*coord, 3s, submit_atom::value, std::string("[model]\n"), std::string("x.toml"))
        .receive([&](const result_msg& m) { r = m; }, [&](const caf::error&) { r = {false, "error"}; });
    EXPECT_FALSE(r.ok);
    EXPECT_NE(r.message.find("not authenticated"), std::string::npos) << r.message;
    std::string st;
    self->request(*coord, 3s, status_atom::value).receive([&](const std::string& s) { st = s; }, [&](const caf::error&) {});
    EXPECT_EQ(st, "{}");
    // A bad proof does not authenticate.
    hello_msg h;
    h.role = "client";
    h.version = protocol_version;
    h.client_nonce = "n";
    challenge_msg ch;
    self->request(*coord, 3s, hello_atom::value, h).receive([&](const challenge_msg& m) { ch = m; }, [&](const caf::error&) {});
    ASSERT_TRUE(ch.ok);
    self->request(*coord, 3s, auth_atom::value, proof_msg{ch.nonce, std::string(64, '0')})
        .receive([&](const result_msg& m) { r = m; }, [&](const caf::error&) { r = {false, "error"}; });
    EXPECT_FALSE(r.ok);
    self->request(*coord, 3s, status_atom::value).receive([&](const std::string& s) { st = s; }, [&](const caf::error&) {});
    EXPECT_EQ(st, "{}");
  }
  // The drops are counted, and reported with the worker's heartbeat.
  nlohmann::json s;
  for (int i = 0; i < 30; ++i) {
    s = c.status();
    if (!s.empty() && s["workers"].size() == 1 && s["workers"][0]["dropped_unauthenticated"].get<int>() >= 3) break;
    std::this_thread::sleep_for(200ms);
  }
  ASSERT_EQ(s["workers"].size(), 1u) << s.dump();
  EXPECT_GE(s["workers"][0]["dropped_unauthenticated"].get<int>(), 3) << s.dump();
  EXPECT_GE(s["coordinator"]["dropped_unauthenticated"].get<int>(), 2) << s.dump();
  ASSERT_FALSE(c.worker.exited());
}

}  // namespace
}  // namespace glam::test
