package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoClusterSideDependencies keeps the per-node image lean: the cache
// never links the controller, Cilium or a Kubernetes client.
func TestNoClusterSideDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("go list -deps printed %d packages; expected CoreDNS's many", len(deps))
	}
	for _, dep := range deps {
		for _, forbidden := range []string{"github.com/cilium/", "sigs.k8s.io/controller-runtime", "k8s.io/client-go", "github.com/lrpdns/lrpdns/pkg/lrp"} {
			if strings.HasPrefix(dep, forbidden) {
				t.Errorf("node-cache depends on %s", dep)
			}
		}
	}
}
