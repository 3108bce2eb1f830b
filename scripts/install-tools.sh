#!/usr/bin/env bash
# Installs the command-line tools the tests use into .tools/bin at the
# module root (gitignored). Each tool has its own install function; a tool
# already present at the pinned version is left alone. Tests look there by
# default, e.g. transport's TestNatsCLIInterleaved for the nats CLI.
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

main() {
	command -v go >/dev/null || { echo "install-tools: go is required" >&2; exit 1; }
	mkdir -p "$bin"
	install_nats_cli
	echo "tools are in $bin"
}

main "$@"
