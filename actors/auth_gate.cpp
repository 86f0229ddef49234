#include "actors/auth_gate.hpp"

#include "actors/security.hpp"

namespace glam {

auth_gate::auth_gate(std::string secret, std::string self_node)
    : secret_(std::move(secret)), self_(std::move(self_node)) {}

std::string auth_gate::issue_nonce(const std::string& node, const hello_msg& hello) {
  if (auto i = pending_.find(node); i != pending_.end()) {
    pending_order_.erase(i->second.order);
    pending_.erase(i);
  }
  if (pending_.size() >= max_pending) {
    pending_.erase(pending_order_.front());
    pending_order_.pop_front();
  }
  auto nonce = random_hex(32);
  pending_order_.push_back(node);
  pending_[node] = {nonce, hello, std::prev(pending_order_.end())};
  return nonce;
}

std::optional<hello_msg> auth_gate::verify(const std::string& node, const std::string& nonce,
                                           const std::string& proof) {
  auto i = pending_.find(node);
  if (i == pending_.end()) return std::nullopt;
  const bool ok =
      constant_time_equal(i->second.nonce, nonce) && constant_time_equal(client_proof(secret_, nonce), proof);
  auto hello = std::move(i->second.hello);
  pending_order_.erase(i->second.order);
  pending_.erase(i);
  if (!ok) return std::nullopt;
  if (hello.role == "client" && !granted_.count(node)) {
    if (auto c = clients_.find(node); c != clients_.end()) {
      client_order_.erase(c->second);
      clients_.erase(c);
    }
    if (clients_.size() >= max_clients) {
      clients_.erase(client_order_.front());
      client_order_.pop_front();
    }
    client_order_.push_back(node);
    clients_[node] = std::prev(client_order_.end());
  }
  return hello;
}

std::string auth_gate::answer(const std::string& peer_nonce) const { return server_proof(secret_, peer_nonce); }

bool auth_gate::check_server_proof(const std::string& our_nonce, const std::string& proof) const {
  return constant_time_equal(server_proof(secret_, our_nonce), proof);
}

bool auth_gate::admit(const std::string& node) {
  if (node == self_ || granted_.count(node)) return true;
  auto c = clients_.find(node);
  if (c == clients_.end()) return false;
  client_order_.splice(client_order_.end(), client_order_, c->second);
  return true;
}

bool auth_gate::admit_or_count(const std::string& node) {
  if (admit(node)) return true;
  ++dropped_;
  return false;
}

void auth_gate::revoke(const std::string& node) {
  granted_.erase(node);
  if (auto c = clients_.find(node); c != clients_.end()) {
    client_order_.erase(c->second);
    clients_.erase(c);
  }
}

}  // namespace glam
