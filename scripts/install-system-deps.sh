#!/usr/bin/env bash
# Install the Debian packages the interop tests and benchmarks use (real peers, lab hosts).
#
# Runs only as root; elsewhere it says what it skipped. Packages whose services start on
# install (kamailio, coturn, rtpengine, unbound, redis, radvd) are installed with a
# policy-rc.d that forbids starting them: the tests start their own instances.
set -euo pipefail

PACKAGES=(
  iproute2 iputils-ping iptables nftables procps psmisc tcpdump tshark
  sip-tester baresip kamailio rtpengine-daemon coturn
  tayga unbound dnsutils radvd redis-server
  chromium openssl
)

if [ "$(id -u)" != 0 ]; then
  echo "install-system-deps: not root; skipping Debian packages (interop tests will skip)." >&2
  exit 0
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-system-deps: installing ${missing[*]}" >&2
policy=/usr/sbin/policy-rc.d
restore_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod +x "$policy"
  restore_policy=1
fi
cleanup() { if [ "$restore_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Services that were started anyway (no systemd in containers, but be sure) collide with tests.
for svc in kamailio coturn rtpengine-daemon unbound redis-server radvd; do
  service "$svc" stop >/dev/null 2>&1 || true
done
pkill -x kamailio >/dev/null 2>&1 || true
pkill -x turnserver >/dev/null 2>&1 || true
pkill -x rtpengine >/dev/null 2>&1 || true
pkill -x unbound >/dev/null 2>&1 || true
pkill -x redis-server >/dev/null 2>&1 || true
echo "install-system-deps: done" >&2
