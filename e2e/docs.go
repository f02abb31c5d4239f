package e2e

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// fqdnPolicyYAML is docs/install.md's client policy with toFQDNs, as
// written, for the suite's clients: their namespace and label, this
// suite's cache label, and name for api.example.com. A doc that no longer
// has what is replaced is an error.
func fqdnPolicyYAML(cacheApp, name string) (string, error) {
	blocks, err := installDocBlocks("yaml")
	if err != nil {
		return "", err
	}
	for _, y := range blocks {
		if !strings.Contains(y, "toFQDNs") {
			continue
		}
		for _, r := range []struct{ old, new string }{
			{"name: allow-dns-and-api", "name: " + fqdnPolicyName},
			{"namespace: my-app", "namespace: default"},
			{"endpointSelector: {}", "endpointSelector:\n    matchLabels:\n      app: lrpdns-e2e-client"},
			{"k8s-app: node-local-dns", "k8s-app: " + cacheApp},
			{"matchName: api.example.com", "matchName: " + name},
		} {
			if !strings.Contains(y, r.old) {
				return "", fmt.Errorf("docs/install.md's toFQDNs policy has no %q", r.old)
			}
			y = strings.Replace(y, r.old, r.new, 1)
		}
		return y, nil
	}
	return "", errors.New("docs/install.md has no policy with toFQDNs")
}

// fqdnPolicyName is the name the suite gives docs/install.md's toFQDNs
// policy.
const fqdnPolicyName = "lrpdns-e2e-client-dns"

// The objects docs/install.md's `kubectl patch` commands let port 5354
// into: the network-policy component's policy for the cache, and its
// toFQDNs client policy.
const (
	cachePolicyDoc  = "ciliumnetworkpolicy node-local-dns"
	clientPolicyDoc = "ciliumnetworkpolicy allow-dns-and-api"
)

// installDocBlocks are docs/install.md's code blocks in lang, as written.
func installDocBlocks(lang string) ([]string, error) {
	b, err := os.ReadFile("../docs/install.md")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, block := range strings.Split(string(b), "```"+lang+"\n")[1:] {
		code, _, _ := strings.Cut(block, "```")
		out = append(out, code)
	}
	return out, nil
}

// docPatch is the JSON patch of docs/install.md's `kubectl patch` command
// on the object named, or "" (a patch that fails).
func docPatch(object string) string {
	blocks, _ := installDocBlocks("sh")
	for _, cmd := range blocks {
		if _, after, ok := strings.Cut(cmd, "patch "+object+" --type=json -p='"); ok {
			p, _, _ := strings.Cut(after, "'")
			return p
		}
	}
	return ""
}

// verifyDocCommands are the commands of docs/verify.md's first code block,
// as written, comments left out.
func verifyDocCommands() ([]string, error) {
	b, err := os.ReadFile("../docs/verify.md")
	if err != nil {
		return nil, err
	}
	parts := strings.SplitN(string(b), "```sh\n", 2)
	if len(parts) < 2 {
		return nil, errors.New("docs/verify.md has no sh code block")
	}
	block, _, _ := strings.Cut(parts[1], "```")
	var out []string
	for line := range strings.SplitSeq(block, "\n") {
		cmd, _, _ := strings.Cut(line, "#")
		if cmd = strings.TrimSpace(cmd); cmd != "" {
			out = append(out, cmd)
		}
	}
	return out, nil
}
