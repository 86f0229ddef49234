#pragma once
// Which CAF nodes have proved the cluster secret (the node gate: the second wall behind the
// relay, docs/runtime.md "Security"). Every handler but the handshake consults it: a message
// from a node that has not authenticated is dropped and counted. Its tables are bounded,
// and full tables evict their oldest entries instead of growing or being cleared wholesale:
// - nodes mid-handshake (a nonce and the hello it answers): at most max_pending, the
//   oldest forgotten first;
// - client nodes admitted: at most max_clients, the least recently used forgotten first
//   (a forgotten client authenticates again);
// - workers, peers and the coordinator are granted for as long as they are members and
//   revoked when they leave or die.
// Plain class, testable without actors.
#include <cstdint>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "actors/messages.hpp"

namespace glam {

class auth_gate {
 public:
  static constexpr std::size_t max_pending = 256;
  static constexpr std::size_t max_clients = 256;

  explicit auth_gate(std::string secret, std::string self_node = {});

  // A fresh nonce for node, remembering the hello it answers (replacing the node's
  // earlier one).
  std::string issue_nonce(const std::string& node, const hello_msg& hello);
  // The node's hello when proof answers the nonce issued to it; the nonce is used up either
  // way. A client node is admitted (least recently used first out); anything else is for
  // the caller to grant.
  std::optional<hello_msg> verify(const std::string& node, const std::string& nonce, const std::string& proof);
  // Our proof on a nonce a peer sent us (mutual authentication).
  std::string answer(const std::string& peer_nonce) const;
  // Checks a peer's answer to a nonce we sent it.
  bool check_server_proof(const std::string& our_nonce, const std::string& proof) const;

  // Our own node, granted nodes and admitted clients pass (a client counts as used).
  bool admit(const std::string& node);
  // admit() plus counting the drop.
  bool admit_or_count(const std::string& node);
  void grant(const std::string& node) { granted_.insert(node); }
  void revoke(const std::string& node);
  std::int64_t dropped() const { return dropped_; }
  std::size_t pending() const { return pending_order_.size(); }
  std::size_t clients() const { return client_order_.size(); }

 private:
  struct pending_entry {
    std::string nonce;
    hello_msg hello;
    std::list<std::string>::iterator order;
  };
  std::string secret_;
  std::string self_;
  std::set<std::string> granted_;
  std::map<std::string, pending_entry> pending_;
  std::list<std::string> pending_order_;  // oldest first
  std::map<std::string, std::list<std::string>::iterator> clients_;
  std::list<std::string> client_order_;  // least recently used first
  std::int64_t dropped_ = 0;
};

}  // namespace glam
