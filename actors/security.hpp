#pragma once
// The cluster secret and the challenge/response proofs made with it (HMAC-SHA256 over a
// fresh nonce: the secret never crosses the wire).
#include <string>

namespace glam {

// The secret in path (trimmed); throws std::runtime_error naming the file and the fix when
// it is missing, unreadable, too short, or readable by others.
std::string read_secret_file(const std::string& path);
// Creates path with a fresh random secret, mode 0600, unless it exists; returns the secret.
std::string create_or_read_secret(const std::string& path);

// What local clients and workers learn of a coordinator they reach at host:port: at startup
// the coordinator records under ~/.glam/clusters/HOST_PORT the path of its secret file and
// its checkpoint root (a worker's default --checkpoint-root on the same machine).
// The record also holds the coordinator's process id and state directory, so that clients
// can tell live clusters from stale records (actors/cluster_discovery.hpp).
std::string cluster_records_dir();
std::string cluster_record_path(const std::string& host, int port);
void record_cluster(const std::string& host, int port, const std::string& secret_path,
                    const std::string& checkpoint_root, const std::string& state_dir = {});
// The recorded checkpoint root of the coordinator at host:port; empty when none is recorded.
std::string recorded_checkpoint_root(const std::string& host, int port);
// Resolves the secret for a client: the given file, else $GLAM_SECRET_FILE, else the
// recorded location; throws with a message that lists what was tried.
std::string find_client_secret(const std::string& secret_file, const std::string& host, int port);

// Lowercase hex of n random bytes from the OS.
std::string random_hex(int n);
// HMAC-SHA256(secret, message) as lowercase hex, and as its 32 raw bytes.
std::string hmac_hex(const std::string& secret, const std::string& message);
std::string hmac_raw(const std::string& secret, const std::string& message);
// n random bytes from the OS.
std::string random_bytes(int n);
// Comparison that takes the same time wherever the strings differ.
bool constant_time_equal(const std::string& a, const std::string& b);

// The proof a node gives for a nonce (domain-separated so that a server's proof is never a
// valid client proof and vice versa).
std::string client_proof(const std::string& secret, const std::string& nonce);
std::string server_proof(const std::string& secret, const std::string& nonce);

}  // namespace glam
