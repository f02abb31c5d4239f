#!/usr/bin/env bash
# make e2e: the proof on real Kubernetes. A kind cluster (a control plane and
# two workers, kubelet and kubeadm at the Kubernetes version we pin), Cilium
# installed with its own Helm chart and the profile's values (kube-proxy
# replacement, local redirect policies, Hubble Relay), lrpdns from its two
# images and manifests/ as users apply them, then the Go suite in e2e/.
#
# A Docker engine: the one DOCKER_HOST names, or, as root where none
# answers, Debian's docker.io started in a network namespace of its own
# (hack/docker.sh): kind's network, published ports and NAT live there, and
# so do kubectl, helm, port-forwards and the suite; the root network
# namespace is left as it was found (checked at the end: ip -o link and
# iptables-save before and after).
#
# Images: every one is built here, cached by content outside the clone
# (hack/kind-node-image.sh, hack/cilium-images.sh, hack/image.sh with the
# Dockerfile users build, hack/rootfs.sh for the suite's resolver-library
# clients), so a warm run builds only what changed. LRPDNS_E2E_PULL=1 takes
# kind's and Cilium's public images and the public base images instead, on a
# machine that reaches their registries; the suite and our images are the
# same either way.
#
#   KEEP=1 make e2e                   # keep the cluster and dockerd afterwards
#   LAB_PROFILE=per-packet make e2e   # Cilium's profile (e2e/cilium/profiles)
#   E2E_RUN='TestE2E/rollout' make e2e   # a part of the suite (go test -run)
set -o errexit -o nounset -o pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

CLUSTER=lrpdns-e2e
LAB_PROFILE=${LAB_PROFILE:-default}
E2E_RUN=${E2E_RUN:-^TestE2E$}
PULL=${LRPDNS_E2E_PULL:-}
ARTIFACTS=${ARTIFACTS:-$REPO_ROOT/_artifacts/e2e-kind/$LAB_PROFILE}
log() { echo "e2e: $*" >&2; }
fail() { log "$*"; exit 1; }
if [[ ! -f "e2e/cilium/profiles/$LAB_PROFILE.yaml" ]]; then
  names=(e2e/cilium/profiles/*.yaml); names=("${names[@]##*/}")
  fail "LAB_PROFILE=$LAB_PROFILE: want one of: ${names[*]%.yaml}"
fi
[[ "$(uname -s)" == Linux ]] || fail "make e2e runs on Linux (kind nodes are containers of this kernel)"
rm -rf "$ARTIFACTS"; mkdir -p "$ARTIFACTS"
start_time=$SECONDS

# The root network namespace as found: what must be the same at the end.
snapshot() { { ip -o link | sed -E 's/^[0-9]+: //; s/ qlen [0-9]+//' | awk '{print $1, $2}'; iptables-save 2>/dev/null | sed -E '/^#/d; s/\[[0-9]+:[0-9]+\]//'; } | sort; }
OWN_DOCKER=""
if ! docker info >/dev/null 2>&1; then
  [[ $EUID -eq 0 ]] || fail "no Docker engine answers 'docker info' and this is not root: set DOCKER_HOST, or run as root so that hack/docker.sh starts one"
  snapshot > "$ARTIFACTS/root-netns-before.txt"
  eval "$(hack/docker.sh up)"
  export DOCKER_HOST
  OWN_DOCKER=$DOCKER_NETNS
fi
# innet runs a command where kind's network is: in dockerd's namespace when
# this script started it.
innet() { if [[ -n "$OWN_DOCKER" ]]; then nsenter --net="/run/netns/$OWN_DOCKER" "$@"; else "$@"; fi; }
# bg starts a command where innet would, in the background, with $! its own
# pid (nsenter execs it), so that kill reaches it.
bg() { if [[ -n "$OWN_DOCKER" ]]; then nsenter --net="/run/netns/$OWN_DOCKER" "$@" & else "$@" & fi; }

KIND=$BIN/kind-$KIND_VERSION
if [[ ! -x "$KIND" ]]; then
  GOBIN="$BIN/.tools" CGO_ENABLED=0 go install "sigs.k8s.io/kind@$KIND_VERSION"
  mv "$BIN/.tools/kind" "$KIND"
