#pragma once
// The handshake every published actor (coordinator and worker) speaks before anything
// else, and the only messages it answers from a node that has not authenticated:
//   (hello_atom, hello_msg)  -> challenge_msg   refused with the reason, or a nonce plus
//                                               the server's proof over the client's nonce
//   (auth_atom, proof_msg)   -> result_msg      the node is admitted when the proof holds
#include <caf/atom.hpp>

#include "actors/messages.hpp"

namespace glam {

using hello_atom = caf::atom_constant<caf::atom("hello")>;
using auth_atom = caf::atom_constant<caf::atom("auth")>;

}  // namespace glam
