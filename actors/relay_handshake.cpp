#include "actors/relay_handshake.hpp"

#include "actors/security.hpp"

namespace glam {

namespace {

constexpr std::string_view magic{"GLAMRLY1", relay_handshake::magic_size};
constexpr char wants_flag = 0x01;

}  // namespace

relay_handshake::relay_handshake(role r, std::string secret, bool wants_encryption)
    : role_(r), secret_(std::move(secret)), wants_(wants_encryption) {}

std::string relay_handshake::mac(const char* label) const {
  const bool client_wants = role_ == role::client ? wants_ : peer_wants_;
  const bool server_wants = role_ == role::server ? wants_ : peer_wants_;
  std::string m = "glam relay v1|";
  m += label;
  m += '|';
  m += client_wants ? '1' : '0';
  m += server_wants ? '1' : '0';
  m += '|';
  m += client_nonce_;
  m += server_nonce_;
  return hmac_raw(secret_, m);
}

void relay_handshake::agree() {
  encrypted_ = wants_ || peer_wants_;
  key_ = mac("tls key");
}

std::string relay_handshake::hello() {
  client_nonce_ = random_bytes(static_cast<int>(nonce_size));
  std::string h(magic);
  h += wants_ ? wants_flag : '\0';
  h += client_nonce_;
  return h;
}

std::string relay_handshake::answer(std::string_view client_hello) {
  if (client_hello.size() != hello_size || client_hello.substr(0, magic_size) != magic ||
      (client_hello[magic_size] & ~wants_flag) != 0) {
    why_ = "not a glam relay hello (an old glam, or not glam at all)";
    return {};
  }
  peer_wants_ = client_hello[magic_size] == wants_flag;
  client_nonce_ = std::string(client_hello.substr(magic_size + 1));
  server_nonce_ = random_bytes(static_cast<int>(nonce_size));
  std::string a(magic);
  a += wants_ ? wants_flag : '\0';
  a += server_nonce_;
  a += mac("server proof");
  return a;
}

std::string relay_handshake::proof(std::string_view server_answer) {
  if (server_answer.size() != answer_size || server_answer.substr(0, magic_size) != magic ||
      (server_answer[magic_size] & ~wants_flag) != 0) {
    why_ = "the server does not speak the glam relay handshake (is it a glam daemon of this release?)";
    return {};
  }
  peer_wants_ = server_answer[magic_size] == wants_flag;
  server_nonce_ = std::string(server_answer.substr(magic_size + 1, nonce_size));
  const std::string claimed(server_answer.substr(magic_size + 1 + nonce_size));
  server_proved_ = constant_time_equal(claimed, mac("server proof"));
  if (!server_proved_) why_ = "the server could not prove the cluster secret: wrong --secret-file on one side";
  agree();
  return mac("client proof");
}

std::string relay_handshake::check(std::string_view client_proof) {
  client_proved_ = client_proof.size() == proof_size &&
                   constant_time_equal(std::string(client_proof), mac("client proof"));
  if (!client_proved_) {
    why_ = "the peer failed to prove the cluster secret";
    return {};
  }
  agree();
  return "Y";
}

}  // namespace glam
