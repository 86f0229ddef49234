#include "worker/inference_actor.hpp"

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/errors.hpp"
#include "kernels/parallel.hpp"
#include "model/checkpoint.hpp"

namespace glam {

namespace {

using self_ptr = inference_unit_actor::stateful_pointer<inference_actor_state>;

bool from_worker(self_ptr self) {
  const auto& sender = self->current_sender();
  if (sender && sender->address() == self->state.worker) return true;
  ++self->state.dropped;
  return false;
}

}  // namespace

inference_unit_actor::behavior_type inference_actor_behavior(self_ptr self, caf::actor_addr worker) {
  self->state.worker = std::move(worker);
  // Only this process may end it (the worker releasing the session, or ending).
  self->set_exit_handler([self](caf::exit_msg& m) {
    const auto& sender = self->current_sender();
    if (!sender || sender->node() != self->node()) return;
    self->quit(m.reason);
  });
  return {
      [self](infer_host_atom, const infer_assignment& a) -> caf::result<std::string> {
        if (!from_worker(self)) return make_error(glam_errc::not_allowed, "for the worker actor only");
        try {
          compute_guard lock(compute_mutex());
          self->state.host.load(a);
        } catch (const std::exception& e) {
          return make_error(glam_errc::cannot_host, std::string("cannot load the session's units: ") + e.what());
        }
        std::string units;
        for (const auto& u : self->state.host.units()) units += (units.empty() ? "" : " ") + u;
        return units;
      },
      [self](infer_atom, const infer_request& r) -> caf::result<infer_reply> {
        if (!from_worker(self)) return make_error(glam_errc::not_allowed, "for the worker actor only");
        try {
          compute_guard lock(compute_mutex());
          return self->state.host.call(r);
        } catch (const inference_error& e) {
          return make_error(glam_errc::bad_request, e.what());
        } catch (const std::exception& e) {
          return make_error(glam_errc::internal, std::string(to_string(static_cast<infer_op>(r.op))) + " on " +
                                                     r.unit.substr(0, 64) + " failed: " + e.what());
        }
      },
  };
}

}  // namespace glam
