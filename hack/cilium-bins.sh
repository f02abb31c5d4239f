#!/usr/bin/env bash
# Builds cilium-agent, cilium-cni, cilium-dbg, hubble and hubble-relay from the cilium
# module at the version go.mod pins (or another release: hack/cilium-bins.sh
# v1.18.11), into the cache outside the clone, one directory per version, and
# prints the directory. The lab runs them; nothing here downloads a release.
set -o errexit -o nounset -o pipefail
source "$(dirname "$0")/lib.sh"
CILIUM_VERSION=${1:-$(cd "$REPO_ROOT" && go list -m -f '{{.Version}}' github.com/cilium/cilium)}
out="$LRPDNS_CACHE/cilium-$CILIUM_VERSION"
want=(cilium-agent cilium-cni cilium-dbg hubble hubble-relay)
missing=0
for b in "${want[@]}"; do [[ -x "$out/$b" ]] || missing=1; done
if [[ $missing == 1 ]]; then
  work="$LRPDNS_CACHE/build/cilium-$CILIUM_VERSION"
  mkdir -p "$work" "$out"
  # A release builds with the replace lines of its own go.mod (cilium's
  # forks of controller-tools, gobgp and, in 1.18, apimachinery), which a
  # requiring module does not inherit. 1.20 pins a gobgp/v4 pseudo-version
  # the module proxy does not serve: the nearest release stands in.
  cilium_mod=$(cd "$work" && rm -f go.mod go.sum && GOFLAGS='' go mod download -json "github.com/cilium/cilium@$CILIUM_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  [[ -f "$cilium_mod" ]] || { echo "cilium-bins: the module proxy has no go.mod for github.com/cilium/cilium@$CILIUM_VERSION" >&2; exit 1; }
  {
    printf 'module lrpdns.local/ciliumbins\n\ngo 1.26.0\n\nrequire github.com/cilium/cilium %s\n\n' "$CILIUM_VERSION"
    # A fork the module proxy does not serve is left out: the module it
    # replaces is built at the version cilium requires.
    { grep -E '^replace ' "$cilium_mod" || true; } | while read -r _ from _ to ver; do
      if (cd / && GOFLAGS='' go mod download "$to@$ver" 2>/dev/null); then
        echo "replace $from => $to $ver"
      else
        echo "cilium-bins: the module proxy does not serve $to@$ver; $from is built unreplaced" >&2
      fi
    done
    if grep -q 'github.com/osrg/gobgp/v4' "$cilium_mod"; then
      echo 'replace github.com/osrg/gobgp/v4 => github.com/osrg/gobgp/v4 v4.8.0'
    fi
  } > "$work/go.mod"
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
