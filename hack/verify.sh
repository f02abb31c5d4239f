#!/usr/bin/env bash
# Fails when something generated or tidy drifted from what is committed.
set -o errexit -o nounset -o pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
fail=0
drift() { echo "verify: $1 drifted; run: $2" >&2; fail=1; }

cp go.mod /tmp/lrpdns-go.mod.$$; cp go.sum /tmp/lrpdns-go.sum.$$
go mod tidy
if ! diff -q go.mod /tmp/lrpdns-go.mod.$$ >/dev/null || ! diff -q go.sum /tmp/lrpdns-go.sum.$$ >/dev/null; then
  drift "go.mod/go.sum" "go mod tidy"
  cp /tmp/lrpdns-go.mod.$$ go.mod; cp /tmp/lrpdns-go.sum.$$ go.sum
fi
rm -f /tmp/lrpdns-go.mod.$$ /tmp/lrpdns-go.sum.$$

unformatted=$(gofmt -l $(git ls-files '*.go'))
[[ -z "$unformatted" ]] || drift "formatting of $unformatted" "gofmt -w"

if [[ -x hack/generate.sh ]]; then
  hack/generate.sh
  git diff --quiet -- manifests config 2>/dev/null || { git diff --stat -- manifests config; drift "generated manifests" "make generate"; }
fi

go vet ./...
go vet -tags e2e ./...
hack/lint.sh
exit $fail
