#include "actors/auth_gate.hpp"

#include "actors/security.hpp"

namespace glam {

auth_gate::auth_gate(std::string secret, std::string self_node)
    : secret_(std::move(secret)), self_(std::move(self_node)) {}

std::string auth_gate::issue_nonce(const std::string& node) {
  // Bounded: a node holds one outstanding nonce, and nonces of nodes that never answer
  // are capped so that a flood of hellos cannot grow the table without limit.
  if (nonces_.size() > 4096) nonces_.clear();
  auto n = random_hex(32);
  nonces_[node] = n;
  return n;
}

bool auth_gate::verify(const std::string& node, const std::string& nonce, const std::string& proof) {
  auto i = nonces_.find(node);
  if (i == nonces_.end()) return false;
  bool ok = constant_time_equal(i->second, nonce) &&
            constant_time_equal(client_proof(secret_, nonce), proof);
  nonces_.erase(i);
  if (ok) nodes_.insert(node);
  return ok;
}

std::string auth_gate::answer(const std::string& peer_nonce) const {
  return server_proof(secret_, peer_nonce);
}

bool auth_gate::check_server_proof(const std::string& our_nonce, const std::string& proof) const {
  return constant_time_equal(server_proof(secret_, our_nonce), proof);
}

bool auth_gate::admitted(const std::string& node) const {
  return node == self_ || nodes_.count(node) > 0;
}

bool auth_gate::admit_or_count(const std::string& node) {
  if (admitted(node)) return true;
  ++dropped_;
  return false;
}

}  // namespace glam
