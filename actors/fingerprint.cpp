#include "actors/fingerprint.hpp"

#include <cstdlib>
#include <fstream>
#include <map>

#include "configs/config.hpp"
#include "kernels/matmul.hpp"

#ifndef GLAM_BUILD_ID
// Without an injected id, two builds are told apart by version and compiler at least.
#define GLAM_BUILD_ID "glam-0.1.0 " __VERSION__
#endif

namespace glam {

std::string cpu_family() {
  std::ifstream in("/proc/cpuinfo");
  std::map<std::string, std::string> fields;
  std::string line;
  while (std::getline(in, line) && !line.empty()) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    auto key = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
    auto value = colon + 2 <= line.size() ? line.substr(colon + 2) : std::string();
    fields[key] = value;
  }
  if (fields.empty()) return "unknown";
  return fields["vendor_id"] + " family " + fields["cpu family"] + " model " + fields["model"];
}

build_fingerprint local_fingerprint() {
  build_fingerprint f;
  const char* over = std::getenv("GLAM_BUILD_ID_OVERRIDE");
  f.build_id = over && *over ? over : GLAM_BUILD_ID;
  f.blis = blis_configuration();
  f.cpu_family = cpu_family();
  return f;
}

std::string hello_problem(const hello_msg& h) {
  if (h.version != protocol_version)
    return "protocol version " + std::to_string(h.version) + " differs from this node's " +
           std::to_string(protocol_version) + ": run the same glam release on every node";
  if (h.role != "worker" && h.role != "client")
    return "role '" + h.role.substr(0, 16) + "' is not one of worker, client";
  if (auto why = name_problem(h.name); !why.empty()) return "name '" + h.name.substr(0, 80) + "': " + why;
  if (h.client_nonce.size() != 64 || h.client_nonce.find_first_not_of("0123456789abcdef") != std::string::npos)
    return "the client nonce is not 64 hex digits";
  if (h.listen_host.size() > max_host_chars) return "the listen host is longer than " + std::to_string(max_host_chars);
  const auto fp = h.fingerprint;
  if (fp.build_id.size() > 256 || fp.blis.size() > 256 || fp.cpu_family.size() > 256)
    return "a build fingerprint field is longer than 256 characters";
  return {};
}

std::string compatibility_problem(const hello_msg& h, const build_fingerprint& own) {
  if (auto why = hello_problem(h); !why.empty()) return why;
  if (h.role == "client") return {};
  if (h.fingerprint.build_id != own.build_id)
    return "build id '" + h.fingerprint.build_id + "' differs from the coordinator's '" + own.build_id +
           "': install the same build on every worker";
  if (h.fingerprint.blis != own.blis)
    return "BLIS configuration '" + h.fingerprint.blis + "' differs from the coordinator's '" + own.blis +
           "': results would not be bitwise identical";
  if (h.fingerprint.cpu_family != own.cpu_family)
    return "CPU family '" + h.fingerprint.cpu_family + "' differs from the coordinator's '" +
           own.cpu_family + "': results would not be bitwise identical";
  if (h.listen_port == 0) return "worker listen port is 0: the worker must publish before registering";
  return {};
}

}  // namespace glam
