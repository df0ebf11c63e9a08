#!/usr/bin/env bash
# System packages the test suite uses: Debian's full Fashion-MNIST (IDX files),
# an OpenSSH server (the SSH device tests start their own on 127.0.0.1), and
# Maven with a JDK (the Android app is compiled against jars from Maven Central),
# Chromium (a test opens report.html headless), debootstrap and qemu-user-static
# (invoke device-sim: an emulated arm64 Raspberry Pi OS), and the Android build
# tools, framework resources, apksigner and dexdump (invoke android-apk), and
# PostgreSQL (a test starts its own server: the study of search workers on
# several machines), and the DejaVu and Liberation fonts (the letters example of
# benchmarks/examples.py).
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
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
command -v aapt >/dev/null || missing+=(android-sdk-build-tools)
command -v apksigner >/dev/null || missing+=(apksigner)
command -v dexdump >/dev/null || missing+=(dexdump)
[ -f /usr/share/android-framework-res/framework-res.apk ] || missing+=(android-framework-res)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
[ -d /usr/share/fonts/truetype/liberation ] || missing+=(fonts-liberation)
command -v espeak-ng >/dev/null || missing+=(espeak-ng)  # the keyword-spotting stand-in (benchmarks/tiny.py)
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "Please install: ${missing[*]}" >&2
  exit 0
fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
