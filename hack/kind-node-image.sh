#!/usr/bin/env bash
# Builds the kind node image for the Kubernetes version we pin, here, from
# what this machine reaches: a Debian root filesystem (hack/rootfs.sh), kind's
# own images/base files from the sigs.k8s.io/kind module, and every binary
# and image built from the Go module proxy:
#   containerd, ctr, the runc shim; runc (with seccomp); crictl; the CNI
#   plugins kind ships; kubelet, kubeadm, kubectl; and, preloaded into the
#   node's containerd as `kind build node-image` does, the images kubeadm
#   deploys (`kubeadm config images list`: kube-apiserver,
#   kube-controller-manager, kube-scheduler, etcd, pause), each built from
#   the release kubeadm names, and CoreDNS at the release go.mod pins
#   (make e2e points kubeadm at it).
# The steps are those of kind's images/base/Dockerfile and of `kind build
# node-image` (pkg/build/nodeimage), which cannot run here: both download
# release binaries or pull images.
#
# Two differences from kind's image, both for machines whose capability
# bounding set lacks one (here CAP_SYS_RESOURCE), both no-ops elsewhere:
# containerd runs runc through runc-capfilter (e2e/kind/cmd/runc-capfilter),
# which takes capabilities the node lacks out of a privileged container's
# spec, so Cilium's agent runs; and restrict_oom_score_adj is on, as kind
# sets it for rootless nodes.
#
# Needs a Docker engine (DOCKER_HOST) and root. Cached by content: the image
# tag carries a key of the versions and of this script, kind's files and
# the filter, so a warm run builds nothing. Prints the image reference;
# EXTRA_IMAGES="ref ..." preloads those local images too (Cilium's), and
# changes the key.
set -o errexit -o nounset -o pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

K8S_VERSION=${K8S_VERSION:-v1.36.4}
CONTAINERD_VERSION=v2.4.2
RUNC_VERSION=v1.4.3
CRICTL_VERSION=v1.37.0
CNI_PLUGINS_VERSION=v1.9.1
EXTRA_IMAGES=${EXTRA_IMAGES:-}
NODE_PACKAGES=systemd,systemd-sysv,dbus,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,bash,ca-certificates,curl,jq,procps
log() { echo "kind-node-image: $*" >&2; }