fi
HELM=$(hack/helm-bin.sh)
K8S=$(hack/k8s-bins.sh --kubectl)
CILIUM_VERSION=$(go list -m -f '{{.Version}}' github.com/cilium/cilium)
CILIUM_BIN=$(hack/cilium-bins.sh "$CILIUM_VERSION")
CILIUM_SRC=$(GOFLAGS='' go mod download -json "github.com/cilium/cilium@$CILIUM_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
CHART=$CILIUM_SRC/install/kubernetes/cilium
export KUBECONFIG=$ARTIFACTS/kubeconfig
k() { innet "$K8S/kubectl" "$@"; }

# --- images ---
t0=$SECONDS
cilium_values=()
if [[ -n "$PULL" ]]; then
  NODE_IMAGE=""  # kind's default for its release
  NODE_CLIENT_IMAGE=docker.io/library/node:20-bookworm-slim
  GLIBC_CLIENT_IMAGE=docker.io/library/debian:bookworm-slim
  client_images=()
else
  mapfile -t cilium_images < <(hack/cilium-images.sh "$CILIUM_VERSION")
  # Cilium's images go into the node image, as kubeadm's do: a warm run
  # loads nothing that large into the nodes.
  NODE_IMAGE=$(EXTRA_IMAGES="${cilium_images[*]}" hack/kind-node-image.sh)
  repo_of() { echo "${1%:*}"; }
  cilium_values=(--set "image.repository=$(repo_of "${cilium_images[0]}")" --set "image.tag=$CILIUM_VERSION" --set image.useDigest=false --set image.pullPolicy=Never
    --set "operator.image.repository=$(repo_of "${cilium_images[1]}" | sed 's/-generic$//')" --set "operator.image.tag=$CILIUM_VERSION" --set operator.image.useDigest=false --set operator.image.pullPolicy=Never
    --set "hubble.relay.image.repository=$(repo_of "${cilium_images[2]}")" --set "hubble.relay.image.tag=$CILIUM_VERSION" --set hubble.relay.image.useDigest=false --set hubble.relay.image.pullPolicy=Never)
  # The suite's resolver-library clients: Debian alone (glibc's getent),
  # and Debian with this machine's Node.js (c-ares), the one the lab runs.
  NODE_CLIENT_IMAGE=lrpdns.local/node-client:bookworm
  GLIBC_CLIENT_IMAGE=lrpdns.local/debian:bookworm
  nodejs=$(command -v node || true)
  [[ -n "$nodejs" ]] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs >/dev/null; nodejs=$(command -v node); }
  tarball=$(hack/rootfs.sh "")
  for ref in "$GLIBC_CLIENT_IMAGE" "$NODE_CLIENT_IMAGE"; do
    key=$(basename "$tarball")
    if [[ "$ref" == "$NODE_CLIENT_IMAGE" ]]; then key+="-$(sha256sum < "$nodejs" | cut -c1-12)"; fi
    [[ "$(docker image inspect -f '{{index .Config.Labels "lrpdns.local/key"}}' "$ref" 2>/dev/null)" == "$key" ]] && continue
    dir=$(mktemp -d)
    tar -C "$dir" -xf "$tarball"
    if [[ "$ref" == "$NODE_CLIENT_IMAGE" ]]; then install -m 0755 "$nodejs" "$dir/usr/local/bin/node"; fi
    tar --sort=name --numeric-owner -C "$dir" -c . | docker import --change "LABEL lrpdns.local/key=$key" - "$ref" >/dev/null
    rm -rf "$dir"
  done
  client_images=("$NODE_CLIENT_IMAGE" "$GLIBC_CLIENT_IMAGE")
fi
# Ours, from the Dockerfile (make image).
IMAGE_REPO=localhost/lrpdns IMAGE_TAG=e2e-$VERSION
IMAGE_REPO=$IMAGE_REPO IMAGE_TAG=$IMAGE_TAG hack/image.sh
log "images ready in $((SECONDS - t0))s"

