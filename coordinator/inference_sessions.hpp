#pragma once
// The coordinator's table of serving sessions (docs/serving.md, "The actor backend"), as
// plain functions: where each session's units are (one attention shard and every expert),
// their generations, which wait to be loaded, and what moves when a worker is lost. The
// coordinator actor sends the messages; this decides.
//
// A session's phases: placing (some unit is being loaded) <-> ready (every unit loaded);
// failed (a unit cannot be placed or loaded anywhere: the session ends).
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "actors/inference_messages.hpp"

namespace glam {

struct inference_session {
  infer_assignment spec;  // the checkpoint and the model (units, workers, generations unused)
  std::string client;     // the actor that started it (calls come from its node only)
  std::string client_node;
  std::map<std::string, std::string> owner;        // unit -> worker
  std::map<std::string, std::int64_t> generation;  // unit -> times placed (1 at the start)
  std::set<std::string> loading;                   // units not yet loaded where they are placed

  bool ready() const { return loading.empty(); }
  // The spec with every unit, its worker and its generation (what clients get).
  infer_assignment view() const;
  // The assignment for `worker`: the spec and the units placed there that are loading.
  infer_assignment assignment_for(const std::string& worker) const;
  std::vector<std::string> workers_loading() const;
};

// The units of a session: shard0, then expert0 .. expert<experts-1>.
std::vector<std::string> session_units(std::int64_t experts);

// Places units on workers (names, in order): the shard on the worker with the fewest units
// of other sessions (`load`), the experts round-robin over the workers starting after the
// shard's, so that with two or more workers the shard's worker hosts the fewest experts.
// Deterministic. Throws std::runtime_error without workers.
std::map<std::string, std::string> place_session_units(const std::vector<std::string>& workers, std::int64_t experts,
                                                       const std::map<std::string, int>& load = {});

class inference_sessions {
 public:
  // A new session (its id chosen here: serve-<n>) placed on `workers`; every unit loading.
  inference_session& start(infer_assignment spec, const std::string& client, const std::string& client_node,
                           const std::vector<std::string>& workers);
  inference_session* find(const std::string& id);
  void end(const std::string& id);
  std::size_t size() const { return sessions_.size(); }
  const std::map<std::string, inference_session>& all() const { return sessions_; }

  // Worker `lost` is gone: its units of every session move to `survivors` (round-robin, the
  // least loaded first), their generation goes up and they load again. Returns the sessions
  // that changed; a session without survivors is returned too, with no owner for the units.
  std::vector<std::string> lose_worker(const std::string& lost, const std::vector<std::string>& survivors);
  // Units a worker loaded (the answer to its host request for this assignment).
  void loaded(const std::string& id, const std::string& worker, const std::vector<std::string>& units);
  // How many units of all sessions each worker hosts.
  std::map<std::string, int> load() const;

 private:
  std::map<std::string, inference_session> sessions_;
  std::int64_t next_ = 1;
};

}  // namespace glam
