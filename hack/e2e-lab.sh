#!/usr/bin/env bash
# make e2e-lab: the end-to-end proof on real Cilium agents with Hubble, on
# this Linux host, as root, without Docker. Each node is a network namespace
# with its own cilium-agent (kube-proxy replacement, local redirect policies,
# Hubble; its own bpffs, cgroup root and state directory) and lab-node, a
# small kubelet that runs the pods of manifests/ (applied unchanged) as
# processes in their own network namespaces. The nodes share a bridge (the
# node link) and reach each other's pods through Cilium's tunnel; the first
# node also runs etcd, kube-apiserver, kube-controller-manager and
# kube-scheduler (built from the Go module proxy). Then the e2e suite runs
# against it, as it does against kind.
#
# Every address lives in namespaces the lab creates (10.99.0.0/24 node link,
# 10.96.0.0/16 services, 10.244.0.0/16 pods, a /24 per node; with a profile
# that enables IPv6, also fd00:10:99::/64, fd00:10:96::/112 and
# fd00:10:244:N::/112 per node);
# nothing is attached to the root network namespace; teardown kills by pid
# and removes only what it created.
#   KEEP=1 make e2e-lab   # leave the lab up (hack/e2e-lab.sh down removes it)
#   LAB_NODES=2 make e2e-lab   # nodes (default 1); CoreDNS is pinned to the
#     first, so the other nodes' caches reach it across nodes
#   LAB_PROFILE=per-packet make e2e-lab   # Cilium's settings: the chart's
#     cilium-config rendered with e2e/cilium/values.yaml and
#     e2e/cilium/profiles/NAME.yaml, as make e2e installs it; default
#     "default" (the chart's defaults: socket load balancing in pods);
#     "dual-stack" adds IPv6 to the lab: node link, pods, Services, kube-dns
#   LAB_CLUSTER_DNS=169.254.20.10 make e2e-lab   # kubelets give pods that
#     resolver, as clusters set up for classic NodeLocal DNSCache do; lrpdns
#     installed with the link-local component redirects it to the cache
#   LAB_FROM=classic LAB_CLUSTER_DNS=169.254.20.10 make e2e-lab   # classic
#     NodeLocal DNSCache runs first (e2e/lab/classic), and the suite begins
#     with the migration docs/install.md gives, under queries
#   LAB_CILIUM=v1.18.11 make e2e-lab   # another Cilium release: its agent,
#     chart, CRDs and BPF sources from the module proxy (hack/cilium-bins.sh
#     caches each version); default the one go.mod pins
#   LAB_SUITE=fallback make e2e-lab   # instead of the suite, measure what
#     the release does with DNS while the node's cache pod is absent, starting
#     or not ready (e2e/fallback_test.go), against lrpdns's table of releases;
#     KEEP=1 LAB_SUITE=none make e2e-lab deploys and leaves the lab to explore
#   LAB_POLICY=on make e2e-lab   # with manifests/components/network-policy
#     (Helm: networkPolicy.enabled): the cache and the controller behind
#     their CiliumNetworkPolicies for the whole suite; LAB_POLICY=clients
#     also keeps the suite's clients behind docs/install.md's toFQDNs client
#     policy (default-deny egress) after the policy checks
#   LAB_INSTALL=helm make e2e-lab   # lrpdns installed, re-installed and
#     uninstalled with charts/lrpdns (release lrpdns in kube-system) instead
#     of kubectl apply -k; not with LAB_CLUSTER_DNS or LAB_FROM;
#     LAB_INSTALL=yaml: kubectl apply -f manifests/install.yaml (and delete
#     -f), kubeadm's kube-dns and no component only
#   LAB_KUBE_DNS=rke2 make e2e-lab   # kube-dns as RKE2 names it (Service
#     rke2-coredns-rke2-coredns, ports udp-53/tcp-53), lrpdns installed with
#     the rke2 component; default kubeadm (kube-dns, dns/dns-tcp)
set -o errexit -o nounset -o pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

