#pragma once
// The handshake the coordinator and every worker answer (part of their protocols), and the
// only messages they answer from a node that has not proved the cluster secret:
//   (hello_atom, hello_msg) -> challenge_msg   a nonce, plus the server's proof over the
//                                              client's nonce; or an error naming the field
//                                              that does not match (version, fingerprint)
//   (auth_atom, proof_msg)  -> std::string     the node is admitted when the proof holds;
//                                              else wrong_secret
// It runs inside connections the relay (relay.hpp) has already authenticated: it binds the
// proof of the secret to the CAF node, which the node gate checks for every message after.
#include <caf/atom.hpp>

#include "actors/messages.hpp"

namespace glam {

using hello_atom = caf::atom_constant<caf::atom("hello")>;
using auth_atom = caf::atom_constant<caf::atom("auth")>;

}  // namespace glam
