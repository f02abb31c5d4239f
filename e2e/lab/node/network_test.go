package node

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestCNIAddresses(t *testing.T) {
	// A dual-stack result as cilium-cni prints it: IPv6 first.
	out := []byte(`{"cniVersion":"0.3.1","interfaces":[{"name":"eth0"}],"ips":[` +
		`{"version":"6","address":"fd00:10:244::a1/128","gateway":"fd00:10:244::5"},` +
		`{"version":"4","address":"10.244.0.17/32","gateway":"10.244.0.161"}]}`)
	ips, err := cniAddresses(out)
	if err != nil || !slices.Equal(ips, []string{"10.244.0.17", "fd00:10:244::a1"}) {
		t.Errorf("cniAddresses = %q, %v; want both families, IPv4 first", ips, err)
	}
	for _, bad := range []string{`{"ips":[]}`, `not json`, `{"ips":[{"address":"10.244.0.17"}]}`} {
		if ips, err := cniAddresses([]byte(bad)); err == nil {
			t.Errorf("cniAddresses(%s) = %q, want an error", bad, ips)
		}
	}
}

// TestHostNetworkPod: a hostNetwork pod runs in the node's network
// namespace with the node's address, never one the lab creates or removes;
// without --node-netns it is refused.
func TestHostNetworkPod(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "classic", UID: "0123456789"}, Spec: corev1.PodSpec{HostNetwork: true}}
	a := New(Config{NodeIP: "10.99.0.2", NodeNetns: "lrpdns-node", Dir: t.TempDir()}, nil)
	p := newPodRuntime(a, pod)
	ips, err := p.network()
	if err != nil || p.netns != "lrpdns-node" || !slices.Equal(ips, []string{"10.99.0.2"}) {
		t.Errorf("netns %q, addresses %q, %v; want the node's", p.netns, ips, err)
	}
	if _, err := newPodRuntime(New(Config{NodeIP: "10.99.0.2"}, nil), pod).network(); err == nil {
		t.Error("hostNetwork pod without --node-netns: no error")
	}
}
