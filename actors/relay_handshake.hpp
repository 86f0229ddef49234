#pragma once
// The relay's connection handshake (docs/runtime.md, "Security"): before a single byte of a
// TCP connection reaches CAF, both ends prove the cluster secret to each other by
// challenge and response over fresh nonces, and agree whether the connection is encrypted.
// Plain class, no sockets: the relay feeds it the bytes it reads and writes what it returns.
//
//   client -> server  hello   = magic(8) | flags(1) | client nonce(32)
//   server -> client  answer  = magic(8) | flags(1) | server nonce(32) | server proof(32)
//   client -> server  proof   = client proof(32)      (sent even when the server's proof
//                                                      failed, so both sides report it)
//   server -> client  verdict = 'Y'                   (or the server closes)
//
// proof = HMAC-SHA256(secret, label | role | both flags | client nonce | server nonce): the
// secret never crosses the wire, a proof is bound to this connection's nonces and to the
// flags (a man in the middle cannot turn encryption off), and a server proof is never a
// client proof. Encryption is on when either side asks for it; its key is derived from the
// secret and both nonces, so every connection has its own.
#include <cstddef>
#include <string>
#include <string_view>

namespace glam {

class relay_handshake {
 public:
  static constexpr std::size_t magic_size = 8;
  static constexpr std::size_t nonce_size = 32;
  static constexpr std::size_t proof_size = 32;
  static constexpr std::size_t hello_size = magic_size + 1 + nonce_size;
  static constexpr std::size_t answer_size = magic_size + 1 + nonce_size + proof_size;
  static constexpr std::size_t verdict_size = 1;

  enum class role { client, server };
  // wants_encryption: this side asks for TLS (it is not on loopback, or it was told to).
  relay_handshake(role r, std::string secret, bool wants_encryption);

  // Client: the hello to send first.
  std::string hello();
  // Server: the answer to a client's hello; empty with why() set when the hello is not one.
  std::string answer(std::string_view client_hello);
  // Client: our proof on the server's answer. Sets server_proved(); why() says what failed.
  // Empty only when the answer is malformed.
  std::string proof(std::string_view server_answer);
  // Server: checks the client's proof; on success the verdict to send.
  std::string check(std::string_view client_proof);

  bool server_proved() const { return server_proved_; }
  bool client_proved() const { return client_proved_; }
  bool encrypted() const { return encrypted_; }
  // The pre-shared key of this connection's TLS session (32 raw bytes), once proved.
  const std::string& encryption_key() const { return key_; }
  const std::string& why() const { return why_; }

 private:
  std::string mac(const char* label) const;
  void agree();

  role role_;
  std::string secret_;
  bool wants_ = false;
  bool peer_wants_ = false;
  std::string client_nonce_, server_nonce_;
  bool server_proved_ = false;
  bool client_proved_ = false;
  bool encrypted_ = false;
  std::string key_;
  std::string why_;
};

}  // namespace glam
