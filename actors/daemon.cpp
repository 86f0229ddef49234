#include "actors/daemon.hpp"

#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include <caf/all.hpp>

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

bool wait_or_signal(caf::actor_system& sys, const caf::actor& watched) {
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
  self->receive([&](const caf::down_msg&) {}, [&](signal_atom) { signalled = true; });
  if (!signalled) pthread_kill(waiter.native_handle(), SIGUSR2);
  waiter.join();
  return signalled;
}

std::int64_t resident_bytes() {
  std::ifstream in("/proc/self/statm");
  std::int64_t pages = 0, resident = 0;
  if (!(in >> pages >> resident)) return 0;
  return resident * static_cast<std::int64_t>(::sysconf(_SC_PAGESIZE));
}

client_connection::client_connection(const std::string& endpoint, const std::string& secret_file,
                                     std::chrono::milliseconds timeout)
    : timeout_(timeout) {
  auto [host, port] = parse_endpoint(endpoint, "--coordinator");
  auto secret = find_client_secret(secret_file, host, port);
  runtime_options o;
  o.scheduler_threads = 1;
  cfg_ = std::make_unique<runtime_config>(o);
  sys_ = std::make_unique<caf::actor_system>(*cfg_);
  auto server = connect_to(*sys_, host, port);
  if (!server)
    throw std::runtime_error("cannot connect to the coordinator at " + endpoint + ": " + sys_->render(server.error()) +
                             " (is it running there?)");
  server_ = *server;
  hello_msg h;
  h.role = "client";
  h.name = "client-" + std::to_string(::getpid());
  h.version = protocol_version;
  h.fingerprint = local_fingerprint();
  auto why = authenticate(*sys_, server_, h, secret, timeout_);
  if (!why.empty()) throw std::runtime_error("coordinator at " + endpoint + ": " + why);
}

client_connection::~client_connection() {
  server_ = nullptr;
}

}  // namespace glam
