#include "actors/errors.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/message.hpp>
#include <spdlog/spdlog.h>

namespace glam {

const char* to_string(glam_errc code) {
  switch (code) {
    case glam_errc::not_authenticated: return "not_authenticated";
    case glam_errc::not_allowed: return "not_allowed";
    case glam_errc::refused: return "refused";
    case glam_errc::wrong_secret: return "wrong_secret";
    case glam_errc::stale_epoch: return "stale_epoch";
    case glam_errc::unknown_job: return "unknown_job";
    case glam_errc::job_conflict: return "job_conflict";
    case glam_errc::invalid_job: return "invalid_job";
    case glam_errc::cannot_host: return "cannot_host";
    case glam_errc::unreachable: return "unreachable";
    case glam_errc::wrong_phase: return "wrong_phase";
    case glam_errc::internal: return "internal";
    case glam_errc::bad_request: return "bad_request";
  }
  return "unknown";
}

caf::error make_error(glam_errc code, std::string sentence) {
  return caf::error(static_cast<std::uint8_t>(code), glam_error_category, caf::make_message(std::move(sentence)));
}

namespace {

std::string render(std::uint8_t code, caf::atom_value, const caf::message& context) {
  if (context.match_elements<std::string>()) return context.get_as<std::string>(0);
  return to_string(static_cast<glam_errc>(code));
}

}  // namespace

std::string error_text(const caf::error& e) {
  if (e.category() == glam_error_category) return render(e.code(), e.category(), e.context());
  return caf::to_string(e);
}

caf::error exit_reason_of(const std::exception_ptr& e, const std::string& actor) {
  std::string what = "an unknown exception";
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    what = x.what();
  } catch (...) {
  }
  spdlog::error("{}: ended by an exception: {}", actor, what);
  return make_error(glam_errc::internal, actor + " ended by an exception: " + what);
}

void register_error_category(caf::actor_system_config& cfg) { cfg.add_error_category(glam_error_category, render); }

}  // namespace glam
