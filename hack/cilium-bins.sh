#!/usr/bin/env bash
# Builds cilium-agent, cilium-cni, cilium-dbg, hubble and hubble-relay from the cilium
# module at the version go.mod pins, into the cache outside the clone, and
# prints the directory. The lab runs them; nothing here downloads a release.
set -o errexit -o nounset -o pipefail
source "$(dirname "$0")/lib.sh"
CILIUM_VERSION=$(cd "$REPO_ROOT" && go list -m -f '{{.Version}}' github.com/cilium/cilium)
out="$LRPDNS_CACHE/cilium-$CILIUM_VERSION"
want=(cilium-agent cilium-cni cilium-dbg hubble hubble-relay)
missing=0
for b in "${want[@]}"; do [[ -x "$out/$b" ]] || missing=1; done
if [[ $missing == 1 ]]; then
  work="$LRPDNS_CACHE/build/cilium-$CILIUM_VERSION"
  mkdir -p "$work" "$out"
  # The module proxy does not serve the gobgp pseudo-version cilium pins;
  # cilium builds with its own controller-tools fork.
  cat > "$work/go.mod" <<GO
module lrpdns.local/ciliumbins

go 1.26.0

require github.com/cilium/cilium $CILIUM_VERSION

replace sigs.k8s.io/controller-tools => github.com/cilium/controller-tools v0.21.0-1
replace github.com/osrg/gobgp/v4 => github.com/osrg/gobgp/v4 v4.8.0
GO
  cat > "$work/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "github.com/cilium/cilium/cilium-dbg"
	_ "github.com/cilium/cilium/daemon"
	_ "github.com/cilium/cilium/hubble"
	_ "github.com/cilium/cilium/hubble-relay"
	_ "github.com/cilium/cilium/plugins/cilium-cni"
)
GO
  echo "cilium-bins: building cilium $CILIUM_VERSION (10 to 17 minutes cold on 2 cores)" >&2
  cd "$work"
  export GOFLAGS=-mod=mod GOCACHE=${LRPDNS_GOCACHE:-$LRPDNS_CACHE/gocache}
  [[ -f go.sum ]] || go mod tidy >&2
  for p in daemon:cilium-agent cilium-dbg:cilium-dbg plugins/cilium-cni:cilium-cni hubble:hubble hubble-relay:hubble-relay; do
    pkg=${p%%:*} bin=${p##*:}
    [[ -x "$out/$bin" ]] && continue
    CGO_ENABLED=0 go build -trimpath -o "$out/$bin.tmp" "github.com/cilium/cilium/$pkg" && mv "$out/$bin.tmp" "$out/$bin"
  done
fi
echo "$out"
