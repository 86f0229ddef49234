// Options the coordinator and worker daemons share.
#include "cli/commands.hpp"

namespace glam::cli {

void add_encryption_option(CLI::App& sub, std::string& value) {
  sub.add_option("--encryption", value,
                 "auto: TLS 1.3 on connections that leave loopback (loopback ones are authenticated, not "
                 "encrypted); always: on every connection")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "always"}));
}

void add_http_options(CLI::App& sub, std::string& http, std::string& auth, const std::string& what) {
  sub.add_option("--http", http,
                 "HOST:PORT to serve " + what +
                     " on (port 0: any free); off loopback every request needs the cluster's token")
      ->type_name("HOST:PORT");
  sub.add_option("--http-auth", auth,
                 "auto: the token (glam status --dashboard-url) is needed off loopback only; token: always")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "token"}));
}

relay_encryption parse_encryption(const std::string& value) {
  return value == "always" ? relay_encryption::always : relay_encryption::off_loopback;
}

}  // namespace glam::cli
