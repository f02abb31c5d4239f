// Package node is the lab's node agent: a small kubelet for one node in
// network namespaces. It runs every container of the Pods bound to its node
// as a process in the pod's own network namespace (set up through
// cilium-cni), with images mapped to binaries the lab built, ConfigMap and
// service-account volumes, the environment the kubelet would set, HTTP
// readiness and liveness probes, status written back, and graceful deletion.
//
// What it does not do: images, cgroups and resource limits, capabilities
// beyond running as root or as runAsUser, exec/TCP probes, init containers,
// volume kinds other than configMap, projected (token, ca.crt, namespace)
// and emptyDir, and mount paths outside /etc, /run and /var/run.
// It is test infrastructure; nothing shipped imports it.
package node
