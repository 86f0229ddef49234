#include "actors/relay.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <future>
#include <list>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include "actors/relay_handshake.hpp"

namespace glam {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

std::uint32_t be32(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
}

constexpr std::size_t pump_bytes = 64 * 1024;
constexpr const char* psk_identity = "glam";

// TLS 1.3 with an external pre-shared key and no certificates: the key of each connection
// (relay_handshake::encryption_key) hangs on its SSL object as extra data of our own index
// (Asio's stream owns the app data slot).
int key_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

unsigned int psk_for_client(SSL* ssl, const char*, char* identity, unsigned int max_identity, unsigned char* psk,
                            unsigned int max_psk) {
  const auto* key = static_cast<const std::string*>(SSL_get_ex_data(ssl, key_index()));
  if (!key || max_identity <= std::strlen(psk_identity) || key->size() > max_psk) return 0;
  std::strcpy(identity, psk_identity);
  std::memcpy(psk, key->data(), key->size());
  return static_cast<unsigned int>(key->size());
}

unsigned int psk_for_server(SSL* ssl, const char* identity, unsigned char* psk, unsigned int max_psk) {
  const auto* key = static_cast<const std::string*>(SSL_get_ex_data(ssl, key_index()));
  if (!key || !identity || std::strcmp(identity, psk_identity) != 0 || key->size() > max_psk) return 0;
  std::memcpy(psk, key->data(), key->size());
  return static_cast<unsigned int>(key->size());
}

void configure_tls(asio::ssl::context& ctx, bool server) {
  SSL_CTX* c = ctx.native_handle();
  SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION);
  // The legacy PSK callbacks work with TLS 1.3 for SHA-256 suites.
  SSL_CTX_set_ciphersuites(c, "TLS_AES_128_GCM_SHA256");
  if (server) {
    SSL_CTX_set_psk_server_callback(c, psk_for_server);
    SSL_CTX_set_num_tickets(c, 0);
  } else {
    SSL_CTX_set_psk_client_callback(c, psk_for_client);
  }
}

std::string describe(const tcp::socket& s) {
  error_code ec;
  auto e = s.remote_endpoint(ec);
  return ec ? std::string("a peer") : e.address().to_string() + ":" + std::to_string(e.port());
}

}  // namespace

std::string check_basp_header(const unsigned char* h, std::uint32_t max_frame) {
  if (h[0] > basp_max_operation) return "unknown BASP operation " + std::to_string(h[0]);
  const std::uint32_t len = be32(h + 4);
  if (len > max_frame)
    return "BASP payload of " + std::to_string(len) + " bytes exceeds the bound of " + std::to_string(max_frame);
  // A message's operation data is its message id, whose category bits put it in one of the
  // receiver's mailbox queues. CAF 0.17 reads a message of a stream category as a stream
  // message, whatever it holds, and crashes on anything else; glam uses no streams.
  if (h[0] == basp_direct_message || h[0] == basp_routed_message) {
    const std::uint64_t id = (std::uint64_t{be32(h + 8)} << 32) | be32(h + 12);
    if (((id >> basp_category_offset) & 3) >= basp_first_stream_category)
      return "a BASP message of a stream category (glam uses no streams)";
  }
  return {};
}

std::string basp_frame_checker::feed(std::string_view in, std::string& out) {
  const char* p = in.data();
  std::size_t n = in.size();
  while (n > 0) {
    if (payload_left_ > 0) {
      const auto k = static_cast<std::size_t>(std::min<std::uint64_t>(payload_left_, n));
      out.append(p, k);
      payload_left_ -= k;
      p += k;
      n -= k;
      continue;
    }
    const auto k = std::min(basp_header_size - header_have_, n);
    std::memcpy(header_ + header_have_, p, k);
    header_have_ += k;
    p += k;
    n -= k;
    if (header_have_ < basp_header_size) break;
    if (auto why = check_basp_header(header_, max_frame_); !why.empty()) return why;
    out.append(reinterpret_cast<const char*>(header_), basp_header_size);
    payload_left_ = be32(header_ + 4);
    header_have_ = 0;
  }
  return {};
}

class relay_link;

struct relay::impl {
  impl(std::string s, relay_encryption e, relay_limits l) : secret(std::move(s)), encryption(e), limits(l) {
    configure_tls(tls_client, false);
    configure_tls(tls_server, true);
  }

