#!/usr/bin/env bash
# The test command: unit tests, DNS data-path tests on loopback, and the
# controller's integration tests on a real kube-apiserver + etcd, which
# hack/k8s-bins.sh builds once from the module proxy (minutes cold, seconds warm),
# as hack/helm-bin.sh builds helm for the chart's tests.
set -o errexit -o nounset -o pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
KUBEBUILDER_ASSETS=$("$REPO_ROOT/hack/k8s-bins.sh" --kubectl) # kubectl: the chart's --dry-run=server test
# The chart's tests run helm template and helm lint.
LRPDNS_HELM=$("$REPO_ROOT/hack/helm-bin.sh")
export KUBEBUILDER_ASSETS LRPDNS_HELM
go test -count=1 "$@" ./...
# The lab's small kubelet is concurrent code: its tests run with the race
# detector too.
go test -race -count=1 "$@" ./e2e/lab/...
