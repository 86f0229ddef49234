#pragma once
// Errors between actors are values: a caf::error of the category "glam" whose code says what
// went wrong and whose context is one sentence naming the cause and the fix. Registered with
// every actor system (runtime_config), so that an error crosses nodes and renders as its
// sentence. A request's error handler receives it; no string flags (ok/message pairs).
#include <cstdint>
#include <exception>
#include <string>

#include <caf/atom.hpp>
#include <caf/error.hpp>

namespace caf {
class actor_system_config;
}

namespace glam {

enum class glam_errc : std::uint8_t {
  not_authenticated = 1,  // the sender's node has not proved the cluster secret
  not_allowed,            // the sender may not send this (local only, another coordinator, ...)
  refused,                // registration refused: version, fingerprint, name
  wrong_secret,           // the proof of the secret failed
  stale_epoch,            // the message belongs to an older epoch
  unknown_job,
  job_conflict,           // another job is active, or the job is already over
  invalid_job,            // the job file does not validate
  cannot_host,            // a worker cannot host its units: the plan does not fit it (config, data, paths)
  unreachable,            // a peer, or a snapshot to restore from, could not be reached (may pass)
  wrong_phase,            // the message does not fit the receiver's phase
  internal,               // a bug: an always-on check failed
  bad_request,            // an inference call that does not fit its unit (a sequence, a part, the pass's phase)
};

const char* to_string(glam_errc code);

inline const caf::atom_value glam_error_category = caf::atom("glam");

caf::error make_error(glam_errc code, std::string sentence);

// The sentence of a glam error; for any other error, CAF's rendering of it.
std::string error_text(const caf::error& e);

// What an exception that escaped a handler of `actor` becomes: its exit reason, logged
// (an always-on check that failed is a bug, and the actor ends with the reason).
caf::error exit_reason_of(const std::exception_ptr& e, const std::string& actor);

// Lets every node render glam errors as their sentence.
void register_error_category(caf::actor_system_config& cfg);

}  // namespace glam