LAB=${LAB_DIR:-${TMPDIR:-/tmp}/lrpdns-lab}
EXT_NS=lrpdns-ext
LAB_NODES=${LAB_NODES:-1}
[[ "$LAB_NODES" =~ ^[1-4]$ ]] || { echo "e2e-lab: LAB_NODES=$LAB_NODES: want 1 to 4" >&2; exit 2; }
# Node i (from 1): lrpdns-node, lrpdns-node2, ...; its network namespace
# has the same name, its address is 10.99.0.(i+1), its pods 10.244.(i-1).0/24.
NODES=(lrpdns-node)
for ((i = 2; i <= LAB_NODES; i++)); do NODES+=("lrpdns-node$i"); done
NODE=${NODES[0]} NODE_NS=${NODES[0]}
node_ip() { echo "10.99.0.$(($1 + 1))"; }  # node index from 1
node_dir() { echo "$LAB/nodes/$1"; }        # node name
LAB_KUBE_DNS=${LAB_KUBE_DNS:-kubeadm}
case "$LAB_KUBE_DNS" in
  kubeadm) KUBE_DNS_SERVICE=kube-dns INSTALL=manifests ;;
  rke2) KUBE_DNS_SERVICE=rke2-coredns-rke2-coredns INSTALL=e2e/lab/install/rke2 ;;
  *) echo "e2e-lab: LAB_KUBE_DNS=$LAB_KUBE_DNS: want kubeadm or rke2" >&2; exit 2 ;;
esac
LAB_INSTALL=${LAB_INSTALL:-kustomize}
case "$LAB_INSTALL" in
  kustomize) ;;
  helm) [[ -z "${LAB_CLUSTER_DNS:-}${LAB_FROM:-}" ]] || { echo "e2e-lab: LAB_INSTALL=helm: not with LAB_CLUSTER_DNS or LAB_FROM (their steps are kustomize's)" >&2; exit 2; } ;;
  yaml) [[ -z "${LAB_CLUSTER_DNS:-}${LAB_FROM:-}" && "${LAB_POLICY:-off}" == off && "$LAB_KUBE_DNS" == kubeadm ]] || { echo "e2e-lab: LAB_INSTALL=yaml: manifests/install.yaml has no components: not with LAB_CLUSTER_DNS, LAB_FROM, LAB_POLICY or LAB_KUBE_DNS" >&2; exit 2; } ;;
  *) echo "e2e-lab: LAB_INSTALL=$LAB_INSTALL: want kustomize, helm or yaml" >&2; exit 2 ;;
esac
LAB_POLICY=${LAB_POLICY:-off}
case "$LAB_POLICY" in
  on | off | clients) ;;
  *) echo "e2e-lab: LAB_POLICY=$LAB_POLICY: want on, clients or off" >&2; exit 2 ;;
esac
LAB_CLUSTER_DNS=${LAB_CLUSTER_DNS:-}
case "$LAB_CLUSTER_DNS" in
  "") CLUSTER_DNS=10.96.0.10 ;;
  169.254.20.10) CLUSTER_DNS=$LAB_CLUSTER_DNS ;;
  *) echo "e2e-lab: LAB_CLUSTER_DNS=$LAB_CLUSTER_DNS: want 169.254.20.10 (the link-local component's address) or nothing (kube-dns's ClusterIP)" >&2; exit 2 ;;
esac
LAB_FROM=${LAB_FROM:-}
case "$LAB_FROM" in
  "") ;;
  classic) [[ "$CLUSTER_DNS" == 169.254.20.10 ]] || { echo "e2e-lab: LAB_FROM=classic needs LAB_CLUSTER_DNS=169.254.20.10" >&2; exit 2; } ;;
  *) echo "e2e-lab: LAB_FROM=$LAB_FROM: want classic or nothing" >&2; exit 2 ;;
esac
LAB_SUITE=${LAB_SUITE:-e2e}
case "$LAB_SUITE" in
  e2e) TEST_RUN=${E2E_RUN:-^TestE2E$} ;;
  fallback) TEST_RUN='^TestCiliumFallback$' ;;
  none) TEST_RUN='' ;;
  *) echo "e2e-lab: LAB_SUITE=$LAB_SUITE: want e2e, fallback or none" >&2; exit 2 ;;
esac
LAB_CILIUM=${LAB_CILIUM:-}
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
# Each node's agent has its own cgroup root under CGROUP, siblings, so one
# agent's socket load balancer never sees another node's pods.
CGROUP=$(cgroup_root)

