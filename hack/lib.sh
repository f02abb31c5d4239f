# Sourced by hack/ scripts: paths and pinned tool versions.
# shellcheck shell=bash
# shellcheck disable=SC2034 # used by the scripts that source this file
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${LRPDNS_BIN:-$REPO_ROOT/bin}
# Heavy, version-keyed binaries live outside the clone so fresh clones reuse them.
LRPDNS_CACHE=${LRPDNS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lrpdns}
GOLANGCI_LINT_VERSION=v2.15.0
HELM_VERSION=v4.3.2
KIND_VERSION=v0.33.0
COREDNS_VERSION=$(cd "$REPO_ROOT" && go list -m -f '{{.Version}}' github.com/coredns/coredns)
VERSION=${VERSION:-dev}
LDFLAGS="-s -w -X github.com/lrpdns/lrpdns/internal/version.Version=$VERSION"
export LRPDNS_CACHE
mkdir -p "$BIN" "$LRPDNS_CACHE"
