#!/usr/bin/env bash
# Builds a Debian root filesystem with debootstrap (from Debian's mirror, the
# only package source this kind of machine reaches), cached outside the
# clone by suite and package list, and prints the path of its tarball:
#
#   hack/rootfs.sh PACKAGE,PACKAGE,...   # minbase plus these ("" for none)
#
# make e2e's images start from these: the kind node, Cilium's agent, the
# suite's resolver-library clients, and the Go builder for our Dockerfile.
# Needs root (debootstrap).
set -o errexit -o nounset -o pipefail
source "$(dirname "$0")/lib.sh"

SUITE=${ROOTFS_SUITE:-bookworm}
MIRROR=${ROOTFS_MIRROR:-http://deb.debian.org/debian}
packages=${1:-}
# The tarball's name says what it holds; its key, how it was made.
key=$(printf '%s\n' "$SUITE" "$packages" "$(sed -n '/^# --- make ---$/,$p' "$0")" | sha256sum | cut -c1-12)
out="$LRPDNS_CACHE/rootfs/$SUITE-$key.tar"
if [[ -f "$out" ]]; then echo "$out"; exit 0; fi
[[ $EUID -eq 0 ]] || { echo "rootfs: debootstrap needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}
# --- make ---
dir="$LRPDNS_CACHE/build/rootfs-$SUITE-$key"
rm -rf "$dir"
mkdir -p "$dir" "$(dirname "$out")"
start=$SECONDS
echo "rootfs: debootstrap $SUITE minbase${packages:+ + $packages} (a minute or two)" >&2
include=()
if [[ -n "$packages" ]]; then include=("--include=$packages"); fi
if ! debootstrap --variant=minbase "${include[@]}" "$SUITE" "$dir" "$MIRROR" > "$dir.log" 2>&1; then
  tail -20 "$dir.log" >&2
  exit 1
fi
# No package cache or lists in an image; one resolver file a container
# runtime replaces.
rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir"/var/log/*.log
: > "$dir/etc/resolv.conf"
tar --sort=name --numeric-owner -C "$dir" -cf "$out.tmp" .
mv "$out.tmp" "$out"
rm -rf "$dir" "$dir.log"
echo "rootfs: $out in $((SECONDS - start))s" >&2
echo "$out"
