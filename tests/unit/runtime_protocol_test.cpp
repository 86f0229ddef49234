// Protocol pieces without sockets: tensor chunks through CAF's binary serialisation,
// the authentication gate, registration checks and the endpoint parser.
#include <caf/all.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <gtest/gtest.h>

#include "actors/auth_gate.hpp"
#include "actors/relay.hpp"
#include "actors/relay_handshake.hpp"
#include "actors/fingerprint.hpp"
#include "actors/runtime_config.hpp"
#include "actors/security.hpp"
#include "actors/tensor_chunk.hpp"

namespace glam {
namespace {

caf::actor_system_config& test_config() {
  static caf::actor_system_config cfg = [] {
    caf::actor_system_config c;
    register_message_types(c);
    return c;
  }();
  return cfg;
}

tensor ramp(std::vector<index> shape) {
  tensor t(std::move(shape));
  for (index i = 0; i < t.size(); ++i) t[i] = 0.25f * static_cast<float>(i) - 3.0f;
  return t;
}

TEST(RuntimeProtocol, TensorChunksRoundTripThroughCafSerialisationBitwise) {
  caf::actor_system sys{test_config()};
  tensor t = ramp({5, 7});
  t[3] = -0.0f;
  job_tag tag{"job-1", 3};
  auto chunks = split_tensor(t, tag, round_id::validation(12), 9, 8);
  ASSERT_EQ(chunks.size(), 5u);  // 35 floats in chunks of 8
  tensor_assembler as({5, 7});
  // Reverse order: arrival order must not matter.
  for (auto it = chunks.rbegin(); it != chunks.rend(); ++it) {
    std::vector<char> buf;
    caf::binary_serializer sink{sys, buf};
    ASSERT_FALSE(inspect(sink, *it));
    // Raw block: the payload costs its bytes, not a per-float encoding.
    EXPECT_LE(buf.size(), it->data.size() * sizeof(float) + 96);
    tensor_chunk back;
    caf::binary_deserializer source{sys, buf};
    ASSERT_FALSE(inspect(source, back));
    EXPECT_EQ(back.tag.job, "job-1");
    EXPECT_EQ(back.round, round_id::validation(12));
    EXPECT_EQ(back.tag.epoch, 3);
    EXPECT_EQ(back.tensor_id, 9);
    ASSERT_EQ(as.add(std::move(back)), "");
  }
  ASSERT_TRUE(as.complete());
  EXPECT_TRUE(bitwise_equal(as.take(), t));
}

TEST(RuntimeProtocol, EmptyTensorIsOneEmptyChunk) {
  tensor t({0, 4});
  auto chunks = split_tensor(t, {"j", 0}, round_id::training(1), 0);
  ASSERT_EQ(chunks.size(), 1u);
  tensor_assembler as({0, 4});
  ASSERT_EQ(as.add(chunks[0]), "");
  ASSERT_TRUE(as.complete());
  EXPECT_EQ(as.take().shape, (std::vector<index>{0, 4}));
}

TEST(RuntimeProtocol, DeserialiserRefusesAForgedChunkLength) {
  caf::actor_system sys{test_config()};
  tensor_chunk c;
  c.shape = {4};
  c.data = {1, 2, 3, 4};
  std::vector<char> buf;
  caf::binary_serializer sink{sys, buf};
  ASSERT_FALSE(inspect(sink, c));
  // The count sits just before the raw block: forge it to 2^40 floats.
  std::uint64_t forged = std::uint64_t{1} << 40;
  auto pos = buf.size() - 4 * sizeof(float) - sizeof(forged);
  std::memcpy(buf.data() + pos, &forged, sizeof forged);
  tensor_chunk back;
  caf::binary_deserializer source{sys, buf};
  auto err = inspect(source, back);
  EXPECT_TRUE(err);
  EXPECT_TRUE(back.data.size() <= static_cast<std::size_t>(max_chunk_floats));
}

TEST(RuntimeProtocol, AssemblerRefusesInconsistentChunks) {
  auto chunks = split_tensor(ramp({4, 4}), {"j", 0}, round_id::training(1), 0, 4);
  tensor_assembler as({4, 4});
  ASSERT_EQ(as.add(chunks[0]), "");
  EXPECT_NE(as.add(chunks[0]), "");  // overlap
  auto wrong_shape = chunks[1];
  wrong_shape.shape = {2, 8};
  EXPECT_NE(as.add(wrong_shape).find("where the job implies [4, 4]"), std::string::npos);
  auto out_of_range = chunks[1];
  out_of_range.offset = 14;
  EXPECT_NE(as.add(out_of_range), "");
  // A shape the job does not imply is refused before anything is allocated, however big
  // the sender says it is.
  tensor_chunk huge;
  huge.shape = {1 << 20, 1 << 20};
  tensor_assembler as2({4, 4});
  EXPECT_NE(as2.add(huge), "");
  EXPECT_FALSE(as.complete());
  EXPECT_THROW(split_tensor(ramp({2}), {}, {}, 0, 0), std::invalid_argument);
}

hello_msg client_hello(const std::string& name = "client-1") {
  hello_msg h;
  h.role = "client";
  h.name = name;
  h.version = protocol_version;
  h.client_nonce = std::string(64, 'a');
  return h;
}

TEST(RuntimeProtocol, GateAdmitsOnlyNodesThatProvedTheSecret) {
  const std::string secret = "0123456789abcdef-cluster";
  auth_gate gate(secret, "self");
  EXPECT_TRUE(gate.admit("self"));
  EXPECT_FALSE(gate.admit_or_count("stranger"));
  EXPECT_EQ(gate.dropped(), 1);
  auto nonce = gate.issue_nonce("n1", client_hello());
  EXPECT_FALSE(gate.verify("n1", nonce, client_proof("wrong-secret-0123456789", nonce)));
  EXPECT_FALSE(gate.admit("n1"));
  // A nonce is used up by a failed attempt too: no replays, no guessing on one nonce.
  EXPECT_FALSE(gate.verify("n1", nonce, client_proof(secret, nonce)));
  nonce = gate.issue_nonce("n1", client_hello());
  EXPECT_FALSE(gate.verify("n2", nonce, client_proof(secret, nonce)));  // another node's nonce
  auto hello = gate.verify("n1", nonce, client_proof(secret, nonce));
  ASSERT_TRUE(hello);
  EXPECT_EQ(hello->name, "client-1");  // the hello it answered
  EXPECT_TRUE(gate.admit_or_count("n1"));
  // A server proof is not a client proof (no reflection).
  auto n3 = gate.issue_nonce("n3", client_hello());
  EXPECT_FALSE(gate.verify("n3", n3, gate.answer(n3)));
  EXPECT_TRUE(gate.check_server_proof("abc", server_proof(secret, "abc")));
  EXPECT_FALSE(gate.check_server_proof("abc", server_proof("other-secret-012345", "abc")));
  gate.revoke("n1");
  EXPECT_FALSE(gate.admit("n1"));
  EXPECT_EQ(gate.dropped(), 1);
}

TEST(RuntimeProtocol, GateTablesAreBoundedAndEvictTheOldest) {
  const std::string secret = "0123456789abcdef-cluster";
  auth_gate gate(secret, "self");
  // A flood of hellos that never prove anything: the table stays at its bound, and the
  // newest nodes can still finish their handshake (the oldest were forgotten).
  std::string last_nonce;
  for (std::size_t i = 0; i < 10 * auth_gate::max_pending; ++i)
    last_nonce = gate.issue_nonce("flood-" + std::to_string(i), client_hello());
  EXPECT_EQ(gate.pending(), auth_gate::max_pending);
  EXPECT_FALSE(gate.verify("flood-0", "x", "y"));
  const auto newest = "flood-" + std::to_string(10 * auth_gate::max_pending - 1);
  EXPECT_TRUE(gate.verify(newest, last_nonce, client_proof(secret, last_nonce)));
  // Clients admitted: at most max_clients, the least recently used forgotten first.
  auto admit_client = [&](const std::string& node) {
    auto n = gate.issue_nonce(node, client_hello());
    return gate.verify(node, n, client_proof(secret, n)).has_value();
  };
  for (std::size_t i = 0; i < auth_gate::max_clients; ++i) ASSERT_TRUE(admit_client("c" + std::to_string(i)));
  EXPECT_TRUE(gate.admit("c0"));  // used: now the most recent
  ASSERT_TRUE(admit_client("one-more"));
  ASSERT_TRUE(admit_client("and-another"));
  EXPECT_LE(gate.clients(), auth_gate::max_clients);
  EXPECT_TRUE(gate.admit("c0"));
  EXPECT_FALSE(gate.admit("c1"));  // the least recently used went first
  // Granted nodes (workers, peers) are never evicted.
  gate.grant("worker-node");
  for (std::size_t i = 0; i < 2 * auth_gate::max_clients; ++i) admit_client("d" + std::to_string(i));
  EXPECT_TRUE(gate.admit("worker-node"));
}

TEST(RuntimeProtocol, RelayHandshakeProvesTheSecretBothWaysAndAgreesOnEncryption) {
  const std::string secret = "relay-secret-0123456789";
  struct row {
    const char* name;
    std::string client_secret, server_secret;
    bool client_wants, server_wants;
    bool server_proved, client_proved, encrypted;
  };
  const row rows[] = {
      {"same_secret_loopback", secret, secret, false, false, true, true, false},
      {"same_secret_client_asks_tls", secret, secret, true, false, true, true, true},
      {"same_secret_server_asks_tls", secret, secret, false, true, true, true, true},
      {"wrong_client_secret", "another-secret-0123456", secret, false, false, false, false, false},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.name);
    relay_handshake client(relay_handshake::role::client, r.client_secret, r.client_wants);
    relay_handshake server(relay_handshake::role::server, r.server_secret, r.server_wants);
    auto hello = client.hello();
    ASSERT_EQ(hello.size(), relay_handshake::hello_size);
    auto answer = server.answer(hello);
    ASSERT_EQ(answer.size(), relay_handshake::answer_size);
    auto proof = client.proof(answer);
    ASSERT_EQ(proof.size(), relay_handshake::proof_size);
    EXPECT_EQ(client.server_proved(), r.server_proved) << client.why();
    auto verdict = server.check(proof);
    EXPECT_EQ(server.client_proved(), r.client_proved) << server.why();
    EXPECT_EQ(verdict.empty(), !r.client_proved);
    if (r.client_proved) {
      EXPECT_EQ(client.encrypted(), r.encrypted);
      EXPECT_EQ(server.encrypted(), r.encrypted);
      EXPECT_EQ(client.encryption_key(), server.encryption_key()) << "both sides derive the same key";
      EXPECT_EQ(client.encryption_key().size(), 32u);
    }
  }
  // Garbage, a replayed answer, and a tampered flag are refused.
  relay_handshake server(relay_handshake::role::server, secret, false);
  EXPECT_TRUE(server.answer(std::string(relay_handshake::hello_size, 'x')).empty());
  EXPECT_NE(server.why().find("not a glam relay hello"), std::string::npos);
  relay_handshake c1(relay_handshake::role::client, secret, false), s1(relay_handshake::role::server, secret, false);
  auto a1 = s1.answer(c1.hello());
  relay_handshake c2(relay_handshake::role::client, secret, false);
  c2.hello();
  c2.proof(a1);  // an answer made for another connection's nonce
  EXPECT_FALSE(c2.server_proved());
  relay_handshake c3(relay_handshake::role::client, secret, true), s3(relay_handshake::role::server, secret, false);
  auto hello3 = c3.hello();
  hello3[relay_handshake::magic_size] = 0;  // a man in the middle turns encryption off
  auto a3 = s3.answer(hello3);
  EXPECT_TRUE(s3.check(c3.proof(a3)).empty()) << "the flags are part of the proofs";
}

TEST(RuntimeProtocol, FrameCheckerHoldsEachHeaderUntilChecked) {
  auto header = [](std::uint8_t op, std::uint32_t len) {
    std::string h(basp_header_size, '\0');
    h[0] = static_cast<char>(op);
    for (int i = 0; i < 4; ++i) h[4 + i] = static_cast<char>((len >> (24 - 8 * i)) & 0xff);
    return h;
  };
  const std::uint32_t bound = 5u << 20;
  EXPECT_EQ(check_basp_header(reinterpret_cast<const unsigned char*>(header(2, 4 << 20).data()), bound), "");
  EXPECT_NE(check_basp_header(reinterpret_cast<const unsigned char*>(header(7, 0).data()), bound).find("operation"),
            std::string::npos);
  EXPECT_NE(check_basp_header(reinterpret_cast<const unsigned char*>(header(1, 16u << 20).data()), bound)
                .find("exceeds the bound"),
            std::string::npos);
  // A message's id (operation data) of each category: urgent and normal pass, the stream
  // categories (which CAF 0.17 reads as stream messages and crashes on) do not.
  for (std::uint8_t category = 0; category < 4; ++category)
    for (std::uint8_t op : {basp_direct_message, basp_routed_message}) {
      auto h = header(op, 16);
      h[8] = static_cast<char>(category << 4);
      const auto why = check_basp_header(reinterpret_cast<const unsigned char*>(h.data()), bound);
      if (category < 2)
        EXPECT_EQ(why, "") << int(category);
      else
        EXPECT_NE(why.find("stream"), std::string::npos) << int(category);
    }
  // Other operations carry other data there (a heartbeat: nothing of the kind).
  auto hb = header(6, 0);
  hb[8] = static_cast<char>(0x30);
  EXPECT_EQ(check_basp_header(reinterpret_cast<const unsigned char*>(hb.data()), bound), "");
  // Fed byte by byte, a good stream passes whole; a bad header never passes complete.
  const std::string good = header(1, 3) + "abc" + header(6, 0);
  basp_frame_checker ok(bound);
  std::string out;
  for (char ch : good) ASSERT_EQ(ok.feed(std::string_view(&ch, 1), out), "");
  EXPECT_EQ(out, good);
  const std::string bad = header(1, 2) + "xy" + header(2, 0xFFFFFFF0u);
  basp_frame_checker refuse(bound);
  out.clear();
  std::string why;
  for (char ch : bad)
    if (why.empty()) why = refuse.feed(std::string_view(&ch, 1), out);
  EXPECT_NE(why.find("exceeds the bound"), std::string::npos);
  EXPECT_EQ(out, header(1, 2) + "xy") << "not one byte of the refused header went on";
}

TEST(RuntimeProtocol, RegistrationNamesTheMismatchedField) {
  auto own = local_fingerprint();
  hello_msg h;
  h.role = "worker";
  h.name = "w1";
  h.version = protocol_version;
  h.fingerprint = own;
  h.client_nonce = random_hex(32);
  h.listen_host = "127.0.0.1";
  h.listen_port = 7000;
  EXPECT_EQ(compatibility_problem(h, own), "");
  auto v = h;
  v.version = protocol_version + 1;
  EXPECT_NE(compatibility_problem(v, own).find("protocol version"), std::string::npos);
  auto b = h;
  b.fingerprint.build_id = "other";
  EXPECT_NE(compatibility_problem(b, own).find("build id 'other'"), std::string::npos);
  auto l = h;
  l.fingerprint.blis = "haswell 1 thread";
  EXPECT_NE(compatibility_problem(l, own).find("BLIS"), std::string::npos);
  auto c = h;
  c.fingerprint.cpu_family = "GenuineIntel family 6 model 85";
  EXPECT_NE(compatibility_problem(c, own).find("CPU family"), std::string::npos);
  auto r = h;
  r.role = "root";
  EXPECT_NE(compatibility_problem(r, own).find("role"), std::string::npos);
  EXPECT_NE(cpu_family(), "");
  // Every field within its bound, before anything is stored.
  struct bad_field {
    const char* name;
    void (*mutate)(hello_msg&);
    const char* says;
  };
  const bad_field rows[] = {
      {"long_name", [](hello_msg& x) { x.name = std::string(300, 'w'); }, "at most 64 characters"},
      {"dotdot_name", [](hello_msg& x) { x.name = ".."; }, "name directories"},
      {"slash_name", [](hello_msg& x) { x.name = "a/b"; }, "only letters"},
      {"short_nonce", [](hello_msg& x) { x.client_nonce = "abc"; }, "64 hex digits"},
      {"long_host", [](hello_msg& x) { x.listen_host = std::string(1000, 'h'); }, "listen host"},
      {"long_build", [](hello_msg& x) { x.fingerprint.build_id = std::string(5000, 'b'); }, "256 characters"},
  };
  for (const auto& row : rows) {
    auto x = h;
    row.mutate(x);
    EXPECT_NE(hello_problem(x).find(row.says), std::string::npos) << row.name << ": " << hello_problem(x);
  }
}

TEST(RuntimeProtocol, EndpointParser) {
  EXPECT_EQ(parse_endpoint("127.0.0.1:7070", "--listen"), (std::pair<std::string, int>{"127.0.0.1", 7070}));
  EXPECT_THROW(parse_endpoint("localhost", "--listen"), std::invalid_argument);
  EXPECT_THROW(parse_endpoint("h:99999", "--listen"), std::invalid_argument);
  EXPECT_THROW(parse_endpoint("h:12x", "--listen"), std::invalid_argument);
  try {
    parse_endpoint(":1", "--coordinator");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("--coordinator"), std::string::npos);
  }
}

TEST(RuntimeProtocol, HmacIsStandardSha256) {
  // RFC 4231 test case 2.
  EXPECT_EQ(hmac_hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(random_hex(16).size(), 32u);
  EXPECT_NE(random_hex(16), random_hex(16));
}

}  // namespace
}  // namespace glam
