#!/usr/bin/env bash
# make soak: hostile mixes against the real node-cache binary, in a memory
# cgroup of 128 MiB (half the DaemonSet's limit) when this host allows one (root,
# cgroup v1 or v2 memory controller), else with GOMEMLIMIT and an RSS check.
# A good client asks all the while. Prints a table; writes it and the
# cache's log to _artifacts/soak/.
#   SOAK_MIX=8s make soak    # length of each mix
set -o errexit -o nounset -o pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
hack/build.sh >/dev/null
export LRPDNS_NODE_CACHE_BIN="$BIN/node-cache" SOAK_ARTIFACTS="$REPO_ROOT/_artifacts/soak"
echo "node-cache: $LRPDNS_NODE_CACHE_BIN ($VERSION); cores: $(nproc); the attackers, the good client and the cache share them"
echo "+ go test -run TestSoak -v -count=1 ./internal/soak/"
go test -run TestSoak -v -count=1 -timeout 20m ./internal/soak/