  void accept_inbound(tcp::acceptor& a, const relay::hand_over& accepted);
  void retry_accept_later(std::function<void()> again);
  // Counts always; logs at most once a second per kind, saying how many it left out.
  void note(const std::string& kind, const std::string& message);

  std::string secret;
  relay_encryption encryption;
  relay_limits limits;
  relay_counters counters;
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  asio::ssl::context tls_client{asio::ssl::context::tls_client};
  asio::ssl::context tls_server{asio::ssl::context::tls_server};
  std::mutex mu;  // acceptors: reached from the callers' threads
  std::list<std::unique_ptr<tcp::acceptor>> acceptors;
  // The I/O thread's own: inbound connections open, and those still proving the secret,
  // oldest first.
  int inbound = 0;
  std::list<std::weak_ptr<relay_link>> pending;
  std::map<std::string, std::pair<std::chrono::steady_clock::time_point, int>> log_gate;
  std::thread thread;
};

using local_socket = asio::local::stream_protocol::socket;

// One relayed connection: `net` faces the network (plain or TLS), `local` faces this
// process's CAF (one end of a socket pair; CAF holds the other). Lives as long as an
// operation on it is pending.
class relay_link : public std::enable_shared_from_this<relay_link> {
 public:
  using opened = std::function<void(int fd, std::string why)>;

  relay_link(relay::impl& r, bool inbound, tcp::socket net)
      : r_(r), inbound_(inbound), net_(std::move(net)), local_(r.io), timer_(r.io), checker_(r.limits.max_frame) {}

  bool proved() const { return proved_; }

  void start_inbound(relay::hand_over accepted) {
    peer_ = describe(net_);
    accepted_ = std::move(accepted);
    error_code ec;
    const bool loopback = net_.remote_endpoint(ec).address().is_loopback();
    hs_ = std::make_unique<relay_handshake>(relay_handshake::role::server, r_.secret,
                                            r_.encryption == relay_encryption::always || ec || !loopback);
    arm_handshake_deadline();
    read_handshake(relay_handshake::hello_size, [this](const std::string& hello) {
      auto answer = hs_->answer(hello);
      if (answer.empty()) return refuse(r_.counters.refused_handshake, "handshake", hs_->why());
      write_handshake(std::move(answer), [this] {
        read_handshake(relay_handshake::proof_size, [this](const std::string& proof) {
          auto verdict = hs_->check(proof);
          if (verdict.empty()) return refuse(r_.counters.refused_secret, "secret", hs_->why());
          write_handshake(std::move(verdict), [this] { secure([this] { hand_over(); }); });
        });
      });
    });
  }

  void start_outbound(tcp::endpoint remote, std::string destination, opened done) {
    peer_ = destination;
    destination_ = std::move(destination);
    opened_ = std::move(done);
    hs_ = std::make_unique<relay_handshake>(relay_handshake::role::client, r_.secret,
                                            r_.encryption == relay_encryption::always || !remote.address().is_loopback());
    arm_handshake_deadline();
    auto self = shared_from_this();
    net_.async_connect(remote, [this, self](const error_code& ec) {
      if (ec) return fail_outbound(r_.counters.refused_handshake, "cannot connect to " + destination_ + ": " + ec.message());
      set_no_delay(net_);
      write_handshake(hs_->hello(), [this] {
        read_handshake(relay_handshake::answer_size, [this](const std::string& answer) {
          auto proof = hs_->proof(answer);
          if (proof.empty()) return fail_outbound(r_.counters.refused_handshake, destination_ + ": " + hs_->why());
          // Our proof goes out even when the server's failed, so that both sides report it.
          write_handshake(std::move(proof), [this] {
            if (!hs_->server_proved()) return fail_outbound(r_.counters.refused_secret, destination_ + ": " + hs_->why());
            read_handshake(relay_handshake::verdict_size, [this](const std::string& verdict) {
              if (verdict != "Y") return fail_outbound(r_.counters.refused_secret, destination_ + ": refused");
              secure([this] { hand_over(); });
            });
          });
        });
      });
    });
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    error_code ec;
    timer_.cancel(ec);
    net_socket().close(ec);
    local_.close(ec);
    if (inbound_) --r_.inbound;
    // An opener still waiting hears why (every way to fail ends here).
    if (auto done = std::exchange(opened_, nullptr)) done(-1, destination_ + ": the connection closed during the handshake");
  }