# --- cluster ---
pf_pid="" resolver_pid=""
cleanup() {
  rc=$?
  set +o errexit
  if [[ -n "$pf_pid" ]]; then kill "$pf_pid" 2>/dev/null; fi
  if [[ $rc -ne 0 && -f "$KUBECONFIG" ]]; then
    log "failed; saving the cluster's state and logs to $ARTIFACTS"
    k get all,ciliumlocalredirectpolicies,events -A -o wide > "$ARTIFACTS/cluster.txt" 2>&1
    innet "$KIND" export logs "$ARTIFACTS/kind" --name "$CLUSTER" >/dev/null 2>&1
  fi
  if [[ -z "${KEEP:-}" ]]; then
    innet "$KIND" delete cluster --name "$CLUSTER" >/dev/null 2>&1
    if [[ -n "$resolver_pid" ]]; then kill "$resolver_pid" 2>/dev/null; fi
    if [[ -n "$OWN_DOCKER" ]]; then
      hack/docker.sh down
      snapshot > "$ARTIFACTS/root-netns-after.txt"
      if ! diff -u "$ARTIFACTS/root-netns-before.txt" "$ARTIFACTS/root-netns-after.txt" >&2; then
        log "the root network namespace changed (ip -o link, iptables-save: diff above)"
        rc=1
      else
        log "the root network namespace is as it was found (ip -o link, iptables-save)"
      fi
    fi
  else
    log "KEEP=1: cluster $CLUSTER kept; KUBECONFIG=$KUBECONFIG${OWN_DOCKER:+, reach it with nsenter --net=/run/netns/$OWN_DOCKER; DOCKER_HOST=$DOCKER_HOST}"
  fi
  log "done in $((SECONDS - start_time))s, exit $rc"
  exit $rc
}
trap cleanup EXIT

# The node's resolver, where this script runs dockerd: the dockerd's --dns
# (hack/docker.sh), in its namespace (e2e/noderesolver): names in
# example.com get answers that spell them, cluster names are refused, so a
# cluster name sent the wrong way fails; anything else is NXDOMAIN.
NODE_RESOLVER_ANSWER=""
if [[ -n "$OWN_DOCKER" ]]; then
  CGO_ENABLED=0 go build -o "$BIN/lab-node" ./e2e/lab/cmd/lab-node
  resolver_addr=$(hack/docker.sh dns)
  # One resolver: a kept run's (KEEP=1) goes first.
  pidfile=/run/$OWN_DOCKER/resolver.pid
  if [[ -f "$pidfile" ]]; then kill "$(cat "$pidfile")" 2>/dev/null || true; sleep 1; fi
  bg "$BIN/lab-node" resolver --listen "$resolver_addr:53" --zone example.com --answer 198.51.100.53 --refuse cluster.local > "$ARTIFACTS/resolver.log" 2>&1
  resolver_pid=$!
  echo "$resolver_pid" > "$pidfile"
  sleep 1
  kill -0 "$resolver_pid" 2>/dev/null || fail "the node resolver did not start: $(cat "$ARTIFACTS/resolver.log")"
  NODE_RESOLVER_ANSWER=198.51.100.53
fi

# A profile that enables IPv6 (dual-stack) needs a dual-stack cluster.
profile=(-f e2e/cilium/values.yaml -f "e2e/cilium/profiles/$LAB_PROFILE.yaml")
DUAL_STACK=""
if "$HELM" template cilium "$CHART" --namespace kube-system "${profile[@]}" \
  --show-only templates/cilium-configmap.yaml | grep -q '^  enable-ipv6: "true"$'; then DUAL_STACK=1; fi
kind_config=$ARTIFACTS/kind.yaml
if [[ -n "$DUAL_STACK" ]]; then
  sed 's/^networking:$/networking:\n  ipFamily: dual/' e2e/kind.yaml > "$kind_config"
else
  cp e2e/kind.yaml "$kind_config"
fi
if [[ -z "$PULL" ]]; then
  # The node image built here holds CoreDNS at the go.mod pin, not kubeadm's.
  sed -i "s|^kubeadmConfigPatches:\$|&\n  - \|\n    kind: ClusterConfiguration\n    dns:\n      imageRepository: registry.k8s.io/coredns\n      imageTag: $COREDNS_VERSION|" "$kind_config"
