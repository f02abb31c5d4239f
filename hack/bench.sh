#!/usr/bin/env bash
# Benchmarks, each with the command that produced it in its output:
#  - node-cache vs stock CoreDNS (same module version) with the reference
#    node-local-dns Corefile and with node-cache's own, cache hit and cache
#    miss over UDP on loopback: QPS, p50/p99, CPU per 100k, idle/loaded RSS;
#  - node-cache with every cache full (BenchmarkFullCacheRSS): its RSS;
#  - the hot path: a hit's work with and without its metrics, and the
#    heap of a full store;
#  - the controller: convergence from DaemonSet ready to policy created,
#    its RSS with 100 vs 10,000 unrelated pods, and a rollout on 100, 1,000
#    and 5,000 simulated nodes: reconciles, API writes and Events per status
#    update (real kube-apiserver + etcd).
#   BENCHTIME=5s COUNT=3 make bench
#   NODE_CACHE_ARGS="--prefetch=false" make bench   # node-cache's column
#     with other flags, to measure what a default costs
#   BASE=/path/to/node-cache make bench   # another build in a column of its
#     own (node-cache-base), in the same interleaved rounds
set -o errexit -o nounset -o pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
hack/build.sh >/dev/null
LRPDNS_NODE_CACHE_BIN="$BIN/node-cache"
LRPDNS_COREDNS_BIN=$(hack/coredns-bin.sh)
KUBEBUILDER_ASSETS=$(hack/k8s-bins.sh)
LRPDNS_BENCH_NODE_CACHE_ARGS=${NODE_CACHE_ARGS:-}
LRPDNS_BENCH_NODE_CACHE_BASE=${BASE:-}
export LRPDNS_NODE_CACHE_BIN LRPDNS_COREDNS_BIN KUBEBUILDER_ASSETS LRPDNS_BENCH_NODE_CACHE_ARGS LRPDNS_BENCH_NODE_CACHE_BASE
echo "node-cache: $LRPDNS_NODE_CACHE_BIN ($VERSION); stock CoreDNS: $LRPDNS_COREDNS_BIN ($COREDNS_VERSION)"
echo "cores: $(nproc); the load generator and the server share them"
if [[ -n "$LRPDNS_BENCH_NODE_CACHE_ARGS" ]]; then echo "node-cache's column with: $LRPDNS_BENCH_NODE_CACHE_ARGS"; fi
run() { echo "+ $*"; "$@"; }
# Rounds, not -count: each round runs every server once (interleaved).
export LRPDNS_BENCH_ROUNDS=${COUNT:-1}
echo "BenchmarkCache: $LRPDNS_BENCH_ROUNDS round(s)"
run go test -run '^$' -bench 'BenchmarkCache' -benchtime "${BENCHTIME:-3s}" ./internal/dnsbench/
run go test -run '^$' -bench 'BenchmarkConvergence' -benchtime 20x -count "${COUNT:-1}" ./pkg/lrp/
run go test -run '^$' -bench 'BenchmarkControllerRSS' -benchtime 1x -timeout 30m ./pkg/lrp/
LRPDNS_SCALE_NODES=${SCALE_NODES:-100,1000,5000} run go test -count=1 -run 'TestRolloutAtScale' -v -timeout 30m ./pkg/lrp/ | grep -E 'scale_test|^(---|ok|FAIL)'
run go test -run '^$' -bench 'BenchmarkFullCacheRSS' -benchtime 1x ./internal/dnsbench/
run go test -run '^$' -bench 'BenchmarkAnswer' -count "${COUNT:-1}" ./pkg/nodecache/internal/hot/
run go test -run '^$' -bench 'BenchmarkFullStoreHeap' -benchtime 1x ./pkg/nodecache/internal/hot/
