package e2e

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// TestDocPatches: docs/install.md's two `kubectl patch` commands, which the
// port change runs as written, are there and are JSON patches that add port
// 5354 over UDP and TCP; make test runs it.
func TestDocPatches(t *testing.T) {
	for _, object := range []string{cachePolicyDoc, clientPolicyDoc} {
		p := docPatch(object)
		var ops []struct {
			Op, Path string
			Value    struct{ Port, Protocol string }
		}
		if err := json.Unmarshal([]byte(p), &ops); err != nil {
			t.Errorf("patch %s: %v: %q", object, err, p)
			continue
		}
		var got []string
		for _, o := range ops {
			got = append(got, o.Op+" "+o.Value.Port+"/"+o.Value.Protocol)
		}
		if want := []string{"add 5354/UDP", "add 5354/TCP"}; !slices.Equal(got, want) {
			t.Errorf("patch %s: %v, want %v", object, got, want)
		}
	}
}

// TestVerifyDocCommands: docs/verify.md opens with the three commands the
// suite runs as written: verify alone, against a Relay address, and fed by
// hubble observe filtered to the DNS ports.
func TestVerifyDocCommands(t *testing.T) {
	cmds, err := verifyDocCommands()
	if err != nil {
		t.Fatal(err)
	}
	if len(cmds) != 3 || cmds[0] != "lrpdns verify" || !strings.Contains(cmds[1], "--hubble-server localhost:4245") ||
		!strings.HasPrefix(cmds[2], "hubble observe") || !strings.Contains(cmds[2], "--port 53 --port 5353") || !strings.HasSuffix(cmds[2], "lrpdns verify --flows - --kubeconfig ~/.kube/config") {
		t.Errorf("docs/verify.md's commands %q", cmds)
	}
}
