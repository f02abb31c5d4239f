#!/usr/bin/env bash
# Builds kube-apiserver, etcd (and, for the lab, kube-controller-manager and
# kube-scheduler) from the Go module proxy into a per-version cache outside the
# clone, and prints the directory. envtest reads it as KUBEBUILDER_ASSETS.
#
#   hack/k8s-bins.sh            # kube-apiserver + etcd
#   hack/k8s-bins.sh --all      # also kube-controller-manager + kube-scheduler
#   hack/k8s-bins.sh --kubectl  # also kubectl
#   hack/k8s-bins.sh --node     # also kubelet and kubeadm (make e2e's kind node image)
set -o errexit -o nounset -o pipefail

K8S_VERSION=${K8S_VERSION:-v1.36.4}
STAGING_VERSION=${STAGING_VERSION:-v0.${K8S_VERSION#v1.}}
ETCD_VERSION=${ETCD_VERSION:-v3.6.8}
CACHE=${LRPDNS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lrpdns}
OUT="$CACHE/k8s-$K8S_VERSION"
WORK="$CACHE/build/k8s-$K8S_VERSION"
export GOCACHE=${LRPDNS_GOCACHE:-$CACHE/gocache}
export GOFLAGS=-mod=mod CGO_ENABLED=0

want=(kube-apiserver etcd)
for arg in "$@"; do
  case "$arg" in
    --all) want+=(kube-controller-manager kube-scheduler) ;;
    --kubectl) want+=(kubectl) ;;
    --node) want+=(kubelet kubeadm) ;;
    *) echo "k8s-bins: unknown argument $arg" >&2; exit 2 ;;
  esac
done

missing=()
for b in "${want[@]}"; do [[ -x "$OUT/$b" ]] || missing+=("$b"); done
if [[ ${#missing[@]} -eq 0 ]]; then echo "$OUT"; exit 0; fi

mkdir -p "$OUT" "$WORK/k8s" "$WORK/etcd"
log() { echo "k8s-bins: $*" >&2; }

# k8s.io/kubernetes is not meant to be required as a module: every staging
# module is pinned to v0.0.0 and replaced by a relative path. The wrapper
# replaces each with its published v0.x.
staging=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go
  cloud-provider cluster-bootstrap code-generator component-base component-helpers
  controller-manager cri-api cri-client cri-streaming csi-translation-lib
  dynamic-resource-allocation endpointslice externaljwt kms kube-aggregator
  kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
  mount-utils pod-security-admission sample-apiserver sample-cli-plugin
  sample-controller streaming)
{
  echo "module lrpdns.local/k8sbins"
  echo
  echo "go 1.26.0"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  for m in "${staging[@]}"; do echo "replace k8s.io/$m => k8s.io/$m $STAGING_VERSION"; done
} > "$WORK/k8s/go.mod"
cat > "$WORK/k8s/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubeadm"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO

cat > "$WORK/etcd/go.mod" <<GO
module lrpdns.local/etcdbin

go 1.26.0

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
GO
cat > "$WORK/etcd/main.go" <<'GO'
// Command etcd is etcd's own main, built from the module proxy.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO

minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
for b in "${missing[@]}"; do
  start=$SECONDS
  log "building $b (cold builds take minutes)"
  if [[ "$b" == etcd ]]; then
    (cd "$WORK/etcd" && go mod tidy >&2 && go build -trimpath -ldflags "-s -w" -o "$OUT/etcd.tmp" .)
  else
    # Tidy once per set of commands (tools.go).
    tidied=$(sha256sum "$WORK/k8s/tools.go" | cut -c1-16)
    if [[ "$(cat "$WORK/k8s/.tidied" 2>/dev/null)" != "$tidied" ]]; then
      (cd "$WORK/k8s" && go mod tidy -e >&2)
      echo "$tidied" > "$WORK/k8s/.tidied"
    fi
    (cd "$WORK/k8s" && go build -trimpath -ldflags "$ldflags" -o "$OUT/$b.tmp" "k8s.io/kubernetes/cmd/$b")
  fi
  mv "$OUT/$b.tmp" "$OUT/$b"
  log "built $b in $((SECONDS - start))s"
done
echo "$OUT"
