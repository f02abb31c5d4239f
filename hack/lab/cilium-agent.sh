#!/usr/bin/env bash
# Runs one lab node's cilium-agent. Started as
#   unshare -m --propagation slave hack/lab/cilium-agent.sh DIR CILIUM_BIN CGROUP NETNS NODE CONFIG_DIR KUBECONFIG
# so every mount below is private to the agent: its own bpffs, the node's
# cgroup as its cgroup root, /run/cilium redirected to the node's directory
# DIR, and the two global sysctls it writes replaced by dummy files. Nothing
# reaches the host, and two nodes' agents share nothing but the kernel.
#
# Its settings are the chart's cilium-config, rendered with the profile's
# values into CONFIG_DIR (--config-dir, as the DaemonSet mounts it).
# The flags below override only what a DaemonSet gets from its host mounts,
# which the lab provides another way:
#   paths: kubeconfig, lib-dir, bpf-root, cgroup-root, procfs (/host/proc);
#   CNI: the chart's agent writes its conf into the host's /etc/cni/net.d and
#     removes others (cni-exclusive); the lab hands lab-node its conf instead;
#   Hubble TLS: the chart mounts generated certificates; the lab's relay
#     dials in plain text;
#   health checking: needs cilium-health-responder, which the lab does not build.
set -o errexit -o nounset -o pipefail
LAB=$1 CILIUM_BIN=$2 CGROUP=$3 NETNS=$4 NODE=$5 CONFIG_DIR=$6 KUBECONFIG=$7
mkdir -p "$LAB/run" "$LAB/lib" "$LAB/bpffs"
mkdir -p "$LAB/hostrun" "$LAB/fake" "$LAB/run/netns" "$LAB/cgroupv2"
echo 2 > "$LAB/fake/unprivileged_bpf_disabled"
cat /proc/sys/kernel/timer_migration > "$LAB/fake/timer_migration"
mount --bind "$CGROUP" "$LAB/cgroupv2"
mount --rbind /run "$LAB/hostrun"
mount -t tmpfs tmpfs /run
mkdir -p /run/cilium /run/netns
mount --bind "$LAB/run" /run/cilium
mount --rbind "$LAB/hostrun/netns" /run/netns
# The DaemonSet mounts the host's /var/run/netns here: the pods' network
# namespaces, where the agent terminates sockets of deleted backends.
mount --rbind "$LAB/hostrun/netns" /run/cilium/netns
mount --bind "$LAB/fake/unprivileged_bpf_disabled" /proc/sys/kernel/unprivileged_bpf_disabled
mount --bind "$LAB/fake/timer_migration" /proc/sys/kernel/timer_migration
# shellcheck disable=SC2016 # the inner bash expands $0 and $1, its arguments
exec nsenter --net="/run/netns/$NETNS" bash -c '
set -o errexit
mount -t sysfs sysfs /sys
mount --bind "$0/bpffs" /sys/fs/bpf
export K8S_NODE_NAME=$2 PATH=/usr/lib/llvm-19/bin:$PATH
exec "$1/cilium-agent" --config-dir="$3" \
  --k8s-kubeconfig-path="$4" --lib-dir="$0/lib" --bpf-root=/sys/fs/bpf \
  --cgroup-root="$0/cgroupv2" --procfs=/proc \
  --write-cni-conf-when-ready= --cni-exclusive=false \
  --hubble-disable-tls \
  --enable-health-checking=false --enable-endpoint-health-checking=false
' "$LAB" "$CILIUM_BIN" "$NODE" "$CONFIG_DIR" "$KUBECONFIG"
