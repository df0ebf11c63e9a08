#!/usr/bin/env bash
# System packages the test suite uses: Debian's full Fashion-MNIST (IDX files),
# an OpenSSH server (the SSH device tests start their own on 127.0.0.1), and
# Maven with a JDK (the Android app is compiled against jars from Maven Central),
# and Chromium (a test opens report.html headless).
# Installs what is missing on Debian/Ubuntu (as root, or with sudo); elsewhere
# it says what to install.
set -euo pipefail
missing=()
[ -d /usr/share/datasets/fashion-mnist ] || missing+=(dataset-fashion-mnist)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh-keygen >/dev/null || missing+=(openssh-client)
command -v mvn >/dev/null || missing+=(maven)
command -v javac >/dev/null || missing+=(default-jdk-headless)
command -v chromium >/dev/null || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "Please install: ${missing[*]}" >&2
  exit 0
fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
