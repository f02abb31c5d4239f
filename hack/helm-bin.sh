#!/usr/bin/env bash
# Builds helm from the Go module proxy into the cache outside the clone and
# prints its path. The lab renders Cilium's chart with it; make e2e installs
# Cilium with it.
set -o errexit -o nounset -o pipefail
source "$(dirname "$0")/lib.sh"
out="$LRPDNS_CACHE/helm-$HELM_VERSION/helm"
if [[ ! -x "$out" ]]; then
  echo "helm-bin: building helm $HELM_VERSION" >&2
  mkdir -p "$(dirname "$out")"
  GOBIN="$(dirname "$out")/.gobin" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "helm.sh/helm/${HELM_VERSION%%.*}/cmd/helm@$HELM_VERSION"
  mv "$(dirname "$out")/.gobin/helm" "$out"
  rmdir "$(dirname "$out")/.gobin"
fi
echo "$out"