 private:
  tcp::socket& net_socket() { return tls_ ? tls_->next_layer() : net_; }

  static void set_no_delay(tcp::socket& s) {
    error_code ec;
    s.set_option(tcp::no_delay(true), ec);
  }

  void arm_handshake_deadline() {
    timer_.expires_after(r_.limits.handshake_timeout);
    auto self = shared_from_this();
    timer_.async_wait([this, self](const error_code& ec) {
      if (ec || proved_ || closed_) return;
      const auto why = "the handshake did not complete within " +
                       std::to_string(r_.limits.handshake_timeout.count()) + " ms";
      if (inbound_) return refuse(r_.counters.refused_handshake, "handshake", why);
      fail_outbound(r_.counters.refused_handshake, destination_ + ": " + why);
    });
  }

  template <class F>
  void read_handshake(std::size_t n, F next) {
    hs_in_.assign(n, '\0');
    auto self = shared_from_this();
    asio::async_read(net_, asio::buffer(hs_in_), [this, self, next](const error_code& ec, std::size_t) {
      if (closed_) return;
      if (ec) {
        if (inbound_) return refuse(r_.counters.refused_handshake, "handshake", "closed during the handshake");
        return fail_outbound(r_.counters.refused_secret,
                             destination_ + ": the server closed the connection during the handshake "
                                            "(it did not accept our proof: wrong cluster secret on one side?)");
      }
      next(hs_in_);
    });
  }

  template <class F>
  void write_handshake(std::string bytes, F next) {
    hs_out_ = std::move(bytes);
    auto self = shared_from_this();
    asio::async_write(net_, asio::buffer(hs_out_), [this, self, next](const error_code& ec, std::size_t) {
      if (closed_) return;
      if (ec) return close();
      next();
    });
  }

  // Starts TLS when the handshake agreed on it, then next().
  template <class F>
  void secure(F next) {
    if (!hs_->encrypted()) return next();
    tls_ = std::make_unique<asio::ssl::stream<tcp::socket>>(std::move(net_), inbound_ ? r_.tls_server : r_.tls_client);
    SSL_set_ex_data(tls_->native_handle(), key_index(), const_cast<std::string*>(&hs_->encryption_key()));
    auto self = shared_from_this();
    tls_->async_handshake(inbound_ ? asio::ssl::stream_base::server : asio::ssl::stream_base::client,
                          [this, self, next](const error_code& ec) {
                            if (closed_) return;
                            if (ec) {
                              const auto why = "TLS handshake failed: " + ec.message();
                              if (inbound_) return refuse(r_.counters.refused_handshake, "tls", why);
                              return fail_outbound(r_.counters.refused_handshake, destination_ + ": " + why);
                            }
                            ++r_.counters.encrypted;
                            next();
                          });
  }

  // The connection is authenticated (and encrypted when agreed): a socket pair, one end
  // for CAF, the other relayed.
  void hand_over() {
    local_socket theirs(r_.io);
    error_code ec;
    asio::local::connect_pair(local_, theirs, ec);
    if (ec) {
      r_.note("pair", "relay: cannot make a socket pair: " + ec.message());
      return close();
    }
    const int fd = theirs.release();
    start_pumps();
    if (inbound_)
      accepted_(fd, peer_);
    else if (auto done = std::exchange(opened_, nullptr))
      done(fd, {});
  }

  void refuse(std::atomic<std::int64_t>& counter, const std::string& kind, const std::string& why) {
    ++counter;
    r_.note(kind, "relay: refused a connection from " + peer_ + ": " + why);
    close();
  }

  void fail_outbound(std::atomic<std::int64_t>& counter, const std::string& why) {
    ++counter;
    r_.note("dial " + destination_, "relay: " + why);
    auto done = std::exchange(opened_, nullptr);
    close();
    if (done) done(-1, why);
  }

  void start_pumps() {
    proved_ = true;
    ++r_.counters.authenticated;
    last_activity_ = std::chrono::steady_clock::now();
    arm_idle_check();
    pump_network();
    pump_local();
  }

