#pragma once
// The build fingerprint a worker registers with (design.md section 3: bitwise results
// hold across workers with the same build id, BLIS configuration and CPU family).
#include <string>

#include "actors/messages.hpp"

namespace glam {

// This process's fingerprint. GLAM_BUILD_ID (a compile definition) names the build; the
// environment variable GLAM_BUILD_ID_OVERRIDE replaces it, for testing a mismatch.
build_fingerprint local_fingerprint();

// "vendor family F model M" from /proc/cpuinfo ("unknown" when absent).
std::string cpu_family();

// Why a joining node cannot take part (empty when it can): names the field, both values
// and the fix.
std::string compatibility_problem(const hello_msg& h, const build_fingerprint& own);

}  // namespace glam
