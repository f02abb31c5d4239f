#!/usr/bin/env bash
# Fails when something generated or tidy drifted from what is committed.
# Like kind's hack/make-rules/verify/generated.sh, it regenerates in a copy of
# the tree and compares: the work tree is never rewritten.
set -o errexit -o nounset -o pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
fail=0
drift() { echo "verify: $1 drifted; run: $2" >&2; fail=1; }

copy=$(mktemp -d)
trap 'rm -rf "$copy"' EXIT
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$copy"
(
  cd "$copy"
  export LRPDNS_BIN="$BIN" # tools already installed in the work tree's bin/
  go mod tidy
  hack/generate.sh
)
for f in go.mod go.sum; do
  diff -q "$f" "$copy/$f" >/dev/null || drift "$f" "go mod tidy"
done
diff -r manifests "$copy/manifests" || drift "generated manifests" "make generate"

mapfile -t gofiles < <(git ls-files '*.go')
unformatted=$(gofmt -l "${gofiles[@]}")
[[ -z "$unformatted" ]] || drift "formatting of $unformatted" "gofmt -w"

go vet ./...
go vet -tags e2e ./...
hack/shellcheck.sh || fail=1
hack/lint.sh
exit $fail
