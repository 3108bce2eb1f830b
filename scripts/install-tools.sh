#!/usr/bin/env bash
# Installs the command-line tools the tests use into .tools/bin at the
# module root (gitignored). Each tool has its own install function; a tool
# already present at the pinned version is left alone. Tests look there by
# default, e.g. transport's TestNatsCLIInterleaved for the nats CLI.
# Chromium, which the browser UI tests drive, is Debian's package at
# /usr/bin/chromium, installed with apt-get when we are root.
#
# Usage: scripts/install-tools.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/.tools/bin"

NATS_CLI_VERSION="0.5.1"

# install_nats_cli installs the NATS command-line client (nats).
install_nats_cli() {
	local tool="$bin/nats"
	local have=""
	if [[ -x "$tool" ]]; then
		have="$("$tool" --version 2>&1 || true)"
	fi
	if [[ "${have#v}" == "$NATS_CLI_VERSION" ]]; then
		echo "nats $NATS_CLI_VERSION already installed: $tool"
		return
	fi
	echo "installing nats $NATS_CLI_VERSION..."
	GOBIN="$bin" go install "github.com/nats-io/natscli/nats@v$NATS_CLI_VERSION"
	echo "nats $("$tool" --version 2>&1) installed: $tool"
}

# CHROMIUM_APT installs Debian's chromium with what it depends on and
# nothing more: the browser test runs it headless without a sandbox, so
# its recommended packages (udev, upower, printing, desktop and Perl
# helpers: most of what an install with them brings in) are left out;
# they are also what made apt upgrade systemd and perl on the way (a new
# udev needs the systemd libraries of its own version). --no-upgrade keeps an installed chromium
# as it is; packages already installed are upgraded only where a new
# package's dependencies demand it.
CHROMIUM_APT=(apt-get install -y --no-install-recommends --no-upgrade chromium)

# install_chromium installs Debian's chromium package (/usr/bin/chromium)
# for the browser tests (kv/kvhttp, tasks/taskshttp). It needs root;
# otherwise it says what to run, and the tests skip unless $CI is set.
install_chromium() {
	if [[ -x /usr/bin/chromium ]]; then
		echo "chromium already installed: /usr/bin/chromium"
		return
	fi
	if [[ "$(id -u)" != 0 ]]; then
		echo "install-tools: chromium is missing and we are not root: run 'apt-get update && ${CHROMIUM_APT[*]}' as root (the browser tests skip without it unless CI is set)" >&2
		return
	fi
	if ! command -v apt-get >/dev/null; then
		echo "install-tools: chromium is missing and apt-get is not available: install Chromium at /usr/bin/chromium" >&2
		return
	fi
	echo "installing chromium: ${CHROMIUM_APT[*]}"
	apt-get update
	DEBIAN_FRONTEND=noninteractive "${CHROMIUM_APT[@]}"
	echo "chromium installed: $(/usr/bin/chromium --version 2>/dev/null)"
}

main() {
	command -v go >/dev/null || { echo "install-tools: go is required" >&2; exit 1; }
	mkdir -p "$bin"
	install_nats_cli
	install_chromium
	echo "tools are in $bin"
}

main "$@"
