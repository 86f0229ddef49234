#include "actors/daemon.hpp"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <thread>

#include <caf/all.hpp>

#include "actors/errors.hpp"
#include "actors/fingerprint.hpp"
#include "actors/security.hpp"

namespace glam {

void block_termination_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

bool wait_or_signal(caf::actor_system& sys, const caf::actor_addr& watched, caf::error* reason) {
  // A thread takes the signal synchronously (it is blocked everywhere) and turns it into a
  // message, so this thread sleeps in receive instead of polling.
  using signal_atom = caf::atom_constant<caf::atom("signal")>;
  caf::scoped_actor self{sys};
  self->monitor(watched);
  caf::actor me = caf::actor_cast<caf::actor>(self);
  std::thread waiter([me] {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR2);  // our own wake-up when the watched actor ended first
    int sig = 0;
    sigwait(&set, &sig);
    if (sig != SIGUSR2) caf::anon_send(me, signal_atom::value);
  });
  bool signalled = false;
  self->receive(
      [&](const caf::down_msg& dm) {
        if (reason) *reason = dm.reason;
      },
      [&](signal_atom) { signalled = true; });
  if (!signalled) pthread_kill(waiter.native_handle(), SIGUSR2);
  waiter.join();
  return signalled;
}

void exit_within(std::chrono::seconds grace, int code) {
  std::thread([grace, code] {
    std::this_thread::sleep_for(grace);
    std::fprintf(stderr, "glam: shutdown did not finish within %lld s; exiting\n", static_cast<long long>(grace.count()));
    std::fflush(stderr);
    std::_Exit(code);
  }).detach();
}

std::int64_t resident_bytes() {
  std::ifstream in("/proc/self/statm");
  std::int64_t pages = 0, resident = 0;
  if (!(in >> pages >> resident)) return 0;
  return resident * static_cast<std::int64_t>(::sysconf(_SC_PAGESIZE));
}

std::string authenticate(caf::actor_system& sys, const caf::strong_actor_ptr& server, const hello_msg& hello_in,
                         const std::string& secret, std::chrono::milliseconds timeout) {
  auto coordinator = caf::actor_cast<coordinator_actor>(server);
  caf::scoped_actor self{sys};
  hello_msg hello = hello_in;
  hello.client_nonce = random_hex(32);
  std::string problem;
  challenge_msg ch;
  self->request(coordinator, timeout, hello_atom::value, hello)
      .receive([&](const challenge_msg& c) { ch = c; },
               [&](const caf::error& e) { problem = "refused by the server: " + error_text(e); });
  if (!problem.empty()) return problem;
  // Our proof goes out even when the server's fails, so that both sides report the
  // mismatch (it is an HMAC: it reveals nothing of the secret).
  const bool server_ok = constant_time_equal(server_proof(secret, hello.client_nonce), ch.server_proof);
  self->request(coordinator, timeout, auth_atom::value, proof_msg{ch.nonce, client_proof(secret, ch.nonce)})
      .receive([&](const std::string&) {}, [&](const caf::error& e) { problem = "refused by the server: " + error_text(e); });
  if (!server_ok) return "the server could not prove the cluster secret: wrong --secret-file on one side";
  return problem;
}

client_connection::client_connection(const std::string& endpoint, const std::string& secret_file,
                                     std::chrono::milliseconds timeout)
    : timeout_(timeout) {
  auto [host, port] = parse_endpoint(endpoint, "--coordinator");
  auto secret = find_client_secret(secret_file, host, port);
  secret_ = secret;
  runtime_options o;
  o.scheduler_threads = 1;
  cfg_ = std::make_unique<runtime_config>(o);
  sys_ = std::make_unique<caf::actor_system>(*cfg_);
  relay_ = std::make_unique<relay>(secret);
  connector_ = spawn_connector(*sys_, *relay_, timeout_);
  auto server = connect_through(*sys_, connector_, host, port, timeout_);
  if (!server)
    throw std::runtime_error("cannot connect to the coordinator at " + endpoint + ": " + error_text(server.error()) +
                             (server.error().category() == glam_error_category ? "" : " (is it running there?)"));
  server_ = caf::actor_cast<coordinator_actor>(*server);
  hello_msg h;
  h.role = "client";
  h.name = "client-" + std::to_string(::getpid());
  h.version = protocol_version;
  h.fingerprint = local_fingerprint();
  auto why = authenticate(*sys_, *server, h, secret, timeout_);
  if (!why.empty()) throw std::runtime_error("coordinator at " + endpoint + ": " + why);
}

client_connection::~client_connection() {
  server_ = nullptr;
  caf::scoped_actor self{*sys_};
  self->send_exit(connector_, caf::exit_reason::user_shutdown);
}

}  // namespace glam