# Outside CI a machine that cannot run the lab skips it; in CI (CI set) a
# missing prerequisite fails the run: the proof did not run.
skip() {
  if [[ -n "${CI:-}" ]]; then echo "e2e-lab: FAIL: cannot run the lab in CI: $*" >&2; exit 1; fi
  echo "e2e-lab: SKIP: $*"; exit 0
}
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
  CILIUM_VERSION=${LAB_CILIUM:-$(go list -m -f '{{.Version}}' github.com/cilium/cilium)}
  CILIUM_BIN=$(hack/cilium-bins.sh "$CILIUM_VERSION")
  COREDNS=$(hack/coredns-bin.sh)
  HELM=$(hack/helm-bin.sh)
  CGO_ENABLED=0 go build -o "$BIN/lab-node" ./e2e/lab/cmd/lab-node
  sed -e "s|@COREDNS@|$COREDNS|" -e "s|@XTABLES@|$(readlink -f "$(command -v iptables)")|" e2e/lab/classic/node-cache.sh > "$BIN/k8s-dns-node-cache"
  chmod +x "$BIN/k8s-dns-node-cache"
  # That release's chart, CRDs and BPF sources.
  CILIUM_SRC=$(cd / && GOFLAGS='' go mod download -json "github.com/cilium/cilium@$CILIUM_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [[ -d "$CILIUM_SRC/bpf" ]] || { log "no source of github.com/cilium/cilium@$CILIUM_VERSION"; return 1; }
  log "binaries ready in $((SECONDS - t0))s"
}

# The API server listens in the node's network namespace only.
k() { nsenter --net="/run/netns/$NODE_NS" "$K8S/kubectl" --kubeconfig "$LAB/etc/kubeconfig" "$@"; }
# write_helm_values writes HELM_VALUES, the chart's values for the lab's
# kube-dns (as the rke2 component sets them for kustomize) and LAB_POLICY;
# the install and the suite's re-installs read it.
HELM_VALUES=$LAB/etc/helm-values.yaml
write_helm_values() {
  local f=$HELM_VALUES
  case "$LAB_KUBE_DNS" in
    kubeadm) : > "$f" ;;
    rke2) printf 'kubeDNS: {service: %s, udpPortName: udp-53, tcpPortName: tcp-53}\n' "$KUBE_DNS_SERVICE" > "$f" ;;
  esac
  if [[ "$LAB_POLICY" != off ]]; then echo "networkPolicy: {enabled: true}" >> "$f"; fi
}
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

