#!/usr/bin/env bash
# make e2e-lab: the end-to-end proof on a real Cilium agent with Hubble, on
# this Linux host, as root, without Docker. One node in network namespaces:
# etcd, kube-apiserver, kube-controller-manager and kube-scheduler (built from
# the Go module proxy), cilium-agent (kube-proxy replacement, local redirect
# policies, Hubble), and lab-node, a small kubelet that runs the pods of
# manifests/ (applied unchanged) as processes in their own network namespaces.
# Then the e2e suite runs against it, as it does against kind.
#
# Every address lives in namespaces the lab creates (10.99.0.0/24 node link,
# 10.96.0.0/16 services, 10.244.0.0/16 pods; with a profile that enables
# IPv6, also fd00:10:99::/64, fd00:10:96::/112 and fd00:10:244::/112);
# nothing is attached to the root network namespace; teardown kills by pid
# and removes only what it created.
#   KEEP=1 make e2e-lab   # leave the lab up (hack/e2e-lab.sh down removes it)
#   LAB_PROFILE=per-packet make e2e-lab   # Cilium's settings: the chart's
#     cilium-config rendered with e2e/cilium/values.yaml and
#     e2e/cilium/profiles/NAME.yaml, as make e2e installs it; default
#     "default" (the chart's defaults: socket load balancing in pods);
#     "dual-stack" adds IPv6 to the lab: node link, pods, Services, kube-dns
#   LAB_CLUSTER_DNS=169.254.20.10 make e2e-lab   # kubelets give pods that
#     resolver, as clusters set up for classic NodeLocal DNSCache do; lrpdns
#     installed with the link-local component redirects it to the cache
#   LAB_KUBE_DNS=rke2 make e2e-lab   # kube-dns as RKE2 names it (Service
#     rke2-coredns-rke2-coredns, ports udp-53/tcp-53), lrpdns installed with
#     the rke2 component; default kubeadm (kube-dns, dns/dns-tcp)
set -o errexit -o nounset -o pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

LAB=${LAB_DIR:-${TMPDIR:-/tmp}/lrpdns-lab}
NODE_NS=lrpdns-node EXT_NS=lrpdns-ext NODE=lrpdns-node
LAB_KUBE_DNS=${LAB_KUBE_DNS:-kubeadm}
case "$LAB_KUBE_DNS" in
  kubeadm) KUBE_DNS_SERVICE=kube-dns INSTALL=manifests ;;
  rke2) KUBE_DNS_SERVICE=rke2-coredns-rke2-coredns INSTALL=e2e/lab/install/rke2 ;;
  *) echo "e2e-lab: LAB_KUBE_DNS=$LAB_KUBE_DNS: want kubeadm or rke2" >&2; exit 2 ;;
esac
LAB_CLUSTER_DNS=${LAB_CLUSTER_DNS:-}
case "$LAB_CLUSTER_DNS" in
  "") CLUSTER_DNS=10.96.0.10 ;;
  169.254.20.10) CLUSTER_DNS=$LAB_CLUSTER_DNS ;;
  *) echo "e2e-lab: LAB_CLUSTER_DNS=$LAB_CLUSTER_DNS: want 169.254.20.10 (the link-local component's address) or nothing (kube-dns's ClusterIP)" >&2; exit 2 ;;
esac
LAB_PROFILE=${LAB_PROFILE:-default}
ARTIFACTS=${ARTIFACTS:-$REPO_ROOT/_artifacts/e2e-lab/$LAB_PROFILE}
PROFILES=e2e/cilium/profiles
if [[ ! -f "$PROFILES/$LAB_PROFILE.yaml" ]]; then
  names=("$PROFILES"/*.yaml); names=("${names[@]##*/}")
  echo "e2e-lab: LAB_PROFILE=$LAB_PROFILE: want one of: ${names[*]%.yaml}" >&2; exit 2
fi
log() { echo "e2e-lab: $*" >&2; }