  void arm_idle_check() {
    timer_.expires_after(r_.limits.idle_timeout / 4);
    auto self = shared_from_this();
    timer_.async_wait([this, self](const error_code& ec) {
      if (ec || closed_) return;
      if (std::chrono::steady_clock::now() - last_activity_ > r_.limits.idle_timeout) {
        ++r_.counters.closed_idle;
        r_.note("idle", "relay: closing a connection to " + peer_ + " idle for " +
                            std::to_string(r_.limits.idle_timeout.count()) + " ms");
        return close();
      }
      arm_idle_check();
    });
  }

  template <class B, class H>
  void network_read(B buffer, H handler) {
    if (tls_)
      tls_->async_read_some(buffer, std::move(handler));
    else
      net_.async_read_some(buffer, std::move(handler));
  }

  template <class B, class H>
  void network_write(B buffer, H handler) {
    if (tls_)
      asio::async_write(*tls_, buffer, std::move(handler));
    else
      asio::async_write(net_, buffer, std::move(handler));
  }

  // Network -> CAF, through the framing check.
  void pump_network() {
    auto self = shared_from_this();
    network_read(asio::buffer(from_network_), [this, self](const error_code& ec, std::size_t n) {
      if (closed_) return;
      if (ec) return close();
      r_.counters.bytes_in += static_cast<std::int64_t>(n);
      last_activity_ = std::chrono::steady_clock::now();
      checked_.clear();
      if (auto why = checker_.feed({from_network_.data(), n}, checked_); !why.empty()) {
        ++r_.counters.refused_frames;
        r_.note("frame", "relay: closing the connection with " + peer_ + ": " + why);
        return close();
      }
      if (checked_.empty()) return pump_network();
      asio::async_write(local_, asio::buffer(checked_), [this, self](const error_code& wec, std::size_t) {
        if (closed_) return;
        if (wec) return close();
        pump_network();
      });
    });
  }

  // CAF -> network.
  void pump_local() {
    auto self = shared_from_this();
    local_.async_read_some(asio::buffer(from_local_), [this, self](const error_code& ec, std::size_t n) {
      if (closed_) return;
      if (ec) return close();
      r_.counters.bytes_out += static_cast<std::int64_t>(n);
      last_activity_ = std::chrono::steady_clock::now();
      network_write(asio::buffer(from_local_.data(), n), [this, self](const error_code& wec, std::size_t) {
        if (closed_) return;
        if (wec) return close();
        pump_local();
      });
    });
  }

  relay::impl& r_;
  bool inbound_;
  tcp::socket net_;
  local_socket local_;
  std::unique_ptr<asio::ssl::stream<tcp::socket>> tls_;
  asio::steady_timer timer_;
  std::unique_ptr<relay_handshake> hs_;
  std::string hs_in_, hs_out_;
  std::string peer_, destination_;
  relay::hand_over accepted_;
  opened opened_;
  basp_frame_checker checker_;
  std::array<char, pump_bytes> from_network_{}, from_local_{};
  std::string checked_;
  std::chrono::steady_clock::time_point last_activity_;
  bool proved_ = false;
  bool closed_ = false;
};

void relay::impl::note(const std::string& kind, const std::string& message) {
  auto now = std::chrono::steady_clock::now();
  auto& [last, left_out] = log_gate[kind];
  if (log_gate.size() > 256) log_gate.clear();  // kinds name destinations: keep the table small
  if (last.time_since_epoch().count() != 0 && now - last < std::chrono::seconds(1)) {
    ++left_out;
    return;
  }
  spdlog::warn("{}{}", message, left_out > 0 ? fmt::format(" (and {} more like it)", left_out) : std::string());
  last = now;
  left_out = 0;
}

void relay::impl::retry_accept_later(std::function<void()> again) {
  // Out of file descriptors, say: try again shortly instead of spinning.
  auto t = std::make_shared<asio::steady_timer>(io, std::chrono::milliseconds(50));
  t->async_wait([t, again](const error_code& ec) {
    if (!ec) again();
  });
}

