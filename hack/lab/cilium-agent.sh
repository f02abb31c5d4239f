#!/usr/bin/env bash
# Runs cilium-agent for the lab. Started as
#   unshare -m --propagation slave hack/lab/cilium-agent.sh LAB CILIUM_BIN CGROUP NETNS
# so every mount below is private to the agent: its own bpffs, a child cgroup
# as its cgroup root, /run/cilium redirected to the lab, and the two global
# sysctls it writes replaced by dummy files. Nothing reaches the host.
set -o errexit -o nounset -o pipefail
LAB=$1 CILIUM_BIN=$2 CGROUP=$3 NETNS=$4
mkdir -p "$LAB/hostrun" "$LAB/fake" "$LAB/run" "$LAB/cgroupv2"
echo 2 > "$LAB/fake/unprivileged_bpf_disabled"
cat /proc/sys/kernel/timer_migration > "$LAB/fake/timer_migration"
mount --bind "$CGROUP" "$LAB/cgroupv2"
mount --rbind /run "$LAB/hostrun"
mount -t tmpfs tmpfs /run
mkdir -p /run/cilium /run/netns
mount --bind "$LAB/run" /run/cilium
mount --rbind "$LAB/hostrun/netns" /run/netns
mount --bind "$LAB/fake/unprivileged_bpf_disabled" /proc/sys/kernel/unprivileged_bpf_disabled
mount --bind "$LAB/fake/timer_migration" /proc/sys/kernel/timer_migration
# shellcheck disable=SC2016 # the inner bash expands $0 and $1, its arguments
exec nsenter --net="/run/netns/$NETNS" bash -c '
set -o errexit
mount -t sysfs sysfs /sys
mount --bind "$0/bpffs" /sys/fs/bpf
export K8S_NODE_NAME=lrpdns-node PATH=/usr/lib/llvm-19/bin:$PATH
exec "$1/cilium-agent" \
  --k8s-kubeconfig-path="$0/etc/kubeconfig" --lib-dir="$0/lib" --bpf-root=/sys/fs/bpf \
  --cgroup-root="$0/cgroupv2" --enable-ipv6=false \
  --ipam=kubernetes --k8s-require-ipv4-pod-cidr \
  --routing-mode=native --ipv4-native-routing-cidr=10.244.0.0/16 \
  --kube-proxy-replacement=true --bpf-lb-sock-hostns-only=true \
  --devices=node0 --direct-routing-device=node0 \
  --enable-local-redirect-policy=true \
  --enable-hubble=true --hubble-event-buffer-capacity=65535 --monitor-aggregation=none \
  --hubble-listen-address=:4244 --hubble-disable-tls \
  --enable-health-checking=false --enable-endpoint-health-checking=false \
  --enable-l7-proxy=true --identity-allocation-mode=crd --enable-ipv4-masquerade=false
' "$LAB" "$CILIUM_BIN"