cgroup_root() {
  if [[ "$(stat -fc %T /sys/fs/cgroup/unified 2>/dev/null)" == cgroup2fs ]]; then echo /sys/fs/cgroup/unified/lrpdns-lab
  elif [[ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" == cgroup2fs ]]; then echo /sys/fs/cgroup/lrpdns-lab
  fi
}
CGROUP=$(cgroup_root)

skip() { echo "e2e-lab: SKIP: $*"; exit 0; }
preflight() {
  [[ "$(uname -s)" == Linux ]] || skip "not Linux"
  [[ $EUID -eq 0 ]] || skip "not root (the lab creates network namespaces and loads BPF)"
  [[ -n "$CGROUP" ]] || skip "no cgroup v2 hierarchy"
  local t; t=$(mktemp -d)
  if ! mount -t bpf bpf "$t" 2>/dev/null; then rmdir "$t"; skip "BPF filesystem unavailable"; fi
  umount "$t"; rmdir "$t"
}

install_packages() {
  local need=()
  [[ -x /usr/lib/llvm-19/bin/clang ]] || need+=(clang-19 llvm-19)
  command -v iptables >/dev/null || need+=(iptables) # the agent's DNS proxy redirect
  command -v setpriv >/dev/null || need+=(util-linux)
  command -v openssl >/dev/null || need+=(openssl)
  command -v node >/dev/null || need+=(nodejs) # the e2e suite's Node.js client (c-ares)
  if [[ ${#need[@]} -gt 0 ]]; then
    log "installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
}

build() {
  local t0=$SECONDS
  hack/build.sh >&2
  K8S=$(hack/k8s-bins.sh --all --kubectl)
  CILIUM_BIN=$(hack/cilium-bins.sh)
  COREDNS=$(hack/coredns-bin.sh)
  HELM=$(hack/helm-bin.sh)
  CGO_ENABLED=0 go build -o "$BIN/lab-node" ./e2e/lab/cmd/lab-node
  CILIUM_SRC=$(go list -m -f '{{.Dir}}' github.com/cilium/cilium)
  CILIUM_VERSION=$(go list -m -f '{{.Version}}' github.com/cilium/cilium)
  log "binaries ready in $((SECONDS - t0))s"
}

# The API server listens in the node's network namespace only.
k() { nsenter --net="/run/netns/$NODE_NS" "$K8S/kubectl" --kubeconfig "$LAB/etc/kubeconfig" "$@"; }
start() { # name netns cmd...   (runs in the background, logs and pid in the lab)
  local name=$1 ns=$2; shift 2
  if [[ -n "$ns" ]]; then nsenter --net="/run/netns/$ns" "$@" > "$LAB/logs/$name.log" 2>&1 &
  else "$@" > "$LAB/logs/$name.log" 2>&1 &
  fi
  echo $! > "$LAB/pids/$name"
}
wait_for() { # seconds what cmd...
  local n=$1 what=$2; shift 2
  for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  log "timed out waiting for $what"; return 1
}

node_ready() { [[ "$(k get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]]; }
redirect_in_datapath() { "$CILIUM_BIN/cilium-dbg" -H "unix://$LAB/run/cilium.sock" service list | grep -q LocalRedirect; }

# render_config writes cilium-config as the chart renders it for this
# profile: for the cluster (the controller reads it) and as the agent's
# --config-dir. A profile with enable-ipv6 makes the lab dual-stack.
render_config() {
  "$HELM" template cilium "$CILIUM_SRC/install/kubernetes/cilium" --namespace kube-system \
    --kube-version "${K8S##*/k8s-}" \
    -f e2e/cilium/values.yaml -f "$PROFILES/$LAB_PROFILE.yaml" \
    --show-only templates/cilium-configmap.yaml > "$LAB/etc/cilium-config.yaml"
  "$BIN/lab-node" config-dir --configmap "$LAB/etc/cilium-config.yaml" --dir "$LAB/cilium-config"
  DUAL_STACK=
  if [[ "$(cat "$LAB/cilium-config/enable-ipv6")" == true ]]; then DUAL_STACK=1; fi
}

up() {
  local t0=$SECONDS
  mkdir -p "$LAB"/{run,lib,etc,pki,logs,pids,bpffs,etcd,node}
  render_config
  ip netns add "$NODE_NS"; ip netns add "$EXT_NS"
  ip -n "$NODE_NS" link add node0 type veth peer name ext0 netns "$EXT_NS"
  ip -n "$NODE_NS" addr add 10.99.0.2/24 dev node0; ip -n "$EXT_NS" addr add 10.99.0.1/24 dev ext0
  for ns in "$NODE_NS" "$EXT_NS"; do ip -n "$ns" link set lo up; done
  ip -n "$NODE_NS" link set node0 up; ip -n "$EXT_NS" link set ext0 up
  ip -n "$NODE_NS" route add default via 10.99.0.1
  ip -n "$EXT_NS" route add 10.244.0.0/16 via 10.99.0.2
  local service_range=10.96.0.0/16 pod_cidrs='"10.244.0.0/24"' node_addrs='{"type":"InternalIP","address":"10.99.0.2"}'
  if [[ -n "$DUAL_STACK" ]]; then
    ip -n "$NODE_NS" addr add fd00:10:99::2/64 dev node0 nodad; ip -n "$EXT_NS" addr add fd00:10:99::1/64 dev ext0 nodad
    ip -n "$NODE_NS" -6 route add default via fd00:10:99::1
    ip -n "$EXT_NS" -6 route add fd00:10:244::/56 via fd00:10:99::2
    service_range+=,fd00:10:96::/112 pod_cidrs+=',"fd00:10:244::/112"' node_addrs+=',{"type":"InternalIP","address":"fd00:10:99::2"}'
  fi
  mkdir -p "$CGROUP"
  mount -t bpf bpf "$LAB/bpffs"
  cp -r "$CILIUM_SRC/bpf" "$LAB/lib/bpf"; chmod -R u+w "$LAB/lib/bpf"
  openssl genrsa -out "$LAB/pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$LAB/pki/sa.key" -pubout -out "$LAB/pki/sa.pub" 2>/dev/null
  echo 'admintoken,admin,admin,system:masters' > "$LAB/pki/tokens.csv"
  cat > "$LAB/etc/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: lab, cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}}]
users: [{name: admin, user: {token: admintoken}}]
contexts: [{name: lab, context: {cluster: lab, user: admin}}]
current-context: lab
KC
  echo "nameserver 10.99.0.1" > "$LAB/etc/node-resolv.conf"
  start etcd "$NODE_NS" "$K8S/etcd" --data-dir "$LAB/etcd" --listen-client-urls http://127.0.0.1:2379 \
    --advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 \
    --initial-advertise-peer-urls http://127.0.0.1:2380 --initial-cluster default=http://127.0.0.1:2380
  start kube-apiserver "$NODE_NS" "$K8S/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 \
    --bind-address=0.0.0.0 --advertise-address=10.99.0.2 --secure-port=6443 --cert-dir="$LAB/pki/kas" \
    --token-auth-file="$LAB/pki/tokens.csv" --authorization-mode=Node,RBAC --allow-privileged=true \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$LAB/pki/sa.pub" --service-account-signing-key-file="$LAB/pki/sa.key" \
    --service-cluster-ip-range="$service_range" --enable-priority-and-fairness=false \
    --kubelet-preferred-address-types=InternalIP
  wait_for 120 kube-apiserver k get --raw /readyz
  log "kube-apiserver ready after $((SECONDS - t0))s"
  start kube-controller-manager "$NODE_NS" "$K8S/kube-controller-manager" --kubeconfig="$LAB/etc/kubeconfig" \
    --authentication-kubeconfig="$LAB/etc/kubeconfig" --authorization-kubeconfig="$LAB/etc/kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false --root-ca-file="$LAB/pki/kas/apiserver.crt" \
    --service-account-private-key-file="$LAB/pki/sa.key" --use-service-account-credentials=false
  start kube-scheduler "$NODE_NS" "$K8S/kube-scheduler" --kubeconfig="$LAB/etc/kubeconfig" \
    --authentication-kubeconfig="$LAB/etc/kubeconfig" --authorization-kubeconfig="$LAB/etc/kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false
  k apply --server-side -f "$CILIUM_SRC/pkg/k8s/apis/cilium.io/client/crds/v2/" -f "$CILIUM_SRC/pkg/k8s/apis/cilium.io/client/crds/v2alpha1/" >/dev/null
  k apply -f "$LAB/etc/cilium-config.yaml" >/dev/null
  # bpf-lb-sock says "false" with kube-proxy replacement, which turns socket
  # load balancing on anyway: say what the agent does.
  local cfg="$LAB/cilium-config" socklb="per packet (no socket LB)"
  if [[ "$(cat "$cfg/kube-proxy-replacement")" == true || "$(cat "$cfg/bpf-lb-sock" 2>/dev/null)" == true ]]; then
    socklb="in pods and the host"
    if [[ "$(cat "$cfg/bpf-lb-sock-hostns-only" 2>/dev/null)" == true ]]; then socklb="in the host only; pods per packet"; fi
  fi
  log "Cilium $CILIUM_VERSION, profile $LAB_PROFILE: socket LB $socklb; $(grep -E '^  (bpf-lb-sock-[a-z-]*|routing-mode|kube-proxy-replacement|enable-ipv6):' "$LAB/etc/cilium-config.yaml" | xargs)"
  k apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Node
metadata:
  name: $NODE
  labels: {kubernetes.io/hostname: $NODE, kubernetes.io/os: linux, kubernetes.io/arch: amd64}
spec:
  podCIDR: 10.244.0.0/24
  podCIDRs: [$pod_cidrs]
YAML
  k patch node "$NODE" --subresource=status --type=merge \
    -p '{"status":{"addresses":['"$node_addrs"',{"type":"Hostname","address":"'"$NODE"'"}]}}' >/dev/null
  start cilium-agent-wrapper "" unshare -m --propagation slave hack/lab/cilium-agent.sh "$LAB" "$CILIUM_BIN" "$CGROUP" "$NODE_NS"
  CILIUM_SOCK="$LAB/run/cilium.sock" wait_for 180 cilium-agent "$CILIUM_BIN/cilium-dbg" -H "unix://$LAB/run/cilium.sock" status --brief
  # unshare, the script, nsenter and bash each exec the next: the wrapper's pid is the agent's.
  local agent; agent=$(cat "$LAB/pids/cilium-agent-wrapper")
  [[ "$(readlink "/proc/$agent/exe")" == "$CILIUM_BIN/cilium-agent" ]] || { log "pid $agent is not cilium-agent"; return 1; }
  echo "$agent" > "$LAB/pids/cilium-agent"
  log "cilium-agent ready after $((SECONDS - t0))s"
  echo '{"cniVersion":"0.3.1","name":"cilium","type":"cilium-cni","log-file":"'"$LAB"'/logs/cni.log"}' > "$LAB/etc/cni.conf"
  start lab-node "$NODE_NS" "$BIN/lab-node" run --kubeconfig "$LAB/etc/kubeconfig" --node-name "$NODE" --node-ip 10.99.0.2 --cluster-dns "$CLUSTER_DNS" \
    --dir "$LAB/node" --bin-dir "$BIN" --coredns "$COREDNS" --cilium-cni "$CILIUM_BIN/cilium-cni" \
    --cni-conf "$LAB/etc/cni.conf" --hubble-relay "$CILIUM_BIN/hubble-relay" --nodejs "$(command -v node)" --cgroup "$CGROUP" --agent-pid-file "$LAB/pids/cilium-agent" --resolv-conf "$LAB/etc/node-resolv.conf"
  start resolver "$EXT_NS" "$BIN/lab-node" resolver --listen 10.99.0.1:53 --answer 198.51.100.53 --refuse cluster.local
  wait_for 60 "the Node to be Ready" node_ready
  wait_for 60 "ServiceAccounts" k -n kube-system get serviceaccount default
  log "lab up after $((SECONDS - t0))s"
}

deploy() {
  local t0=$SECONDS
  if [[ -n "$LAB_CLUSTER_DNS" ]]; then
    # The install as docs/install.md gives it: an overlay with the
    # link-local component.
    local overlay="$LAB/install"
    mkdir -p "$overlay"
    cat > "$overlay/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [$(realpath --relative-to="$overlay" "$REPO_ROOT/$INSTALL")]
components: [$(realpath --relative-to="$overlay" "$REPO_ROOT/manifests/components/link-local")]
YAML
    INSTALL=$overlay
    log "pods' resolver: $CLUSTER_DNS; lrpdns from $INSTALL (link-local component)"
  fi
  log "profile $LAB_PROFILE; kube-dns as $LAB_KUBE_DNS names it: Service $KUBE_DNS_SERVICE; lrpdns from $INSTALL"
  k apply -k "e2e/lab/kube-dns/$LAB_KUBE_DNS" >/dev/null
  if [[ -n "$DUAL_STACK" ]]; then
    # kubeadm leaves kube-dns single-stack; a dual-stack cluster that wants
    # DNS over IPv6 asks for both families.
    k -n kube-system patch service "$KUBE_DNS_SERVICE" -p '{"spec":{"ipFamilyPolicy":"PreferDualStack"}}' >/dev/null
    log "kube-dns ClusterIPs: $(k -n kube-system get service "$KUBE_DNS_SERVICE" -o jsonpath='{.spec.clusterIPs}')"
  fi
  k apply -f e2e/lab/hubble-relay.yaml >/dev/null
  k -n kube-system rollout status deploy/coredns --timeout=180s
  k -n kube-system rollout status deploy/hubble-relay --timeout=180s
  k apply -k "$INSTALL"
  k -n kube-system rollout status ds/node-local-dns --timeout=180s
  k -n kube-system rollout status deploy/lrpdns-controller --timeout=180s
  k apply -f e2e/lab/dns-visibility.yaml >/dev/null
  wait_for 60 "the CiliumLocalRedirectPolicy" k -n kube-system get ciliumlocalredirectpolicy node-local-dns
  wait_for 60 "the redirect in the datapath" redirect_in_datapath
  log "deployed in $((SECONDS - t0))s; $(wc -l < "$CGROUP/cgroup.procs") processes in the agent's cgroup root"
  echo "+ cilium-dbg lrp list"
  "$CILIUM_BIN/cilium-dbg" -H "unix://$LAB/run/cilium.sock" lrp list | tee "$LAB/lrp-list.txt"
  if [[ -n "$DUAL_STACK" ]]; then
    local v6; v6=$(k -n kube-system get service "$KUBE_DNS_SERVICE" -o jsonpath='{.spec.clusterIPs[1]}')
    for proto in UDP TCP; do
      grep -qF "$v6:53/$proto -> " "$LAB/lrp-list.txt" ||
        { log "cilium-dbg lrp list shows no backend for $v6:53/$proto (kube-dns's IPv6 ClusterIP)"; return 1; }
    done
    log "the redirect's IPv6 frontend $v6:53 (UDP and TCP) has a backend in the datapath"
  fi
  if [[ -n "$LAB_CLUSTER_DNS" ]]; then
    for proto in UDP TCP; do
      grep -qF "$LAB_CLUSTER_DNS:53/$proto -> " "$LAB/lrp-list.txt" ||
        { log "cilium-dbg lrp list shows no backend for $LAB_CLUSTER_DNS:53/$proto"; return 1; }
    done
    log "the address policy's frontend $LAB_CLUSTER_DNS:53 (UDP and TCP) has a backend in the datapath"
  fi
  echo "+ cilium-dbg service list"
  "$CILIUM_BIN/cilium-dbg" -H "unix://$LAB/run/cilium.sock" service list
}

suite() {
  local kustomization=$INSTALL
  [[ "$kustomization" == /* ]] || kustomization=$REPO_ROOT/$INSTALL
  go test -c -tags e2e -o "$BIN/e2e.test" ./e2e/
  (cd e2e && LRPDNS_E2E_PROVIDER=lab LRPDNS_E2E_KUBECONFIG="$LAB/etc/kubeconfig" LRPDNS_E2E_HUBBLE="unix://$LAB/run/hubble.sock" \
  LRPDNS_E2E_EXEC="$BIN/lab-node exec --dir $LAB/node --bin-dir $BIN --coredns $COREDNS --nodejs $(command -v node)" \
  LRPDNS_E2E_IMAGE=ghcr.io/lrpdns/lrpdns:v0.1.0 LRPDNS_E2E_ARTIFACTS="$ARTIFACTS" \
  LRPDNS_E2E_NODE_RESOLVERS=10.99.0.1 LRPDNS_E2E_EXTERNAL_ANSWER=198.51.100.53 \
  LRPDNS_E2E_KUBECTL="$K8S/kubectl" LRPDNS_E2E_KUSTOMIZATION="$kustomization" LRPDNS_E2E_CLUSTER_DNS="$LAB_CLUSTER_DNS" \
  LRPDNS_E2E_KUBE_DNS_SERVICE="$KUBE_DNS_SERVICE" LRPDNS_E2E_PATH="$BIN:$CILIUM_BIN" LRPDNS_E2E_DUAL_STACK="$DUAL_STACK" \
    nsenter --net="/run/netns/$NODE_NS" "$BIN/e2e.test" -test.v -test.count=1 -test.timeout=20m)
}

killpid() { if [[ -n "${1:-}" ]]; then kill "$1" 2>/dev/null || true; fi; }
down() {
  # The node agent stops its pods gracefully first.
  killpid "$(cat "$LAB/pids/lab-node" 2>/dev/null)"; sleep 3
  for p in resolver cilium-agent cilium-agent-wrapper kube-scheduler kube-controller-manager; do killpid "$(cat "$LAB/pids/$p" 2>/dev/null)"; done
  sleep 2
  killpid "$(cat "$LAB/pids/kube-apiserver" 2>/dev/null)"; killpid "$(cat "$LAB/pids/etcd" 2>/dev/null)"
  sleep 1
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^(lab-[0-9a-f]{8}|$NODE_NS|$EXT_NS)$"); do
    for p in $(ip netns pids "$ns" 2>/dev/null); do killpid "$p"; done
    ip netns del "$ns" 2>/dev/null || true
  done
  if [[ -n "$CGROUP" && -f "$CGROUP/cgroup.procs" ]]; then
    while read -r p; do killpid "$p"; done < "$CGROUP/cgroup.procs"
    rmdir "$CGROUP" 2>/dev/null || true
  fi
  mountpoint -q "$LAB/bpffs" 2>/dev/null && umount "$LAB/bpffs"
  if [[ -d "$LAB/logs" ]]; then
    mkdir -p "$ARTIFACTS/logs"; cp -r "$LAB/logs/." "$ARTIFACTS/logs/"
    find "$LAB/node/pods" -name '*.log' -exec cp {} "$ARTIFACTS/logs/" \; 2>/dev/null || true
  fi
  rm -rf "$LAB"
}

if [[ "${1:-}" == down ]]; then down; exit 0; fi
preflight
install_packages
start_time=$SECONDS
build
if [[ -d "$LAB" ]]; then log "removing a previous lab"; down; fi
cleanup() { rc=$?; if [[ -z "${KEEP:-}" ]]; then down; fi; log "done in $((SECONDS - start_time))s, exit $rc"; exit $rc; }
trap cleanup EXIT
up
deploy
suite
