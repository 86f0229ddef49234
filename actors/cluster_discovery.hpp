#pragma once
// How a client finds its cluster without --coordinator: $GLAM_COORDINATOR, else the one
// coordinator recorded as running on this machine (a coordinator records itself under
// ~/.glam/clusters/HOST_PORT: its secret file, checkpoint root, process id and state
// directory; it removes the record when it stops cleanly). docs/runtime.md describes it.
#include <string>
#include <vector>

namespace glam {

struct recorded_cluster {
  std::string endpoint;   // HOST:PORT
  std::string state_dir;  // empty in records that do not say
  long pid = 0;           // 0 in records that do not say
  std::string record;     // the record's path
};

// The records under ~/.glam/clusters/ whose coordinator runs: a record whose process is gone
// (a coordinator that was killed) is left out; one that names no process counts as running.
// Sorted by endpoint.
std::vector<recorded_cluster> recorded_clusters();

// Removes the record of host:port if this process wrote it (a coordinator that stops cleanly).
void forget_cluster(const std::string& host, int port);

// The coordinator a client talks to: `given` (--coordinator) when not empty, else the
// environment's GLAM_COORDINATOR when set and not empty, else the one recorded cluster.
// Throws std::runtime_error when there is none (saying how to name one) or several (listing
// them, and asking for --coordinator).
std::string resolve_coordinator(const std::string& given);
std::string resolve_coordinator(const std::string& given, const char* environment,
                                const std::vector<recorded_cluster>& recorded);

}  // namespace glam
