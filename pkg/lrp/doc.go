// Package lrp is the controller that wires a node-local DNS cache into
// Cilium. From two inputs, the kube-dns Service and the node-cache
// DaemonSet, it owns two objects:
//
//   - the upstream Service (kube-dns-upstream): kube-dns's selector and DNS
//     ports under a ClusterIP of its own, which the redirect does not
//     match, so the cache's forwards reach CoreDNS instead of looping;
//   - the CiliumLocalRedirectPolicy: kube-dns's DNS ports redirected to the
//     cache pod on the same node, with port names taken from the Service and
//     port numbers from the DaemonSet's containers.
//
// Both carry an owner reference to the DaemonSet, and the controller deletes
// them itself when the DaemonSet goes, so DNS falls back to kube-dns.
//
// It never watches Pods and never writes when nothing changed; it never
// creates a redirect whose ports cannot match, or on a Cilium that would drop
// traffic while no cache pod is ready.
package lrp
