#!/usr/bin/env bash
# Builds stock CoreDNS (all upstream plugins, coremain) at the version go.mod
# pins (or another: hack/coredns-bin.sh v1.14.2), into the cache outside the
# clone, and prints its path. The benchmark compares against it; the lab runs
# it as kube-dns; make e2e's kind node image carries the version kubeadm
# deploys.
set -o errexit -o nounset -o pipefail
source "$(dirname "$0")/lib.sh"
COREDNS_VERSION=${1:-$COREDNS_VERSION}
out="$LRPDNS_CACHE/coredns-$COREDNS_VERSION/coredns"
if [[ ! -x "$out" ]]; then
  work="$LRPDNS_CACHE/build/coredns-$COREDNS_VERSION"
  mkdir -p "$work"
  cat > "$work/go.mod" <<GO
module lrpdns.local/corednsbin

go 1.26.0

require github.com/coredns/coredns $COREDNS_VERSION
GO
  cat > "$work/tools.go" <<'GO'
//go:build tools

package tools

import _ "github.com/coredns/coredns"
GO
  echo "coredns-bin: building stock CoreDNS $COREDNS_VERSION" >&2
  (cd "$work" && GOFLAGS=-mod=mod go mod tidy >&2 && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$out.tmp" github.com/coredns/coredns)
  mv "$out.tmp" "$out"
fi
echo "$out"
