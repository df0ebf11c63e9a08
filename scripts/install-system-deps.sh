#!/usr/bin/env bash
# System packages the test suite uses: Debian's full Fashion-MNIST (IDX files)
# an OpenSSH server (the SSH device tests start their own on 127.0.0.1), and
# Maven with a JDK (the Android app is compiled against jars from Maven Central).
# On Debian/Ubuntu this installs them (as root, or with sudo); elsewhere it
# says what to install.
set -euo pipefail
pkgs=(dataset-fashion-mnist openssh-server openssh-client maven default-jdk-headless)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "Please install: ${missing[*]} (Fashion-MNIST IDX files under /usr/share/datasets/fashion-mnist, and sshd)" >&2
  exit 0
fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
