#!/usr/bin/env bash
# Builds Cilium's three images at the version go.mod pins, here, from the
# cilium module (hack/cilium-bins.sh) and Debian, in the layout of Cilium's
# own images/ Dockerfiles, and prints their references, one per line:
#   lrpdns.local/cilium/cilium:VERSION        the agent: its binaries, the
#     BPF sources in /var/lib/cilium/bpf, the init scripts the chart runs
#     (/init-container.sh, /install-plugin.sh, /cni-uninstall.sh), the CNI
#     loopback plugin in /cni, and its runtime (iproute2, iptables, ipset,
#     kmod; Debian's clang and llc 19 for the datapath it compiles)
#   lrpdns.local/cilium/operator-generic:VERSION
#   lrpdns.local/cilium/hubble-relay:VERSION   (user 65532)
# Where Cilium's images differ: Debian instead of Ubuntu, Debian's LLVM 19
# instead of Cilium's build of it, no bpftool and no Envoy (make e2e runs
# the chart with envoy.enabled=false; the agent's DNS proxy is its own).
# Cached by content (label lrpdns.local/key). Needs a Docker engine and root.
set -o errexit -o nounset -o pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
CILIUM_VERSION=${1:-$(go list -m -f '{{.Version}}' github.com/cilium/cilium)}
BIN_DIR=$(hack/cilium-bins.sh "$CILIUM_VERSION")
SRC=$(cd / && GOFLAGS='' go mod download -json "github.com/cilium/cilium@$CILIUM_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
REPO=lrpdns.local/cilium
AGENT_PACKAGES=iproute2,iptables,ipset,kmod,ca-certificates,clang-19,llvm-19,libatomic1,util-linux,mount,procps
log() { echo "cilium-images: $*" >&2; }

# The CNI loopback plugin the agent installs on the node, as Cilium's
# runtime image builds it.
CNI_PLUGINS_VERSION=v1.9.1
loopback=$LRPDNS_CACHE/cni-loopback-$CNI_PLUGINS_VERSION
if [[ ! -x "$loopback" ]]; then
  GOBIN="$LRPDNS_CACHE/.gobin" CGO_ENABLED=0 GOFLAGS=-mod=mod go install -trimpath \
    -ldflags "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$CNI_PLUGINS_VERSION" \
    "github.com/containernetworking/plugins/plugins/main/loopback@$CNI_PLUGINS_VERSION"
  mv "$LRPDNS_CACHE/.gobin/loopback" "$loopback"
fi

agent=$REPO/cilium:$CILIUM_VERSION
key=$( {
  echo "$AGENT_PACKAGES"
  sed -n '/^# --- agent ---$/,/^# --- end ---$/p' "$0"
  sha256sum "$BIN_DIR"/* "$loopback" | cut -d' ' -f1
  (cd "$SRC" && find bpf images/cilium/init-container.sh plugins/cilium-cni/install-plugin.sh plugins/cilium-cni/cni-uninstall.sh -type f | sort | xargs sha256sum)
} | sha256sum | cut -c1-16)
if [[ "$(docker image inspect -f '{{index .Config.Labels "lrpdns.local/key"}}' "$agent" 2>/dev/null)" != "$key" ]]; then
  # --- agent ---
  log "building $agent"
  dir=$LRPDNS_CACHE/build/cilium-agent-image
  rm -rf "$dir"; mkdir -p "$dir"
  tar -C "$dir" -xf "$(hack/rootfs.sh "$AGENT_PACKAGES")"
  for b in cilium-agent cilium-dbg cilium-health cilium-health-responder cilium-bugtool cilium-mount cilium-sysctlfix hubble; do
    install -m 0755 "$BIN_DIR/$b" "$dir/usr/bin/"
  done
  install -D -m 0755 "$BIN_DIR/cilium-cni" "$dir/opt/cni/bin/cilium-cni"
  install -D -m 0755 "$loopback" "$dir/cni/loopback"
  install -m 0755 "$SRC/images/cilium/init-container.sh" "$SRC/plugins/cilium-cni/install-plugin.sh" "$SRC/plugins/cilium-cni/cni-uninstall.sh" "$dir/"
  mkdir -p "$dir/var/lib/cilium" "$dir/home/cilium"
  cp -r "$SRC/bpf" "$dir/var/lib/cilium/bpf"
  chmod -R u+w,go-w "$dir/var/lib/cilium/bpf"
  for b in clang llc; do ln -sf "/usr/lib/llvm-19/bin/$b" "$dir/usr/local/bin/$b"; done
  tar --sort=name --numeric-owner -C "$dir" -c . | docker import \
    --change "LABEL lrpdns.local/key=$key" --change 'ENV HUBBLE_SERVER=unix:///var/run/cilium/hubble.sock' \
    --change 'ENV INITSYSTEM=SYSTEMD' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'WORKDIR /home/cilium' --change 'CMD ["/usr/bin/cilium-dbg"]' - "$agent" >/dev/null
  rm -rf "$dir"
  # --- end ---
fi
echo "$agent"
# gops (in both) writes where Cilium's images point it.
ENTRYPOINT='["/usr/bin/cilium-operator-generic"]' IMAGE_ENV=GOPS_CONFIG_DIR=/tmp hack/static-image.sh "$REPO/operator-generic:$CILIUM_VERSION" "$BIN_DIR/cilium-operator-generic=/usr/bin/cilium-operator-generic"
ENTRYPOINT='["/usr/bin/hubble-relay"]' USER_ID=65532 IMAGE_ENV=GOPS_CONFIG_DIR=/tmp hack/static-image.sh "$REPO/hubble-relay:$CILIUM_VERSION" "$BIN_DIR/hubble-relay=/usr/bin/hubble-relay"