void relay::impl::accept_inbound(tcp::acceptor& a, const relay::hand_over& accepted) {
  a.async_accept([this, &a, accepted](const error_code& ec, tcp::socket s) {
    if (ec == asio::error::operation_aborted) return;
    if (ec) return retry_accept_later([this, &a, accepted] { accept_inbound(a, accepted); });
    ++counters.accepted;
    if (inbound >= limits.max_connections) {
      ++counters.refused_connections;
      note("slots", "relay: refused a connection from " + describe(s) + ": " + std::to_string(inbound) +
                        " connections are open, the most allowed");
      error_code ignored;
      s.close(ignored);
    } else {
      pending.remove_if([](const std::weak_ptr<relay_link>& w) {
        auto l = w.lock();
        return !l || l->proved();
      });
      if (static_cast<int>(pending.size()) >= limits.max_pending) {
        if (auto oldest = pending.front().lock()) {
          ++counters.evicted_pending;
          note("evict", "relay: closed the oldest connection still proving the secret to make room");
          oldest->close();
        }
        pending.pop_front();
      }
      error_code ignored;
      s.set_option(tcp::no_delay(true), ignored);
      auto l = std::make_shared<relay_link>(*this, true, std::move(s));
      ++inbound;
      pending.push_back(l);
      l->start_inbound(accepted);
    }
    accept_inbound(a, accepted);
  });
}

relay::relay(std::string secret, relay_encryption encryption, relay_limits limits)
    : p_(std::make_shared<impl>(std::move(secret), encryption, limits)) {
  p_->thread = std::thread([p = p_.get()] { p->io.run(); });
}

relay::~relay() {
  p_->work.reset();
  p_->io.stop();
  if (p_->thread.joinable()) p_->thread.join();
  std::lock_guard<std::mutex> lock(p_->mu);
  p_->acceptors.clear();
}

int relay::listen(const std::string& host, int port, hand_over accepted) {
  error_code ec;
  auto address = asio::ip::make_address(host, ec);
  if (ec) throw std::runtime_error("listen address '" + host + "' is not an IP address (e.g. 127.0.0.1)");
  auto a = std::make_unique<tcp::acceptor>(p_->io);
  tcp::endpoint at(address, static_cast<unsigned short>(port));
  a->open(at.protocol(), ec);
  if (!ec) a->set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) a->bind(at, ec);
  if (!ec) a->listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw std::runtime_error("cannot listen on " + host + ":" + std::to_string(port) + ": " + ec.message() +
                             " (port in use? give another --listen)");
  const int bound = a->local_endpoint().port();
  auto* raw = a.get();
  {
    std::lock_guard<std::mutex> lock(p_->mu);
    p_->acceptors.push_back(std::move(a));
  }
  asio::post(p_->io, [p = p_.get(), raw, accepted = std::move(accepted)] { p->accept_inbound(*raw, accepted); });
  return bound;
}

void relay::open(const std::string& host, int port, std::function<void(int fd, std::string why)> done) {
  const auto destination = host + ":" + std::to_string(port);
  error_code ec;
  auto address = asio::ip::make_address(host, ec);
  if (ec) {
    tcp::resolver resolver(p_->io);
    auto found = resolver.resolve(host, std::to_string(port), ec);
    if (ec || found.empty()) return done(-1, "cannot resolve host '" + host + "': " + (ec ? ec.message() : "no address"));
    address = found.begin()->endpoint().address();
  }
  const tcp::endpoint remote(address, static_cast<unsigned short>(port));
  asio::post(p_->io, [p = p_.get(), remote, destination, done = std::move(done)]() mutable {
    auto l = std::make_shared<relay_link>(*p, false, tcp::socket(p->io));
    l->start_outbound(remote, destination, std::move(done));
  });
}

int relay::open_blocking(const std::string& host, int port) {
  auto result = std::make_shared<std::promise<std::pair<int, std::string>>>();
  auto future = result->get_future();
  open(host, port, [result](int fd, std::string why) { result->set_value({fd, std::move(why)}); });
  // The handshake has its own deadline; this one is a backstop.
  if (future.wait_for(p_->limits.handshake_timeout + std::chrono::seconds(5)) != std::future_status::ready)
    throw std::runtime_error(host + ":" + std::to_string(port) + ": the relay did not answer");
  auto [fd, why] = future.get();
  if (fd < 0) throw std::runtime_error(why);
  return fd;
}

const relay_counters& relay::counters() const { return p_->counters; }

}  // namespace glam