fi
t0=$SECONDS
innet "$KIND" delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
innet "$KIND" create cluster --name "$CLUSTER" ${NODE_IMAGE:+--image "$NODE_IMAGE"} --config "$kind_config" --kubeconfig "$KUBECONFIG"
log "kind cluster created in $((SECONDS - t0))s"
t0=$SECONDS
if [[ ${#client_images[@]} -gt 0 ]]; then
  for img in "${client_images[@]}"; do innet "$KIND" load docker-image "$img" --name "$CLUSTER" >/dev/null; done
fi
for img in node-cache lrpdns; do innet "$KIND" load docker-image "$IMAGE_REPO/$img:$IMAGE_TAG" --name "$CLUSTER" >/dev/null; done
log "images loaded into the nodes in $((SECONDS - t0))s"

# Cilium with its own chart, the profile's values, and (when built here)
# the local images.
t0=$SECONDS
innet "$HELM" install cilium "$CHART" --namespace kube-system "${profile[@]}" -f e2e/cilium/kind.yaml \
  --set k8sServiceHost="$CLUSTER-control-plane" --set k8sServicePort=6443 "${cilium_values[@]}" >/dev/null
k -n kube-system rollout status ds/cilium --timeout=10m
k -n kube-system rollout status deploy/cilium-operator --timeout=5m
k -n kube-system rollout status deploy/hubble-relay --timeout=5m
k -n kube-system rollout status deploy/coredns --timeout=5m
log "Cilium $CILIUM_VERSION ($LAB_PROFILE) and CoreDNS ready in $((SECONDS - t0))s"
if [[ -n "$DUAL_STACK" ]]; then
  # kubeadm leaves kube-dns single-stack: ask for both families, as a
  # dual-stack cluster that wants DNS over IPv6 does.
  k -n kube-system patch service kube-dns -p '{"spec":{"ipFamilyPolicy":"PreferDualStack"}}'
fi
k apply -f e2e/lab/dns-visibility.yaml >/dev/null

# lrpdns: the shipped manifests, unchanged but for the image references.
overlay=$ARTIFACTS/overlay
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
k apply -k "$overlay" >/dev/null
k -n kube-system rollout status ds/node-local-dns --timeout=5m
k -n kube-system rollout status deploy/lrpdns-controller --timeout=5m

# The caches' node resolver: kind points the nodes' resolv.conf at the kind
# network's gateway (its entrypoint DNATs it to Docker's embedded DNS).
NODE_RESOLVERS=$(docker network inspect kind -f '{{range .IPAM.Config}}{{if .Gateway}}{{.Gateway}},{{end}}{{end}}' | sed 's/,$//')
hack/build.sh >/dev/null # bin/lrpdns: the suite runs docs/verify.md's commands with it
bg "$K8S/kubectl" -n kube-system port-forward svc/hubble-relay 4245:80 > "$ARTIFACTS/port-forward.log" 2>&1
pf_pid=$!
relay_open() { innet bash -c '(exec 3<>/dev/tcp/127.0.0.1/4245) 2>/dev/null'; }
for _ in $(seq 30); do relay_open && break; sleep 1; done
relay_open || fail "the port-forward to hubble-relay did not open in 30s"

log "the suite ($E2E_RUN), $((SECONDS - start_time))s after the start"
go test -c -tags e2e -o "$BIN/e2e.test" ./e2e/
(cd e2e && LRPDNS_E2E_KUBECONFIG="$KUBECONFIG" LRPDNS_E2E_HUBBLE=localhost:4245 LRPDNS_E2E_KUBECTL="$K8S/kubectl" \
  LRPDNS_E2E_IMAGE="$IMAGE_REPO/lrpdns:$IMAGE_TAG" LRPDNS_E2E_ARTIFACTS="$ARTIFACTS" LRPDNS_E2E_KUSTOMIZATION="$overlay" \
  LRPDNS_E2E_PATH="$BIN:$CILIUM_BIN" LRPDNS_E2E_DUAL_STACK="$DUAL_STACK" LRPDNS_E2E_EXTERNAL_ANSWER="$NODE_RESOLVER_ANSWER" \
  LRPDNS_E2E_NODE_CLIENT_IMAGE="$NODE_CLIENT_IMAGE" LRPDNS_E2E_GLIBC_CLIENT_IMAGE="$GLIBC_CLIENT_IMAGE" \
  LRPDNS_E2E_NODE_EXEC=docker LRPDNS_E2E_NODE_RESOLVERS="$NODE_RESOLVERS" \
  innet "$BIN/e2e.test" -test.v -test.count=1 -test.timeout=45m -test.run "$E2E_RUN") 2>&1 | tee "$ARTIFACTS/suite.log"
