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

relay_encryption parse_encryption(const std::string& value) {
  return value == "always" ? relay_encryption::always : relay_encryption::off_loopback;
}

}  // namespace glam::cli
