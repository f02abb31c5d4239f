#!/usr/bin/env bash
# node-cache vs stock CoreDNS (same module version, same Corefile), cache hit
# and cache miss over UDP on loopback: QPS, p50/p99 latency, idle and loaded RSS.
#   BENCHTIME=5s COUNT=3 make bench
set -o errexit -o nounset -o pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
hack/build.sh >/dev/null
LRPDNS_NODE_CACHE_BIN="$BIN/node-cache"
LRPDNS_COREDNS_BIN=$(hack/coredns-bin.sh)
export LRPDNS_NODE_CACHE_BIN LRPDNS_COREDNS_BIN
echo "node-cache: $LRPDNS_NODE_CACHE_BIN ($VERSION); stock CoreDNS: $LRPDNS_COREDNS_BIN ($COREDNS_VERSION)"
echo "cores: $(nproc); load generator and server share them"
go test -run '^$' -bench 'BenchmarkCache' -benchtime "${BENCHTIME:-3s}" -count "${COUNT:-1}" ./internal/dnsbench/
