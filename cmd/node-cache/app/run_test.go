package app

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRender: `node-cache render` prints the Corefile, or the refusal.
func TestRender(t *testing.T) {
	dir := t.TempDir()
	resolv := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 10.0.0.2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"render", "--cluster-dns", "10.96.0.11", "--resolv-conf", resolv, "--kube-dns-config-dir", filepath.Join(dir, "none")}
	var out bytes.Buffer
	if err := Run(context.Background(), args, &out, io.Discard); err != nil {
		t.Fatalf("render: %v", err)
	}
	for _, want := range []string{"cluster.local:5353 in-addr.arpa:5353 ip6.arpa:5353 {", "forward . 10.96.0.11:53 {", "forward . 10.0.0.2:53 {"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("Corefile lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	err := Run(context.Background(), append(args, "--kube-dns-ips", "10.0.0.2"), &out, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "a loop") || out.Len() != 0 {
		t.Errorf("render with the node resolver as kube-dns: %v, printed %q; want the refusal and nothing printed", err, out.String())
	}
	if err := Run(context.Background(), []string{"-h"}, io.Discard, io.Discard); err != nil {
		t.Errorf("-h: %v", err)
	}
}
