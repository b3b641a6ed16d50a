#!/usr/bin/env bash
# Install the Debian packages the interop tests and benchmarks use (real peers, lab hosts).
#
# Runs only as root; elsewhere it says what it skipped. Packages whose services start on
# install (kamailio, coturn, rtpengine, unbound, redis, radvd) are installed with a
# policy-rc.d that forbids starting them: the tests start their own instances. It never
# kills processes by name: daemons a user runs are left alone.
set -euo pipefail

PACKAGES=(
  iproute2 iputils-ping iptables nftables procps psmisc tcpdump tshark sngrep
  sip-tester baresip kamailio kamailio-tls-modules rtpengine-daemon coturn
  tayga unbound dnsutils radvd redis-server
  chromium openssl kea-dhcp4-server
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
# The policy-rc.d above keeps the packages installed now from starting their services. If
# a policy-rc.d was already there and let them start, stop those system services through
# systemd (which stops the unit's own processes only). Never kill by process name: that
# would also end daemons a user runs. Init scripts may match their daemon by executable
# name when stopping, so without systemd a running service is reported, not stopped.
for svc in kamailio coturn rtpengine-daemon unbound redis-server radvd kea-dhcp4-server; do
  case " ${missing[*]} " in *" $svc "*) ;; *) continue ;; esac
  if [ -d /run/systemd/system ]; then
    if systemctl is-active --quiet "$svc.service"; then
      echo "install-system-deps: stopping the $svc service the install started" >&2
      systemctl stop "$svc.service" || true
    fi
  elif [ -x "/etc/init.d/$svc" ] && "/etc/init.d/$svc" status >/dev/null 2>&1; then
    echo "install-system-deps: the $svc service is running (left alone; stop it with" \
      "'service $svc stop' if its ports collide with the tests)" >&2
  fi
done
echo "install-system-deps: done" >&2
