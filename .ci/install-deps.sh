#!/usr/bin/env bash
# System packages the tests need: rsyslog (with its GnuTLS driver) for the
# syslog sink tests. Idempotent: installs only what is missing, and runs
# apt-get update at most once.
set -euo pipefail

packages=(rsyslog rsyslog-gnutls)
missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done

if ((${#missing[@]} == 0)); then
    exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update
$sudo apt-get install -y --no-install-recommends "${missing[@]}"
