#!/usr/bin/env bash
# Installs what the Mailward end-to-end tests need on a fresh Debian
# machine (run as root, or as a user who may `sudo`):
#
#   postfix            smtp-sink (the next hop) and smtp-source (load), and
#                      the Postfix relay bench/relay-bench.sh compares with
#   swaks              the SMTP client of the protocol tests
#   libnet-ssleay-perl lets `swaks --tls` speak STARTTLS (swaks only
#                      recommends it, and we install without recommends)
#   dnsmasq-base       a DNS server for DNSBL and MX test zones
#   openssl            makes the self-signed certificate of the TLS test
#   ca-certificates    for openssl and apt over https
#   prometheus         the server that scrapes Mailward in the dashboard
#                      test, and promtool (check metrics, check rules)
#   snmpd              net-snmp's agent: the AgentX master of the SNMP tests
#   snmptrapd          net-snmp's notification receiver (logs to a file)
#   snmp               snmpget, snmpwalk, snmpbulkwalk (the SNMP clients)
#   smitools           smilint, the MIB lint
#   zip                makes the password-protected zip of the scanning
#                      test (`zip -P`)
#   clamav-testfiles   the ClamAV project's harmless test samples (clam.exe
#                      packed and archived in many formats), sent through
#                      the scanner by the scanning test
#   python3-spf        ships the RFC 7208 SPF test suite (rfc7208-tests.yml.gz)
#   python3-dnslib     the DNS server that serves the suite's zone data
#   python3-yaml       reads the suite (for Debian's /usr/bin/python3)
#   python3-dkim       dkimpy's dknewkey and dkimsign: an independent DKIM
#                      signer for the DKIM/DMARC test
#   redis-server       the shared store of the spam classifier (two gateways
#                      on one Redis); its system service is disabled like
#                      Prometheus's, the tests start their own
#   rsyslog            the syslog daemon of the logging test (a private
#                      rsyslogd on its own socket and ports; the system
#                      service is not started)
#   logrotate          rotates the log file in the logging test (create +
#                      postrotate `mailward log reopen`)
#   lintian            checks the Debian package (the package test)
#   systemd            systemd-analyze verify on the packaged unit (usually
#                      installed already; nothing is started)
#   adduser            the package's dependency (its postinst makes the
#                      mailward user), so the package test's dpkg -i
#                      finds it (Debian images usually have it)
#   miltertest         opendkim's scripted milter MTA (Lua): drives a milter
#                      session against `mailward milter` in the milter test
#   npm                only when no `npm` is on PATH: fetches the IETF base
#                      MIBs (SNMPv2-SMI/TC/CONF), which Debian's free
#                      packages lack, from the npm registry's net-snmp
#                      package into target/mibs-base/ (tests/fetch-base-mibs.sh,
#                      run as the calling user, once)
#
# Nothing here starts a service: Postfix is installed with "No
# configuration" (no main.cf, nothing runs), dnsmasq-base has no service,
# and a policy-rc.d forbids service starts while apt runs. Debian's
# prometheus, redis-server and rsyslog enable system services: they are disabled (and
# stopped, should something have started them), so they never hold ports
# 9090 and 6379. The tests start
# their own private instances on loopback ports.
#
# Reruns are fast: when every package is installed already, apt is skipped.
set -euo pipefail

packages=(postfix swaks libnet-ssleay-perl dnsmasq-base openssl ca-certificates prometheus
    snmpd snmptrapd snmp smitools zip clamav-testfiles python3-spf python3-dnslib python3-yaml
    python3-dkim redis-server rsyslog logrotate lintian systemd adduser miltertest)
command -v npm >/dev/null 2>&1 || packages+=(npm)

# The base MIBs go below the workspace's target/, owned by whoever runs the
# tests (not root when we were re-run under sudo).
base_mibs() {
    local script
    script="$(dirname "$0")/fetch-base-mibs.sh"
    if [ "$(id -u)" -eq 0 ] && [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
        sudo -u "$SUDO_USER" --preserve-env=CARGO_TARGET_DIR,MAILWARD_NET_SNMP_NPM "$script"
    else
        "$script"
    fi
}

# cargo-deb packs the Debian package (packaging/build-deb.sh, the package
# test): a cargo subcommand from crates.io, pinned to a release that builds
# on this toolchain, installed for whoever runs the tests (about 90 s, once).
cargo_deb() {
    local cmd="cargo deb --version >/dev/null 2>&1 || cargo install cargo-deb --version 3.8.0 --locked"
    if [ "$(id -u)" -eq 0 ] && [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
        sudo -u "$SUDO_USER" -i bash -c "$cmd"
    else
        bash -c "$cmd"
    fi
}

missing=()
for pkg in "${packages[@]}"; do
    if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]; then
        missing+=("$pkg")
    fi
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-deps: all test packages are installed (${packages[*]})"
    base_mibs
    cargo_deb
    exit 0
fi
echo "install-deps: installing ${missing[*]}"

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo --preserve-env=DEBIAN_FRONTEND,CARGO_TARGET_DIR,MAILWARD_NET_SNMP_NPM "$0" "$@"
    fi
    echo "install-deps: must run as root to install ${missing[*]}" >&2
    exit 1
fi

# Forbid service starts during the installation (invoke-rc.d and
# deb-systemd-invoke honour this), unless the machine has its own policy.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# Written by Mailward tests/install-deps.sh while apt runs.\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get install -y --no-install-recommends "${packages[@]}"
for service in prometheus redis-server rsyslog; do
    if command -v systemctl >/dev/null 2>&1 && [ -e "/lib/systemd/system/$service.service" ]; then
        systemctl disable "$service" >/dev/null 2>&1 || true
        if [ -d /run/systemd/system ]; then
            systemctl stop "$service" >/dev/null 2>&1 || true
        fi
    fi
done
base_mibs
cargo_deb
echo "install-deps: done"
