#include "actors/security.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

namespace glam {

namespace {

std::string to_hex(const unsigned char* p, std::size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string s(2 * n, '0');
  for (std::size_t i = 0; i < n; ++i) {
    s[2 * i] = digits[p[i] >> 4];
    s[2 * i + 1] = digits[p[i] & 15];
  }
  return s;
}

std::string trim(const std::string& s) {
  auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return {};
  auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

constexpr std::size_t min_secret_chars = 16;

void write_private_file(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) throw std::runtime_error("cannot create " + path + ": check the directory's permissions");
  ::fchmod(fd, 0600);
  auto n = ::write(fd, text.data(), text.size());
  ::fsync(fd);
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size())) throw std::runtime_error("cannot write " + path);
}

std::string home_dir() {
  const char* h = std::getenv("HOME");
  return h && *h ? h : "/tmp";
}

}  // namespace

std::string read_secret_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw std::runtime_error("secret file " + path +
                             " does not exist: give --secret-file with the cluster's secret");
  if (st.st_mode & (S_IRWXG | S_IRWXO))
    throw std::runtime_error("secret file " + path + " is accessible by group or others (mode " +
                             [&] { char b[8]; std::snprintf(b, sizeof b, "%o", st.st_mode & 0777); return std::string(b); }() +
                             "): run chmod 600 " + path);
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read secret file " + path + ": check its permissions");
  std::stringstream ss;
  ss << in.rdbuf();
  auto s = trim(ss.str());
  if (s.size() < min_secret_chars)
    throw std::runtime_error("secret file " + path + " holds " + std::to_string(s.size()) +
                             " characters; a secret needs at least " +
                             std::to_string(min_secret_chars));
  return s;
}

std::string create_or_read_secret(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) return read_secret_file(path);  // exists already (or a clear error)
  auto secret = random_hex(32) + "\n";
  auto n = ::write(fd, secret.data(), secret.size());
  ::fsync(fd);
  ::close(fd);
  if (n != static_cast<ssize_t>(secret.size())) throw std::runtime_error("cannot write secret file " + path);
  return trim(secret);
}

std::string cluster_records_dir() { return home_dir() + "/.glam/clusters"; }

std::string cluster_record_path(const std::string& host, int port) {
  return cluster_records_dir() + "/" + host + "_" + std::to_string(port);
}

void record_cluster(const std::string& host, int port, const std::string& secret_path,
                    const std::string& checkpoint_root, const std::string& state_dir) {
  auto base = home_dir() + "/.glam";
  ::mkdir(base.c_str(), 0700);
  ::mkdir((base + "/clusters").c_str(), 0700);
  char* abs = ::realpath(secret_path.c_str(), nullptr);
  std::string p = abs ? abs : secret_path;
  std::free(abs);
  write_private_file(cluster_record_path(host, port), p + "\n" + checkpoint_root + "\n" + std::to_string(::getpid()) +
                                                         "\n" + state_dir + "\n");
}

std::string recorded_checkpoint_root(const std::string& host, int port) {
  std::ifstream in(cluster_record_path(host, port));
  std::string secret_path, root;
  std::getline(in, secret_path);
  std::getline(in, root);
  return trim(root);
}

std::string find_client_secret(const std::string& secret_file, const std::string& host, int port) {
  if (!secret_file.empty()) return read_secret_file(secret_file);
  if (const char* env = std::getenv("GLAM_SECRET_FILE"); env && *env) return read_secret_file(env);
  auto locator = cluster_record_path(host, port);
  std::ifstream in(locator);
  if (!in)
    throw std::runtime_error("no cluster secret: give --secret-file, set GLAM_SECRET_FILE, or run "
                             "on the coordinator's machine (looked for " + locator + ")");
  std::string path;
  std::getline(in, path);
  return read_secret_file(trim(path));
}

std::string random_bytes(int n) {
  std::string buf(static_cast<std::size_t>(n), '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(buf.data()), n) != 1)
    throw std::runtime_error("RAND_bytes failed: no entropy source");
  return buf;
}

std::string random_hex(int n) {
  auto b = random_bytes(n);
  return to_hex(reinterpret_cast<const unsigned char*>(b.data()), b.size());
}

std::string hmac_raw(const std::string& secret, const std::string& message) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
            reinterpret_cast<const unsigned char*>(message.data()), message.size(), out, &len))
    throw std::runtime_error("HMAC-SHA256 failed");
  return std::string(reinterpret_cast<const char*>(out), len);
}

std::string hmac_hex(const std::string& secret, const std::string& message) {
  auto raw = hmac_raw(secret, message);
  return to_hex(reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
}

bool constant_time_equal(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string client_proof(const std::string& secret, const std::string& nonce) {
  return hmac_hex(secret, "glam client proof v1|" + nonce);
}

std::string server_proof(const std::string& secret, const std::string& nonce) {
  return hmac_hex(secret, "glam server proof v1|" + nonce);
}

}  // namespace glam
