#pragma once
// The front door: the daemon's public port. CAF 0.17's BASP header carries a 32-bit payload
// length that CAF does not bound: a forged length (up to 4 GiB) makes the receiving broker
// allocate and zero-fill a buffer that size, on the multiplexer thread, before any
// authentication (measured: RSS 15 MB -> 260 MB within a second for one forged header, and
// heartbeats stall). So CAF listens on an internal loopback port only, and the daemon's
// public port is this relay, which reads the BASP framing of everything coming in and
// closes a connection whose header names an unknown operation or a payload over the bound,
// before CAF sees the header. It also bounds the number of open connections and the bytes
// buffered per connection, so memory stays bounded whatever a peer sends.
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

namespace glam {

// BASP framing, as CAF 0.17.6 writes it (big-endian): operation u8, 2 padding bytes,
// flags u8, payload length u32, operation data u64, source actor u64, dest actor u64.
inline constexpr std::size_t basp_header_size = 32;
inline constexpr std::uint8_t basp_max_operation = 0x06;  // heartbeat

struct front_door_limits {
  std::uint32_t max_payload = 16u << 20;  // a tensor chunk is at most 4 MiB of floats
  int max_connections = 64;
  std::size_t buffer_bytes = 1u << 20;    // per direction per connection
};

// Checks one BASP header; empty when acceptable, else why not.
std::string check_basp_header(const unsigned char* h, const front_door_limits& limits);

struct front_door_counters {
  std::atomic<std::int64_t> accepted{0};
  std::atomic<std::int64_t> refused_frames{0};      // bad operation or oversized payload
  std::atomic<std::int64_t> refused_connections{0}; // over max_connections
  std::atomic<std::int64_t> bytes_in{0};
  std::atomic<std::int64_t> bytes_out{0};
};

class front_door {
 public:
  // Listens on host:port (0: any free port) and relays to 127.0.0.1:inner_port; throws
  // std::runtime_error naming the address when it cannot listen.
  front_door(const std::string& host, int port, int inner_port, front_door_limits limits = {});
  ~front_door();
  front_door(const front_door&) = delete;
  front_door& operator=(const front_door&) = delete;

  int port() const { return port_; }
  const front_door_counters& counters() const { return *counters_; }

 private:
  void run();
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  int port_ = 0;
  int inner_port_ = 0;
  front_door_limits limits_;
  std::unique_ptr<front_door_counters> counters_;
  std::thread thread_;
};

}  // namespace glam
