#pragma once
// The relay: every TCP connection of a glam process is the relay's, so that no byte from a
// peer that has not proved the cluster secret reaches CAF, in either direction
// (docs/runtime.md, "Security"). CAF itself listens on no port and dials none: the relay
// hands it each connection as one end of a local socket pair, after the handshake.
// - Inbound (the front door): the daemon's public port. The relay accepts a connection, runs
//   the handshake of relay_handshake.hpp as the server, and only then hands it over
//   (listen's hand_over: the daemon gives the socket to CAF as a connection to its actor).
// - Outbound (open): the relay dials the destination, proves the secret as the client and
//   checks the server's proof, and only then hands the connection over.
// - Connections that leave loopback (or every connection, with relay_encryption::always) are
//   encrypted and integrity-protected: TLS 1.3 keyed by a pre-shared key derived from the
//   secret and the handshake's nonces (OpenSSL through Boost.Asio's ssl stream).
// - Whatever comes from the network into CAF passes a BASP framing check (basp_frame_checker):
//   an unknown operation or a payload over the bound closes the connection before CAF sees
//   the header (CAF 0.17 allocates the announced payload size on reading a header).
// - Bounds: inbound connections at most max_connections; of those at most max_pending still
//   proving the secret (a new one evicts the oldest, so idle or slow strangers cannot hold
//   the slots), each for at most handshake_timeout; a connection idle for idle_timeout is
//   closed. Per connection the relay holds two 64 KiB buffers and one BASP header.
// One I/O thread per relay; destroying the relay closes everything and joins it.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace glam {

// BASP framing, as CAF 0.17.6 writes it (big-endian): operation u8, 2 padding bytes,
// flags u8, payload length u32, operation data u64, source actor u64, dest actor u64.
inline constexpr std::size_t basp_header_size = 32;
inline constexpr std::uint8_t basp_max_operation = 0x06;  // heartbeat
inline constexpr std::uint8_t basp_direct_message = 0x02, basp_routed_message = 0x03;
// A message id's category (bits 60-61): 0 urgent, 1 normal, 2 upstream, 3 downstream.
inline constexpr int basp_category_offset = 60;
inline constexpr std::uint64_t basp_first_stream_category = 2;

struct relay_limits {
  // The largest BASP payload a peer may announce: a tensor chunk is at most 4 MiB of floats,
  // every other message is far smaller.
  std::uint32_t max_frame = 5u << 20;
  int max_connections = 64;
  int max_pending = 16;
  std::chrono::milliseconds handshake_timeout{5000};
  // CAF heartbeats every live connection twice a second: a connection silent this long has
  // a dead or stopped peer.
  std::chrono::milliseconds idle_timeout{30000};
};

// Checks one BASP header; empty when acceptable, else why not.
std::string check_basp_header(const unsigned char* h, std::uint32_t max_frame);

// Follows the BASP framing of a byte stream and holds each header back until it has been
// checked, so that CAF never sees a complete header that the check refused.
class basp_frame_checker {
 public:
  explicit basp_frame_checker(std::uint32_t max_frame) : max_frame_(max_frame) {}
  // Appends to `out` the bytes of `in` that may go on; returns why the stream must be closed
  // (empty when it may go on).
  std::string feed(std::string_view in, std::string& out);

 private:
  std::uint32_t max_frame_;
  unsigned char header_[basp_header_size] = {};
  std::size_t header_have_ = 0;
  std::uint64_t payload_left_ = 0;
};

enum class relay_encryption {
  off_loopback,  // TLS on every connection whose peer is not on loopback
  always,        // TLS on every connection (tests and benchmarks of the encrypted path)
};

struct relay_counters {
  std::atomic<std::int64_t> accepted{0};               // inbound connections accepted
  std::atomic<std::int64_t> authenticated{0};          // connections through the handshake, both ways
  std::atomic<std::int64_t> encrypted{0};              // of those, under TLS
  std::atomic<std::int64_t> refused_secret{0};         // a peer that could not prove the secret
  std::atomic<std::int64_t> refused_handshake{0};      // not the handshake, or it timed out
  std::atomic<std::int64_t> refused_connections{0};    // over max_connections
  std::atomic<std::int64_t> evicted_pending{0};        // an unproved connection pushed out by a newer one
  std::atomic<std::int64_t> refused_frames{0};         // a BASP header over the bound, or garbage
  std::atomic<std::int64_t> closed_idle{0};
  std::atomic<std::int64_t> bytes_in{0};               // from the network into this process
  std::atomic<std::int64_t> bytes_out{0};
};

class relay {
 public:
  relay(std::string secret, relay_encryption encryption = relay_encryption::off_loopback,
        relay_limits limits = {});
  ~relay();
  relay(const relay&) = delete;
  relay& operator=(const relay&) = delete;

  // The local end of an authenticated connection (a socket file descriptor the callee
  // owns), and who is at the other end; called on the relay's thread.
  using hand_over = std::function<void(int fd, const std::string& peer)>;
  // Listens on host:port (0: any free port) and hands every authenticated connection over.
  // Returns the bound port; throws std::runtime_error naming the address when it cannot
  // listen.
  int listen(const std::string& host, int port, hand_over accepted);
  // Dials host:port and runs the handshake; done(fd, "") with the local end of the
  // authenticated connection, or done(-1, why) naming the cause (cannot connect, wrong
  // cluster secret, not a glam daemon, timed out). Called on the relay's thread.
  void open(const std::string& host, int port, std::function<void(int fd, std::string why)> done);
  // open() for callers that may block: the local end, or std::runtime_error with why.
  int open_blocking(const std::string& host, int port);

  const relay_counters& counters() const;

  struct impl;  // the I/O thread's state (relay.cpp)

 private:
  std::shared_ptr<impl> p_;
};

}  // namespace glam
