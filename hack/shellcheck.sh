#!/usr/bin/env bash
# Runs shellcheck on every script under hack/, e2e/ and .ci/. Installs it from Debian's
# packages when missing and root.
set -o errexit -o nounset -o pipefail
cd "$(dirname "$0")/.."
if ! command -v shellcheck >/dev/null; then
  if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck; } >/dev/null
  else
    echo "shellcheck: not installed (apt-get install shellcheck)" >&2
    exit 1
  fi
fi
mapfile -t scripts < <(git ls-files 'hack/*.sh' 'hack/**/*.sh' 'e2e/**/*.sh' '.ci/run')
shellcheck --external-sources --source-path=hack "${scripts[@]}"
echo "shellcheck: ${#scripts[@]} scripts clean"
