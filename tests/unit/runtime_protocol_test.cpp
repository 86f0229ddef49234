// Protocol pieces without sockets: tensor chunks through CAF's binary serialisation,
// the authentication gate, registration checks and the endpoint parser.
#include <caf/all.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <gtest/gtest.h>

#include "actors/auth_gate.hpp"
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
  step_tag tag{"job-1", 12, 3};
  auto chunks = split_tensor(t, tag, 9, 8);
  ASSERT_EQ(chunks.size(), 5u);  // 35 floats in chunks of 8
  tensor_assembler as;
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
    EXPECT_EQ(back.tag.step, 12);
    EXPECT_EQ(back.tag.epoch, 3);
    EXPECT_EQ(back.tensor_id, 9);
    ASSERT_EQ(as.add(std::move(back)), "");
  }
  ASSERT_TRUE(as.complete());
  EXPECT_TRUE(bitwise_equal(as.take(), t));
}

TEST(RuntimeProtocol, EmptyTensorIsOneEmptyChunk) {
  tensor t({0, 4});
  auto chunks = split_tensor(t, {"j", 1, 0}, 0);
  ASSERT_EQ(chunks.size(), 1u);
  tensor_assembler as;
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
  auto chunks = split_tensor(ramp({4, 4}), {"j", 1, 0}, 0, 4);
  tensor_assembler as;
  ASSERT_EQ(as.add(chunks[0]), "");
  EXPECT_NE(as.add(chunks[0]), "");  // overlap
  auto wrong_shape = chunks[1];
  wrong_shape.shape = {2, 8};
  EXPECT_NE(as.add(wrong_shape), "");
  auto out_of_range = chunks[1];
  out_of_range.offset = 14;
  EXPECT_NE(as.add(out_of_range), "");
  tensor_chunk huge;
  huge.shape = {1 << 20, 1 << 20};
  tensor_assembler as2;
  EXPECT_NE(as2.add(huge), "");  // would need 4 TiB: refused before allocating
  EXPECT_FALSE(as.complete());
  EXPECT_THROW(split_tensor(ramp({2}), {}, 0, 0), std::invalid_argument);
}

TEST(RuntimeProtocol, GateAdmitsOnlyNodesThatProvedTheSecret) {
  const std::string secret = "0123456789abcdef-cluster";
  auth_gate gate(secret, "self");
  EXPECT_TRUE(gate.admitted("self"));
  EXPECT_FALSE(gate.admit_or_count("stranger"));
  EXPECT_EQ(gate.dropped(), 1);
  auto nonce = gate.issue_nonce("n1");
  EXPECT_FALSE(gate.verify("n1", nonce, client_proof("wrong-secret-0123456789", nonce)));
  EXPECT_FALSE(gate.admitted("n1"));
  // A nonce is used up by a failed attempt too: no replays, no guessing on one nonce.
  EXPECT_FALSE(gate.verify("n1", nonce, client_proof(secret, nonce)));
  nonce = gate.issue_nonce("n1");
  EXPECT_FALSE(gate.verify("n2", nonce, client_proof(secret, nonce)));  // another node's nonce
  EXPECT_TRUE(gate.verify("n1", nonce, client_proof(secret, nonce)));
  EXPECT_TRUE(gate.admit_or_count("n1"));
  // A server proof is not a client proof (no reflection).
  auto n3 = gate.issue_nonce("n3");
  EXPECT_FALSE(gate.verify("n3", n3, gate.answer(n3)));
  EXPECT_TRUE(gate.check_server_proof("abc", server_proof(secret, "abc")));
  EXPECT_FALSE(gate.check_server_proof("abc", server_proof("other-secret-012345", "abc")));
  gate.revoke("n1");
  EXPECT_FALSE(gate.admitted("n1"));
  EXPECT_EQ(gate.dropped(), 1);
}

TEST(RuntimeProtocol, RegistrationNamesTheMismatchedField) {
  auto own = local_fingerprint();
  hello_msg h;
  h.role = "worker";
  h.name = "w1";
  h.version = protocol_version;
  h.fingerprint = own;
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
