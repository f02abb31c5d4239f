#!/usr/bin/env bash
# Builds a local image of static binaries on a minimal base (what
# distroless/static holds for a Go program: root, nobody and nonroot
# 65532 users, CA certificates, /tmp), and prints its reference:
#
#   ENTRYPOINT='["/coredns"]' USER_ID=65532 IMAGE_ENV='K=V ...' hack/static-image.sh REF [SRC=DEST ...]
#
# make e2e builds the images kubeadm and Cilium's chart deploy this way from
# binaries built from the Go module proxy, since no registry can be reached.
# An image already built from the same files (label lrpdns.local/key) is
# kept. Needs a Docker engine (DOCKER_HOST).
set -o errexit -o nounset -o pipefail
ref=$1; shift
ENTRYPOINT=${ENTRYPOINT:-}
IMAGE_ENV=${IMAGE_ENV:-}
USER_ID=${USER_ID:-0}
key=$( {
  echo "$ENTRYPOINT $USER_ID $IMAGE_ENV"
  sed -n '/^# --- base ---$/,$p' "$0"
  for f in "$@"; do echo "${f#*=}"; sha256sum < "${f%%=*}"; done
} | sha256sum | cut -c1-16)
if [[ "$(docker image inspect -f '{{index .Config.Labels "lrpdns.local/key"}}' "$ref" 2>/dev/null)" == "$key" ]]; then
  echo "$ref"; exit 0
fi
# --- base ---
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/rootfs/etc/ssl/certs" "$dir/rootfs/tmp" "$dir/rootfs/home/nonroot" "$dir/rootfs/root"
r=$dir/rootfs
printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$r/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' > "$r/etc/group"
echo 'hosts: files dns' > "$r/etc/nsswitch.conf"
cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/"
chmod 1777 "$r/tmp"; chmod 700 "$r/root" "$r/home/nonroot"
for f in "$@"; do install -D -m 0755 "${f%%=*}" "$r/${f#*=}"; done
changes=(--change "LABEL lrpdns.local/key=$key" --change "USER $USER_ID"
  --change "ENV PATH=/usr/local/bin:/usr/bin:/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt${IMAGE_ENV:+ $IMAGE_ENV}")
if [[ -n "$ENTRYPOINT" ]]; then changes+=(--change "ENTRYPOINT $ENTRYPOINT"); fi
chown -R 0:0 "$r"; chown 65532:65532 "$r/home/nonroot"
tar --sort=name --numeric-owner --mtime=@0 -C "$r" -c . | docker import "${changes[@]}" - "$ref" >/dev/null
echo "$ref"
