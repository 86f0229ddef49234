#pragma once
// The build fingerprint a worker registers with (docs/architecture.md, "Determinism": bitwise results
// hold across workers with the same build id, BLIS configuration and CPU family).
#include <string>

#include "actors/messages.hpp"

namespace glam {

// This process's fingerprint. GLAM_BUILD_ID (a compile definition) names the build; the
// environment variable GLAM_BUILD_ID_OVERRIDE replaces it, for testing a mismatch.
build_fingerprint local_fingerprint();

// "vendor family F model M" from /proc/cpuinfo ("unknown" when absent).
std::string cpu_family();

// Why a hello is not one to answer (empty when it is): the protocol version, the role, and
// every field within its bound (a name of [A-Za-z0-9._-], a nonce of 64 hex digits, ...).
std::string hello_problem(const hello_msg& h);

// Why a joining node cannot take part in this cluster (empty when it can): hello_problem,
// then for workers the build fingerprint and the listen address; names the field, both
// values and the fix.
std::string compatibility_problem(const hello_msg& h, const build_fingerprint& own);

}  // namespace glam
