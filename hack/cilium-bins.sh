#!/usr/bin/env bash
# Builds Cilium's binaries from the cilium module at the version go.mod pins
# (or another release: hack/cilium-bins.sh v1.18.11), into the cache outside
# the clone, one directory per version, and prints the directory: what the
# agent image holds (cilium-agent, cilium-dbg, cilium-health and its
# responder, cilium-bugtool, cilium-mount, cilium-sysctlfix, cilium-cni,
# hubble), cilium-operator-generic and hubble-relay, with the version
# stamped as Cilium's Makefile stamps it and the same build tags. The lab
# runs them; make e2e puts them in images; nothing here downloads a release.
set -o errexit -o nounset -o pipefail
source "$(dirname "$0")/lib.sh"
CILIUM_VERSION=${1:-$(cd "$REPO_ROOT" && go list -m -f '{{.Version}}' github.com/cilium/cilium)}
out="$LRPDNS_CACHE/cilium-$CILIUM_VERSION"
# PACKAGE:BINARY[:EXTRA TAGS]
builds=(daemon:cilium-agent cilium-dbg:cilium-dbg cilium-health:cilium-health
  cilium-health/responder:cilium-health-responder bugtool:cilium-bugtool tools/mount:cilium-mount
  tools/sysctlfix:cilium-sysctlfix plugins/cilium-cni:cilium-cni hubble:hubble hubble-relay:hubble-relay
  operator:cilium-operator-generic:ipam_provider_operator)
want=()
for p in "${builds[@]}"; do p=${p#*:}; want+=("${p%%:*}"); done
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
    # The operator's MCS-API controllers import one constant from
    # sigs.k8s.io/mcs-api/controllers, a module the proxy does not serve
    # (403): a module of that one constant, with the value upstream gives it,
    # stands in.
    if grep -q 'sigs.k8s.io/mcs-api/controllers' "$cilium_mod"; then
      echo 'replace sigs.k8s.io/mcs-api/controllers => ./mcs-api-controllers'
    fi
  } > "$work/go.mod"
  mkdir -p "$work/mcs-api-controllers"
  printf 'module sigs.k8s.io/mcs-api/controllers\n\ngo 1.24\n' > "$work/mcs-api-controllers/go.mod"
  cat > "$work/mcs-api-controllers/controllers.go" <<'GO'
// Package controllers stands in for sigs.k8s.io/mcs-api/controllers, which
// the Go module proxy does not serve, with the one name Cilium uses.
package controllers

// DerivedServiceAnnotation is set on a ServiceImport to reference the
// derived Service that represents the imported service.
const DerivedServiceAnnotation = "multicluster.kubernetes.io/derived-service"
GO
  cat > "$work/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "github.com/cilium/cilium/bugtool"
	_ "github.com/cilium/cilium/cilium-dbg"
	_ "github.com/cilium/cilium/cilium-health"
	_ "github.com/cilium/cilium/cilium-health/responder"
	_ "github.com/cilium/cilium/daemon"
	_ "github.com/cilium/cilium/hubble"
	_ "github.com/cilium/cilium/hubble-relay"
	_ "github.com/cilium/cilium/operator"
	_ "github.com/cilium/cilium/plugins/cilium-cni"
	_ "github.com/cilium/cilium/tools/mount"
	_ "github.com/cilium/cilium/tools/sysctlfix"
)
GO
  echo "cilium-bins: building cilium $CILIUM_VERSION (10 to 17 minutes cold on 2 cores)" >&2
  cd "$work"
  export GOFLAGS=-mod=mod GOCACHE=${LRPDNS_GOCACHE:-$LRPDNS_CACHE/gocache}
  tidied=$(cat go.mod tools.go | sha256sum | cut -c1-16)
  if [[ "$(cat .tidied 2>/dev/null)" != "$tidied" ]]; then go mod tidy -e >&2 && echo "$tidied" > .tidied; fi
  ldflags="-s -w -X 'github.com/cilium/cilium/pkg/version.ciliumVersion=${CILIUM_VERSION#v} module-proxy'"
  for p in "${builds[@]}"; do
    pkg=${p%%:*} rest=${p#*:}
    bin=${rest%%:*} tags=osusergo
    if [[ "$rest" == *:* ]]; then tags+=",${rest#*:}"; fi
    [[ -x "$out/$bin" ]] && continue
    echo "cilium-bins: building $bin" >&2
    CGO_ENABLED=0 go build -trimpath -tags "$tags" -ldflags "$ldflags" -o "$out/$bin.tmp" "github.com/cilium/cilium/$pkg"
    mv "$out/$bin.tmp" "$out/$bin"
  done
fi
echo "$out"
