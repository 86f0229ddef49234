#!/usr/bin/env bash
# Installs the Debian packages glam needs. As root it runs apt-get; otherwise it
# prints the exact command to run and fails.
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config
  libcaf-dev capnproto libcapnp-dev libboost-dev libssl-dev
  libblis-dev libblis4-pthread
  libsentencepiece-dev sentencepiece
  libtomlplusplus-dev libcli11-dev libspdlog-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  fortunes
  # The dashboard's charts (glam serves the file itself), and the headless browser its test uses.
  libjs-chart.js chromium
)
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "glam needs these Debian packages, which are not installed: ${missing[*]}" >&2
  echo "Install them as root, then run make again:" >&2
  echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
