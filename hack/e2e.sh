#!/usr/bin/env bash
# make e2e: a kind cluster with Cilium (kube-proxy replacement, local redirect
# policies, Hubble Relay), our images and manifests, then the Go suite in e2e/
# and `lrpdns verify` against the Relay. Needs a Docker engine; without one it
# says so and runs the lab (make e2e-lab) instead.
#   KEEP=1 make e2e     # keep the cluster afterwards
#   LAB_PROFILE=per-packet make e2e   # Cilium's profile, as in make e2e-lab
set -o errexit -o nounset -o pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

if ! docker info >/dev/null 2>&1; then
  echo "e2e: no Docker engine answers 'docker info', so kind cannot run here; running the lab instead" >&2
  exec hack/e2e-lab.sh
fi

KIND_VERSION=v0.33.0
# kind v0.33.0's default node image, pinned by digest.
KIND_NODE_IMAGE=kindest/node:v1.37.0@sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5
CLUSTER=lrpdns-e2e
LAB_PROFILE=${LAB_PROFILE:-default}
go mod download github.com/cilium/cilium
CHART=$(go list -m -f '{{.Dir}}' github.com/cilium/cilium)/install/kubernetes/cilium
ARTIFACTS=${ARTIFACTS:-$REPO_ROOT/_artifacts/e2e-$(date +%Y%m%d-%H%M%S)}
IMAGE_REPO=localhost/lrpdns
IMAGE_TAG=e2e
mkdir -p "$ARTIFACTS"

install_tool() { # name module@version
  [[ -x "$BIN/$1-${2##*@}" ]] && return
  GOBIN="$BIN/.tools" go install "$2"
  mv "$BIN/.tools/$1" "$BIN/$1-${2##*@}"
}
install_tool kind "sigs.k8s.io/kind@$KIND_VERSION"
KIND="$BIN/kind-$KIND_VERSION" HELM=$(hack/helm-bin.sh)
KUBECTL="$(hack/k8s-bins.sh --kubectl)/kubectl"
HUBBLE="$(hack/cilium-bins.sh)/hubble"
export KUBECONFIG="$ARTIFACTS/kubeconfig"
k() { "$KUBECTL" "$@"; }

pf_pid=""
cleanup() {
  rc=$?
  if [[ -n "$pf_pid" ]]; then kill "$pf_pid" 2>/dev/null || true; fi
  if [[ $rc -ne 0 ]]; then
    echo "e2e: failed; saving logs and flows to $ARTIFACTS" >&2
    k get all,ciliumlocalredirectpolicies,events -A -o wide > "$ARTIFACTS/cluster.txt" 2>&1 || true
    for sel in k8s-app=node-local-dns app.kubernetes.io/name=lrpdns-controller k8s-app=kube-dns k8s-app=cilium; do
      k -n kube-system logs -l "$sel" --all-containers --prefix --tail=-1 > "$ARTIFACTS/logs-${sel//[=\/]/_}.txt" 2>&1 || true
    done
    "$KIND" export logs "$ARTIFACTS/kind" --name "$CLUSTER" >/dev/null 2>&1 || true
  fi
  if [[ -z "${KEEP:-}" ]]; then "$KIND" delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true; fi
  exit $rc
}
trap cleanup EXIT

# A profile that enables IPv6 (dual-stack) needs a dual-stack cluster.
DUAL_STACK=
if "$HELM" template cilium "$CHART" --namespace kube-system \
  -f e2e/cilium/values.yaml -f "e2e/cilium/profiles/$LAB_PROFILE.yaml" \
  --show-only templates/cilium-configmap.yaml | grep -q '^  enable-ipv6: "true"$'; then DUAL_STACK=1; fi
kind_config="$ARTIFACTS/kind.yaml"
if [[ -n "$DUAL_STACK" ]]; then
  sed 's/^networking:$/networking:\n  ipFamily: dual/' e2e/kind.yaml > "$kind_config"
else
  cp e2e/kind.yaml "$kind_config"
fi

"$KIND" delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
"$KIND" create cluster --name "$CLUSTER" --image "$KIND_NODE_IMAGE" --config "$kind_config" --kubeconfig "$KUBECONFIG"

# Cilium's settings are the lab's: e2e/cilium/values.yaml and the profile.
"$HELM" install cilium "$CHART" --namespace kube-system \
  -f e2e/cilium/values.yaml -f "e2e/cilium/profiles/$LAB_PROFILE.yaml" \
  --set k8sServiceHost="$CLUSTER-control-plane" --set k8sServicePort=6443
k -n kube-system rollout status ds/cilium --timeout=10m
k -n kube-system rollout status deploy/hubble-relay --timeout=5m
k -n kube-system rollout status deploy/coredns --timeout=5m
if [[ -n "$DUAL_STACK" ]]; then
  # kubeadm leaves kube-dns single-stack: ask for both families, as a
  # dual-stack cluster that wants DNS over IPv6 does.
  k -n kube-system patch service kube-dns -p '{"spec":{"ipFamilyPolicy":"PreferDualStack"}}'
fi

IMAGE_REPO=$IMAGE_REPO IMAGE_TAG=$IMAGE_TAG hack/image.sh
for img in node-cache lrpdns; do "$KIND" load docker-image "$IMAGE_REPO/$img:$IMAGE_TAG" --name "$CLUSTER"; done

# The shipped manifests, unchanged but for the image references.
overlay="$ARTIFACTS/overlay"
mkdir -p "$overlay"
cat > "$overlay/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(realpath --relative-to="$overlay" "$REPO_ROOT/manifests")
images:
  - {name: ghcr.io/lrpdns/node-cache, newName: $IMAGE_REPO/node-cache, newTag: $IMAGE_TAG}
  - {name: ghcr.io/lrpdns/lrpdns, newName: $IMAGE_REPO/lrpdns, newTag: $IMAGE_TAG}
YAML
k apply -k "$overlay"
k -n kube-system rollout status ds/node-local-dns --timeout=5m
k -n kube-system rollout status deploy/lrpdns-controller --timeout=5m

hack/build.sh >/dev/null # bin/lrpdns: the suite runs docs/verify.md's commands with it
k -n kube-system port-forward svc/hubble-relay 4245:80 > "$ARTIFACTS/port-forward.log" 2>&1 &
pf_pid=$!
for _ in $(seq 30); do (exec 3<>/dev/tcp/127.0.0.1/4245) 2>/dev/null && break; sleep 1; done
(exec 3<>/dev/tcp/127.0.0.1/4245) 2>/dev/null || { echo "e2e: the port-forward to hubble-relay did not open in 30s" >&2; exit 1; }

LRPDNS_E2E_KUBECONFIG="$KUBECONFIG" LRPDNS_E2E_HUBBLE=localhost:4245 LRPDNS_E2E_KUBECTL="$KUBECTL" \
LRPDNS_E2E_IMAGE="$IMAGE_REPO/lrpdns:$IMAGE_TAG" LRPDNS_E2E_ARTIFACTS="$ARTIFACTS" LRPDNS_E2E_KUSTOMIZATION="$overlay" \
LRPDNS_E2E_PATH="$BIN:$(dirname "$HUBBLE")" LRPDNS_E2E_DUAL_STACK="$DUAL_STACK" \
  go test -tags e2e -count=1 -v -timeout 30m ./e2e/

# The suite logged `lrpdns verify` while the path was up; these are the last
# DNS flows, after the uninstall (clients now reach kube-dns).
"$HUBBLE" observe --server localhost:4245 --port 53 --last 20 || true
