package node

import (
	"slices"
	"testing"
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
