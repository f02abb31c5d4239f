// Package e2e is the end-to-end proof on a real cluster with Cilium and
// Hubble: clients resolve through the node-local cache, `lrpdns verify`
// passes on the cluster's own flows, a rollout of the cache loses no query,
// and deleting the cache falls back to kube-dns.
//
// The tests carry the e2e build tag and talk to the cluster through Cluster,
// so kind (hack/e2e.sh) and other providers run the same suite.
package e2e