node_ready() { [[ "$(k get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]]; }
dbg() { local node=$1; shift; "$CILIUM_BIN/cilium-dbg" -H "unix://$(node_dir "$node")/run/cilium.sock" "$@"; }
redirect_in_datapath() { dbg "$1" service list | grep -q LocalRedirect; }

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
  mkdir -p "$LAB"/{etc,pki,logs,pids,etcd}
  render_config
  # The node link: a bridge in the "outside" namespace, which also holds
  # the node resolver (10.99.0.1) and routes each node's pod range to it.
  ip netns add "$EXT_NS"
  ip -n "$EXT_NS" link set lo up
  ip -n "$EXT_NS" link add br0 type bridge
  ip -n "$EXT_NS" addr add 10.99.0.1/24 dev br0
  if [[ -n "$DUAL_STACK" ]]; then ip -n "$EXT_NS" addr add fd00:10:99::1/64 dev br0 nodad; fi
  ip -n "$EXT_NS" link set br0 up
  local service_range=10.96.0.0/16 i=0 node
  if [[ -n "$DUAL_STACK" ]]; then service_range+=,fd00:10:96::/112; fi
  mkdir -p "$CGROUP"
  for node in "${NODES[@]}"; do
    i=$((i + 1))
    local ip; ip=$(node_ip "$i")
    ip netns add "$node"
    ip -n "$node" link set lo up
    ip -n "$node" link add node0 type veth peer name "ext$i" netns "$EXT_NS"
    ip -n "$EXT_NS" link set "ext$i" master br0 up
    ip -n "$node" addr add "$ip/24" dev node0
    ip -n "$node" link set node0 up
    ip -n "$node" route add default via 10.99.0.1
    ip -n "$EXT_NS" route add "10.244.$((i - 1)).0/24" via "$ip"
    if [[ -n "$DUAL_STACK" ]]; then
      ip -n "$node" addr add "fd00:10:99::$((i + 1))/64" dev node0 nodad
      ip -n "$node" -6 route add default via fd00:10:99::1
      ip -n "$EXT_NS" -6 route add "fd00:10:244:$((i - 1))::/64" via "fd00:10:99::$((i + 1))"
    fi
    local dir; dir=$(node_dir "$node")
    mkdir -p "$dir"/{run,lib,bpffs,node} "$CGROUP/$node"
    mount -t bpf bpf "$dir/bpffs"
    cp -r "$CILIUM_SRC/bpf" "$dir/lib/bpf"; chmod -R u+w "$dir/lib/bpf"
  done
  openssl genrsa -out "$LAB/pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$LAB/pki/sa.key" -pubout -out "$LAB/pki/sa.pub" 2>/dev/null
  echo 'admintoken,admin,admin,system:masters' > "$LAB/pki/tokens.csv"
  cat > "$LAB/etc/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: lab, cluster: {server: "https://10.99.0.2:6443", insecure-skip-tls-verify: true}}]
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
  # The agent runs outside Kubernetes here. Its DaemonSet, which no node
  # matches, carries the release where the controller reads it in a real
  # cluster: the image tag.
  k apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: cilium, namespace: kube-system, labels: {k8s-app: cilium}}
spec:
  selector: {matchLabels: {k8s-app: cilium}}
  template:
    metadata: {labels: {k8s-app: cilium}}
    spec:
      nodeSelector: {lrpdns.io/lab: cilium-agent-runs-outside-kubernetes}
      containers: [{name: cilium-agent, image: "quay.io/cilium/cilium:$CILIUM_VERSION"}]
YAML
  # bpf-lb-sock says "false" with kube-proxy replacement, which turns socket
  # load balancing on anyway: say what the agent does.
  local cfg="$LAB/cilium-config" socklb="per packet (no socket LB)"
  if [[ "$(cat "$cfg/kube-proxy-replacement")" == true || "$(cat "$cfg/bpf-lb-sock" 2>/dev/null)" == true ]]; then
    socklb="in pods and the host"
    if [[ "$(cat "$cfg/bpf-lb-sock-hostns-only" 2>/dev/null)" == true ]]; then socklb="in the host only; pods per packet"; fi
  fi
  log "Cilium $CILIUM_VERSION, profile $LAB_PROFILE: socket LB $socklb; $(grep -E '^  (bpf-lb-sock-[a-z-]*|routing-mode|kube-proxy-replacement|enable-ipv6):' "$LAB/etc/cilium-config.yaml" | xargs)"
  i=0
  for node in "${NODES[@]}"; do
    i=$((i + 1))
    node_up "$i" "$node"
  done
  start resolver "$EXT_NS" "$BIN/lab-node" resolver --listen 10.99.0.1:53 --answer 198.51.100.53 --refuse cluster.local
  for node in "${NODES[@]}"; do wait_for 60 "Node $node to be Ready" node_ready "$node"; done
  wait_for 60 "ServiceAccounts" k -n kube-system get serviceaccount default
  log "lab up after $((SECONDS - t0))s"
}

# node_up I NAME: the Node object, its cilium-agent and its lab-node.
node_up() {
  local i=$1 node=$2 t0=$SECONDS dir; dir=$(node_dir "$2")
  local ip; ip=$(node_ip "$i")
  local pod_cidrs='"10.244.'$((i - 1))'.0/24"' node_addrs='{"type":"InternalIP","address":"'$ip'"}'
  if [[ -n "$DUAL_STACK" ]]; then
    pod_cidrs+=',"fd00:10:244:'$((i - 1))'::/112"' node_addrs+=',{"type":"InternalIP","address":"fd00:10:99::'$((i + 1))'"}'
  fi
  k apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Node
metadata:
  name: $node
  labels: {kubernetes.io/hostname: $node, kubernetes.io/os: linux, kubernetes.io/arch: amd64}
spec:
  podCIDR: 10.244.$((i - 1)).0/24
  podCIDRs: [$pod_cidrs]
YAML
  k patch node "$node" --subresource=status --type=merge \
    -p '{"status":{"addresses":['"$node_addrs"',{"type":"Hostname","address":"'"$node"'"}]}}' >/dev/null
  start "cilium-agent-wrapper-$node" "" unshare -m --propagation slave hack/lab/cilium-agent.sh \
    "$dir" "$CILIUM_BIN" "$CGROUP/$node" "$node" "$node" "$LAB/cilium-config" "$LAB/etc/kubeconfig"
  wait_for 180 "cilium-agent on $node" dbg "$node" status --brief
  # unshare, the script, nsenter and bash each exec the next: the wrapper's pid is the agent's.
  local agent; agent=$(cat "$LAB/pids/cilium-agent-wrapper-$node")
  [[ "$(readlink "/proc/$agent/exe")" == "$CILIUM_BIN/cilium-agent" ]] || { log "pid $agent is not cilium-agent"; return 1; }
  echo "$agent" > "$LAB/pids/cilium-agent-$node"
  log "cilium-agent on $node ready after $((SECONDS - t0))s"
  echo '{"cniVersion":"0.3.1","name":"cilium","type":"cilium-cni","log-file":"'"$LAB"'/logs/cni-'"$node"'.log"}' > "$dir/cni.conf"
  start "lab-node-$node" "$node" "$BIN/lab-node" run --kubeconfig "$LAB/etc/kubeconfig" --node-name "$node" --node-ip "$ip" --cluster-dns "$CLUSTER_DNS" --node-netns "$node" \
    --dir "$dir/node" --bin-dir "$BIN" --coredns "$COREDNS" --cilium-cni "$CILIUM_BIN/cilium-cni" \
    --cni-conf "$dir/cni.conf" --hubble-relay "$CILIUM_BIN/hubble-relay" --nodejs "$(command -v node)" --cgroup "$CGROUP/$node" --agent-pid-file "$LAB/pids/cilium-agent-$node" --resolv-conf "$LAB/etc/node-resolv.conf"
}

# node_pairs FORMAT: NODE=VALUE,... for every node, VALUE the format with
# the node's name for %s, or "@pid" for its agent's PID.
node_pairs() {
  local out="" n v
  for n in "${NODES[@]}"; do
    if [[ "$1" == @pid ]]; then v=$(cat "$LAB/pids/cilium-agent-$n"); else v=${1//%s/$n}; fi
    out+="${out:+,}$n=$v"
  done
  echo "$out"
}

# node_dirs are every node's lab-node directory, comma-separated.
node_dirs() { local d="" n; for n in "${NODES[@]}"; do d+="${d:+,}$(node_dir "$n")/node"; done; echo "$d"; }

deploy() {
  local t0=$SECONDS components=() c list=""
  # The install as docs/install.md gives it: an overlay with the link-local
  # component, or beside-classic to migrate from classic; network-policy.
  if [[ -n "$LAB_CLUSTER_DNS" ]]; then
    if [[ "$LAB_FROM" == classic ]]; then components+=(beside-classic); else components+=(link-local); fi
  fi
  if [[ "$LAB_POLICY" != off ]]; then components+=(network-policy); fi
  if [[ ${#components[@]} -gt 0 && "$LAB_INSTALL" == kustomize ]]; then
    local overlay="$LAB/install"
    mkdir -p "$overlay"
    for c in "${components[@]}"; do list+="${list:+, }$(realpath --relative-to="$overlay" "$REPO_ROOT/manifests/components/$c")"; done
    cat > "$overlay/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [$(realpath --relative-to="$overlay" "$REPO_ROOT/$INSTALL")]
components: [$list]
YAML
    INSTALL=$overlay
    log "pods' resolver: $CLUSTER_DNS; lrpdns from $INSTALL (components: ${components[*]})"
  fi
  log "profile $LAB_PROFILE; kube-dns as $LAB_KUBE_DNS names it: Service $KUBE_DNS_SERVICE; lrpdns from $(case "$LAB_INSTALL" in helm) echo "charts/lrpdns (helm)" ;; yaml) echo manifests/install.yaml ;; *) echo "$INSTALL" ;; esac)"
  k apply -k "e2e/lab/kube-dns/$LAB_KUBE_DNS" >/dev/null
  if [[ -n "$DUAL_STACK" ]]; then
    # kubeadm leaves kube-dns single-stack; a dual-stack cluster that wants
    # DNS over IPv6 asks for both families.
    k -n kube-system patch service "$KUBE_DNS_SERVICE" -p '{"spec":{"ipFamilyPolicy":"PreferDualStack"}}' >/dev/null
    log "kube-dns ClusterIPs: $(k -n kube-system get service "$KUBE_DNS_SERVICE" -o jsonpath='{.spec.clusterIPs}')"
  fi
  if [[ ${#NODES[@]} -gt 1 ]]; then
    # CoreDNS on the first node only: the other nodes' caches reach it
    # across nodes.
    k -n kube-system patch deployment coredns -p '{"spec":{"template":{"spec":{"nodeSelector":{"kubernetes.io/hostname":"'"$NODE"'"}}}}}' >/dev/null
  fi
  k apply -f e2e/lab/hubble-relay.yaml >/dev/null
  k -n kube-system rollout status deploy/coredns --timeout=180s
  k -n kube-system rollout status deploy/hubble-relay --timeout=180s
  if [[ "$LAB_FROM" == classic ]]; then
    # Classic NodeLocal DNSCache as its install guide has users apply it;
    # the suite migrates from it.
    sed -e "s/__PILLAR__LOCAL__DNS__/$CLUSTER_DNS/g" -e "s/__PILLAR__DNS__DOMAIN__/cluster.local/g" \
      -e "s/__PILLAR__DNS__SERVER__/$(k -n kube-system get service "$KUBE_DNS_SERVICE" -o jsonpath='{.spec.clusterIP}')/g" \
      e2e/lab/classic/nodelocaldns.yaml > "$LAB/classic.yaml"
    k apply -f "$LAB/classic.yaml"
    k -n kube-system rollout status ds/node-local-dns --timeout=180s
    log "classic NodeLocal DNSCache deployed in $((SECONDS - t0))s; the suite installs lrpdns beside it"
    return
  fi
  if [[ "$LAB_INSTALL" == helm ]]; then
    write_helm_values
    nsenter --net="/run/netns/$NODE_NS" "$HELM" --kubeconfig "$LAB/etc/kubeconfig" \
      upgrade --install lrpdns charts/lrpdns --namespace kube-system --values "$HELM_VALUES"
  elif [[ "$LAB_INSTALL" == yaml ]]; then
    k apply -f manifests/install.yaml
  else
    k apply -k "$INSTALL"
  fi
  k -n kube-system rollout status ds/node-local-dns --timeout=180s
  k -n kube-system rollout status deploy/lrpdns-controller --timeout=180s
  k apply -f e2e/lab/dns-visibility.yaml >/dev/null
  if [[ "$LAB_SUITE" == fallback ]]; then
    # The suite makes the policies itself, whatever the controller's gate
    # says of this release; what it says is shown here.
    sleep 5
    log "deployed in $((SECONDS - t0))s; the controller's Events on Cilium $CILIUM_VERSION:"
    k -n kube-system get events --field-selector involvedObject.name=node-local-dns -o custom-columns=REASON:.reason,NOTE:.message | grep -E "Cilium|PolicyCreated|REASON" || true
    return
  fi
  wait_for 60 "the CiliumLocalRedirectPolicy" k -n kube-system get ciliumlocalredirectpolicy node-local-dns
  local node
  for node in "${NODES[@]}"; do
    wait_for 60 "the redirect in $node's datapath" redirect_in_datapath "$node"
    log "$node: $(wc -l < "$CGROUP/$node/cgroup.procs") processes in its agent's cgroup root"
  done
  log "deployed in $((SECONDS - t0))s"
  local v6="" proto frontends=()
  if [[ -n "$DUAL_STACK" ]]; then
    v6=$(k -n kube-system get service "$KUBE_DNS_SERVICE" -o jsonpath='{.spec.clusterIPs[1]}')
    frontends+=("$v6" "kube-dns's IPv6 ClusterIP")
  fi
  if [[ -n "$LAB_CLUSTER_DNS" ]]; then frontends+=("$LAB_CLUSTER_DNS" "the address policy's frontend"); fi
  for node in "${NODES[@]}"; do
    echo "+ cilium-dbg lrp list ($node)"
    dbg "$node" lrp list | tee "$LAB/lrp-list-$node.txt"
    grep -q "(kube-system/" "$LAB/lrp-list-$node.txt" || { log "$node: cilium-dbg lrp list shows no local backend"; return 1; }
    set -- "${frontends[@]}"
    while [[ $# -gt 0 ]]; do
      for proto in UDP TCP; do
        grep -qF "$1:53/$proto -> " "$LAB/lrp-list-$node.txt" ||
          { log "$node: cilium-dbg lrp list shows no backend for $1:53/$proto ($2)"; return 1; }
      done
      log "$node: $2 $1:53 (UDP and TCP) has a backend in the datapath"
      shift 2
    done
  done
  echo "+ cilium-dbg service list ($NODE)"
  dbg "$NODE" service list
}

suite() {
  local migrate_from="" daemonset="" upstream=""
  if [[ "$LAB_FROM" == classic ]]; then
    migrate_from=$LAB/classic.yaml daemonset=lrpdns-node-cache upstream=lrpdns-upstream
  fi
  local kustomization=$INSTALL
  [[ "$kustomization" == /* ]] || kustomization=$REPO_ROOT/$INSTALL
  go test -c -tags e2e -o "$BIN/e2e.test" ./e2e/
  # shellcheck disable=SC2016 # sh expands $$, $0 and $@
  local join='echo $$ > "$0"; exec "$@"'
  # One node: its agent's Hubble socket. Several: Hubble Relay, which
  # reads every node's agent, at its ClusterIP. The suite runs as a process
  # of the first node, in its agent's cgroup root, where Cilium's socket
  # load balancer translates ClusterIPs for the host.
  local hubble; hubble="unix://$(node_dir "$NODE")/run/hubble.sock"
  if [[ ${#NODES[@]} -gt 1 ]]; then hubble="$(k -n kube-system get service hubble-relay -o jsonpath='{.spec.clusterIP}'):80"; fi
  (cd e2e && LRPDNS_E2E_PROVIDER=lab LRPDNS_E2E_KUBECONFIG="$LAB/etc/kubeconfig" LRPDNS_E2E_HUBBLE="$hubble" \
  LRPDNS_E2E_EXEC="$BIN/lab-node exec --dir $(node_dirs) --bin-dir $BIN --coredns $COREDNS --nodejs $(command -v node)" \
  LRPDNS_E2E_IMAGE=ghcr.io/lrpdns/lrpdns:v0.1.0 LRPDNS_E2E_ARTIFACTS="$ARTIFACTS" \
  LRPDNS_E2E_NODE_RESOLVERS=10.99.0.1 LRPDNS_E2E_EXTERNAL_ANSWER=198.51.100.53 \
  LRPDNS_E2E_KUBECTL="$K8S/kubectl" LRPDNS_E2E_KUSTOMIZATION="$kustomization" LRPDNS_E2E_CLUSTER_DNS="$LAB_CLUSTER_DNS" \
  LRPDNS_E2E_KUBE_DNS_SERVICE="$KUBE_DNS_SERVICE" LRPDNS_E2E_PATH="$BIN:$CILIUM_BIN" LRPDNS_E2E_DUAL_STACK="$DUAL_STACK" \
  LRPDNS_E2E_MIGRATE_FROM="$migrate_from" LRPDNS_E2E_DAEMONSET="$daemonset" LRPDNS_E2E_UPSTREAM_SERVICE="$upstream" \
  LRPDNS_E2E_SUITE="$LAB_SUITE" LRPDNS_E2E_HELM="$HELM" LRPDNS_E2E_NETWORK_POLICY="$([[ "$LAB_POLICY" != off ]] && echo 1)" \
  LRPDNS_E2E_CLIENT_POLICY="$([[ "$LAB_POLICY" == clients ]] && echo 1)" LRPDNS_E2E_CILIUM_LOGS="$(node_pairs "$LAB/logs/cilium-agent-wrapper-%s.log")" \
  LRPDNS_E2E_AGENTS="$(node_pairs "@pid")" LRPDNS_E2E_CILIUM_DBG="$CILIUM_BIN/cilium-dbg" \
  LRPDNS_E2E_HELM_CHART="$([[ "$LAB_INSTALL" == helm ]] && echo "$REPO_ROOT/charts/lrpdns")" \
  LRPDNS_E2E_HELM_VALUES="$([[ "$LAB_INSTALL" == helm ]] && echo "$HELM_VALUES")" \
  LRPDNS_E2E_MANIFEST="$([[ "$LAB_INSTALL" == yaml ]] && echo "$REPO_ROOT/manifests/install.yaml")" \
    nsenter --net="/run/netns/$NODE_NS" sh -c "$join" "$CGROUP/$NODE/cgroup.procs" \
      "$BIN/e2e.test" -test.v -test.count=1 -test.timeout=45m -test.run "$TEST_RUN")
}

killpid() { if [[ -n "${1:-}" ]]; then kill "$1" 2>/dev/null || true; fi; }
pidof_lab() { cat "$LAB/pids/$1" 2>/dev/null; }
# down removes every node the lab has, whatever LAB_NODES says now.
down() {
  local f d ns p
  # The node agents stop their pods gracefully first.
  for f in "$LAB"/pids/lab-node-*; do [[ -f "$f" ]] && killpid "$(cat "$f")"; done; sleep 3
  for f in "$LAB"/pids/cilium-agent-*; do [[ -f "$f" ]] && killpid "$(cat "$f")"; done
  for p in resolver kube-scheduler kube-controller-manager; do killpid "$(pidof_lab "$p")"; done
  sleep 2
  killpid "$(pidof_lab kube-apiserver)"; killpid "$(pidof_lab etcd)"
  sleep 1
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^(lab-[0-9a-f]{8}|lrpdns-node[0-9]*|$EXT_NS)$"); do
    for p in $(ip netns pids "$ns" 2>/dev/null); do killpid "$p"; done
    ip netns del "$ns" 2>/dev/null || true
  done
  if [[ -n "$CGROUP" && -d "$CGROUP" ]]; then
    for f in "$CGROUP"/*/cgroup.procs "$CGROUP/cgroup.procs"; do
      [[ -f "$f" ]] || continue
      while read -r p; do killpid "$p"; done < "$f"
    done
    sleep 1
    for d in "$CGROUP"/*/; do [[ -d "$d" ]] && rmdir "$d" 2>/dev/null; done
    rmdir "$CGROUP" 2>/dev/null || true
  fi
  for d in "$LAB"/nodes/*/bpffs; do mountpoint -q "$d" 2>/dev/null && umount "$d"; done
  if [[ -d "$LAB/logs" ]]; then
    mkdir -p "$ARTIFACTS/logs"; cp -r "$LAB/logs/." "$ARTIFACTS/logs/"
    # Every pod's logs, each in its own directory (NODE/node/pods/POD/).
    (cd "$LAB/nodes" && find . -path '*/node/pods/*' -name '*.log' -exec cp --parents {} "$ARTIFACTS/logs/" \;) 2>/dev/null || true
  fi
  rm -rf "$LAB"
}

if [[ "${1:-}" == down ]]; then down; exit 0; fi
preflight
install_packages
start_time=$SECONDS
build
if [[ -d "$LAB" ]]; then log "removing a previous lab"; down; fi
# digest prints, after a failed suite, what the caches and Cilium's DNS
# proxy logged as errors, by kind, the latest first: a failed
# query's SERVFAIL or timeout named by the part that gave it, on the few
# lines CI keeps.
digest() {
  local logs=("$LAB"/nodes/*/node/pods/*/node-cache.log)
  [[ -f "${logs[0]}" ]] || return 0
  log "node-cache errors (count, first, last, kind):"
  grep -h '\[ERROR\]' "${logs[@]}" | sed -E 's/^[0-9/]+ ([0-9:]+) \[ERROR\] plugin\/errors: [0-9]+ [^ ]+ ([A-Z]+):/\1 \2:/; s/ (udp|tcp) [^ ]+->/ \1 ->/' |
    awk '{t=$1; $1=""; k=substr($0,2); n[k]++; if(!(k in f)) f[k]=t; l[k]=t} END {for (k in n) printf "  %d %s %s %s\n", n[k], f[k], l[k], substr(k,1,160)}' |
    sort -r -k3 | head -8 >&2
  log "Cilium DNS proxy: $(cat "$LAB"/logs/cilium-agent-wrapper-*.log 2>/dev/null | grep -c 'Cannot forward proxied DNS lookup') SERVFAIL sent for a failed forward, $(cat "$LAB"/logs/cilium-agent-wrapper-*.log 2>/dev/null | grep -c 'Timeout waiting for response to forwarded') queries left unanswered"
}
cleanup() { rc=$?; if [[ $rc -ne 0 && -d "$LAB" ]]; then digest || true; fi; if [[ -z "${KEEP:-}" ]]; then down; fi; log "done in $((SECONDS - start_time))s, exit $rc"; exit $rc; }
trap cleanup EXIT
up
deploy
if [[ "$LAB_SUITE" == none ]]; then exit 0; fi
suite