KIND_DIR=$(GOFLAGS='' go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
extra_ids=""
for img in $EXTRA_IMAGES; do extra_ids+="$img=$(docker image inspect -f '{{.Id}}' "$img") "; done
key=$( {
  echo "$K8S_VERSION $KIND_VERSION $CONTAINERD_VERSION $RUNC_VERSION $CRICTL_VERSION $CNI_PLUGINS_VERSION $NODE_PACKAGES $extra_ids"
  cat "$0" hack/static-image.sh e2e/kind/capfilter/capfilter.go e2e/kind/cmd/runc-capfilter/main.go
  (cd "$KIND_DIR/images/base/files" && find . -type f | sort | xargs sha256sum)
} | sha256sum | cut -c1-12)
IMAGE=lrpdns.local/kind-node:$K8S_VERSION-$key
if docker image inspect "$IMAGE" >/dev/null 2>&1; then echo "$IMAGE"; exit 0; fi
start=$SECONDS
WORK=$LRPDNS_CACHE/build/kind-node
BINS=$LRPDNS_CACHE/kind-node-bins/$CONTAINERD_VERSION-$RUNC_VERSION-$CRICTL_VERSION-$CNI_PLUGINS_VERSION
mkdir -p "$WORK" "$BINS"
export GOCACHE=${LRPDNS_GOCACHE:-$LRPDNS_CACHE/gocache} GOFLAGS=-mod=mod

# gobin NAME MODULE/PATH@VERSION [go build flags...]: go install into BINS.
gobin() {
  local name=$1 pkg=$2; shift 2
  [[ -x "$BINS/$name" ]] && return
  log "building $name ($pkg)"
  GOBIN="$BINS/.gobin" CGO_ENABLED=${CGO:-0} go install -trimpath "$@" "$pkg"
  mv "$BINS/.gobin/$(basename "${pkg%@*}")" "$BINS/$name"
}
ctrd=github.com/containerd/containerd/v2
ctrd_ld="-s -w -X $ctrd/version.Version=$CONTAINERD_VERSION -X $ctrd/version.Package=$ctrd"
gobin containerd "$ctrd/cmd/containerd@$CONTAINERD_VERSION" -tags "no_btrfs no_devmapper no_zfs no_aufs" -ldflags "$ctrd_ld"
gobin ctr "$ctrd/cmd/ctr@$CONTAINERD_VERSION" -ldflags "$ctrd_ld"
gobin containerd-shim-runc-v2 "$ctrd/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" -ldflags "$ctrd_ld"
if [[ ! -x "$BINS/runc" ]]; then
  # runc needs cgo (its nsenter) and libseccomp for pods' seccomp profiles;
  # static, as kind's is.
  if [[ ! -f /usr/lib/x86_64-linux-gnu/libseccomp.a && ! -f /usr/lib/aarch64-linux-gnu/libseccomp.a ]]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libseccomp-dev pkg-config >/dev/null
  fi
  CGO=1 gobin runc "github.com/opencontainers/runc@$RUNC_VERSION" -tags "seccomp netgo osusergo urfave_cli_no_docs" \
    -ldflags "-s -w -X main.version=${RUNC_VERSION#v} -extldflags -static"
fi
gobin crictl "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION" -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION"
cni_ld="-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$CNI_PLUGINS_VERSION"
for p in ipam/host-local main/loopback main/ptp meta/portmap; do
  gobin "${p#*/}" "github.com/containernetworking/plugins/plugins/$p@$CNI_PLUGINS_VERSION" -ldflags "$cni_ld"
done
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BINS/runc-capfilter" ./e2e/kind/cmd/runc-capfilter

K8S=$(K8S_VERSION=$K8S_VERSION hack/k8s-bins.sh --all --kubectl --node)
# What kubeadm deploys, as `kind build node-image` asks it.
mapfile -t wanted < <("$K8S/kubeadm" config images list --kubernetes-version "$K8S_VERSION" 2>/dev/null)
tag_of() { local i; for i in "${wanted[@]}"; do [[ "$i" == *"/$1:"* ]] && { echo "${i##*:}"; return; }; done; log "kubeadm lists no $1 image"; return 1; }
# CoreDNS: the release go.mod pins (the one make bench and the lab run)
# rather than kubeadm's; make e2e tells kubeadm so (dns.imageTag).
etcd_tag=$(tag_of etcd) coredns_tag=$COREDNS_VERSION pause_tag=$(tag_of pause)
ETCD=$(K8S_VERSION=$K8S_VERSION ETCD_VERSION=v${etcd_tag%-*} hack/k8s-bins.sh)/etcd
COREDNS=$(hack/coredns-bin.sh "$coredns_tag")
K8S_SRC=$(GOFLAGS='' go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [[ ! -x "$BINS/pause-$pause_tag" ]]; then
  log "building pause $pause_tag from k8s.io/kubernetes@$K8S_VERSION build/pause/linux/pause.c"
  gcc -Os -Wall -Werror -static -DVERSION="v$pause_tag" -o "$BINS/pause-$pause_tag" "$K8S_SRC/build/pause/linux/pause.c"
  strip "$BINS/pause-$pause_tag"
fi

# The images kubeadm deploys, under the names it deploys them by.
images=()
for c in kube-apiserver kube-controller-manager kube-scheduler; do
  images+=("$(hack/static-image.sh "registry.k8s.io/$c:$K8S_VERSION" "$K8S/$c=/usr/local/bin/$c")")
done
images+=("$(hack/static-image.sh "registry.k8s.io/etcd:$etcd_tag" "$ETCD=/usr/local/bin/etcd")")
images+=("$(ENTRYPOINT='["/coredns"]' hack/static-image.sh "registry.k8s.io/coredns/coredns:$coredns_tag" "$COREDNS=/coredns")")
pause_image="registry.k8s.io/pause:$pause_tag"
images+=("$(ENTRYPOINT='["/pause"]' hack/static-image.sh "$pause_image" "$BINS/pause-$pause_tag=/pause")")
for img in $EXTRA_IMAGES; do images+=("$img"); done

# The root filesystem: Debian, kind's files with the modes its Dockerfile
# gives them, the binaries, then its RUN steps.
rootfs=$WORK/rootfs
rm -rf "$rootfs"; mkdir -p "$rootfs"
tar -C "$rootfs" -xf "$(hack/rootfs.sh "$NODE_PACKAGES")"
files=$KIND_DIR/images/base/files
install -d -m 0755 "$rootfs/kind/bin" "$rootfs/LICENSES" "$rootfs/etc/containerd" "$rootfs/etc/systemd/system/kubelet.service.d"
install -m 0755 "$files"/usr/local/bin/* "$rootfs/usr/local/bin/"
(cd "$files/kind" && find . -type f | while read -r f; do install -D -m 0644 "$f" "$rootfs/kind/$f"; done)
install -m 0755 "$files"/kind/bin/* "$rootfs/kind/bin/"
install -m 0644 "$files"/etc/crictl.yaml "$rootfs/etc/"
install -m 0644 "$files"/etc/default/* "$rootfs/etc/default/"
install -m 0644 "$files"/etc/sysctl.d/* "$rootfs/etc/sysctl.d/"
find "$files/etc/systemd/system" -maxdepth 1 -type f -exec install -m 0644 {} "$rootfs/etc/systemd/system/" \;
install -m 0644 "$files"/etc/systemd/system/kubelet.service.d/* "$rootfs/etc/systemd/system/kubelet.service.d/"
# kind's containerd config, with the pause image kubeadm names, runc
# through the capability filter, and restrict_oom_score_adj, as kind sets it
# for rootless nodes: lowering a process's oom_score_adj below containerd's
# own (kubelet asks -998 for sandboxes) needs CAP_SYS_RESOURCE.
sed -e "s|sandbox_image = .*|sandbox_image = \"$pause_image\"|" -e "s|restrict_oom_score_adj = false|restrict_oom_score_adj = true|" \
  "$files/etc/containerd/config.toml" > "$rootfs/etc/containerd/config.toml"
grep -q 'restrict_oom_score_adj = true' "$rootfs/etc/containerd/config.toml" || { log "containerd config: restrict_oom_score_adj not set"; exit 1; }
sed -i -E 's#^( *\[plugins\."io\.containerd\.grpc\.v1\.cri"\.containerd\.runtimes\.(runc|test-handler)\.options\])$#\1\n    BinaryName = "/usr/local/sbin/runc-capfilter"#' "$rootfs/etc/containerd/config.toml"
grep -c 'BinaryName = "/usr/local/sbin/runc-capfilter"' "$rootfs/etc/containerd/config.toml" | grep -qx 2 || { log "containerd config: BinaryName not set for both runtimes"; exit 1; }
for b in containerd ctr containerd-shim-runc-v2 crictl; do install -m 0755 "$BINS/$b" "$rootfs/usr/local/bin/"; done
install -m 0755 "$BINS/runc" "$BINS/runc-capfilter" "$rootfs/usr/local/sbin/"
install -d -m 0755 "$rootfs/opt/cni/bin"
for b in host-local loopback ptp portmap; do install -m 0755 "$BINS/$b" "$rootfs/opt/cni/bin/"; done
for b in kubelet kubeadm kubectl; do install -m 0755 "$K8S/$b" "$rootfs/usr/bin/"; done
"$BINS/ctr" oci spec | jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' |
  jq 'del(.process.rlimits)' > "$rootfs/etc/containerd/cri-base.json"
echo "$K8S_VERSION" > "$rootfs/kind/version"
mkdir -p "$rootfs/etc/kubernetes/manifests"
find "$rootfs/lib/systemd/system/sysinit.target.wants/" -name "systemd-tmpfiles-setup.service" -delete
rm -f "$rootfs"/lib/systemd/system/multi-user.target.wants/* "$rootfs"/etc/systemd/system/*.wants/* \
  "$rootfs"/lib/systemd/system/local-fs.target.wants/* "$rootfs"/lib/systemd/system/sockets.target.wants/*udev* \
  "$rootfs"/lib/systemd/system/sockets.target.wants/*initctl* "$rootfs"/lib/systemd/system/basic.target.wants/*
echo "ReadKMsg=no" >> "$rootfs/etc/systemd/journald.conf"
ln -sf /usr/lib/systemd/systemd "$rootfs/sbin/init"
chroot "$rootfs" systemctl enable kubelet.service containerd.service undo-mount-hacks.service >/dev/null 2>&1
chroot "$rootfs" systemctl mask systemd-binfmt.service >/dev/null 2>&1
base=lrpdns.local/kind-base:$key
tar --sort=name --numeric-owner -C "$rootfs" -c . | docker import \
  --change 'ENV container=docker' \
  --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' - "$base" >/dev/null
rm -rf "$rootfs"

# Preload the images into the node's containerd, as kind build node-image
# does: containerd in a build container, ctr import without unpacking.
id=lrpdns-kind-build-$key
docker rm -f "$id" >/dev/null 2>&1 || true
docker run -d --name "$id" --entrypoint=sleep --security-opt seccomp=unconfined "$base" infinity >/dev/null
trap 'docker rm -f "$id" >/dev/null 2>&1 || true' EXIT
docker exec "$id" bash -c 'nohup containerd > /var/log/containerd-build.log 2>&1 &'
for i in 0 1 2 3 4 5; do docker exec "$id" test -S /run/containerd/containerd.sock && break; sleep "$i"; done
docker exec "$id" ctr info >/dev/null
for img in "${images[@]}"; do
  log "preloading $img"
  docker save "$img" | docker exec -i "$id" ctr --namespace=k8s.io images import --label=io.cri-containerd.pinned=pinned \
    --all-platforms --no-unpack --digests - >/dev/null
done
docker exec "$id" ctr --namespace=k8s.io images list -q | grep -v '^sha256:' | sed 's/^/kind-node-image:   /' >&2
docker exec "$id" pkill containerd || true
sleep 1
docker commit --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' "$id" "$base-loaded" >/dev/null
# systemd exits on SIGRTMIN+3 (import and commit cannot set a stop signal).
printf 'FROM %s\nSTOPSIGNAL SIGRTMIN+3\n' "$base-loaded" | DOCKER_BUILDKIT=1 docker build -q -t "$IMAGE" - >/dev/null
docker rmi "$base-loaded" "$base" >/dev/null 2>&1 || true
log "built $IMAGE in $((SECONDS - start))s"
echo "$IMAGE"
