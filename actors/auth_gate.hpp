#pragma once
// Which nodes have proved the cluster secret. Every published actor consults it for every
// message: a message from a node that has not authenticated is dropped and counted (CAF
// accepts messages from any node that completes its handshake, so a check only at
// registration would guard nothing else). Plain class, testable without actors.
#include <cstdint>
#include <map>
#include <set>
#include <string>

namespace glam {

class auth_gate {
 public:
  explicit auth_gate(std::string secret, std::string self_node = {});

  // A fresh nonce for node (replacing one issued before).
  std::string issue_nonce(const std::string& node);
  // True when proof answers the nonce issued to node; the nonce is used up either way.
  bool verify(const std::string& node, const std::string& nonce, const std::string& proof);
  // Our proof on a nonce a peer sent us (mutual authentication).
  std::string answer(const std::string& peer_nonce) const;
  // Checks a peer's answer to a nonce we sent it.
  bool check_server_proof(const std::string& our_nonce, const std::string& proof) const;

  // Local senders (our own node) are always admitted.
  bool admitted(const std::string& node) const;
  // admitted() plus counting the drop.
  bool admit_or_count(const std::string& node);
  void grant(const std::string& node) { nodes_.insert(node); }
  void revoke(const std::string& node) { nodes_.erase(node); }
  std::int64_t dropped() const { return dropped_; }
  std::size_t authenticated_nodes() const { return nodes_.size(); }

 private:
  std::string secret_;
  std::string self_;
  std::set<std::string> nodes_;
  std::map<std::string, std::string> nonces_;
  std::int64_t dropped_ = 0;
};

}  // namespace glam
