#!/usr/bin/env bash
# Runs golangci-lint v2, installed into bin/ from the module proxy.
set -o errexit -o nounset -o pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
lint="$BIN/golangci-lint-$GOLANGCI_LINT_VERSION"
if [[ ! -x "$lint" ]]; then
  GOBIN="$BIN/.golangci" go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$GOLANGCI_LINT_VERSION"
  mv "$BIN/.golangci/golangci-lint" "$lint"
fi
# The e2e tag also lints the kind/lab suite, which only compiles with it.
"$lint" run --build-tags e2e ./...
