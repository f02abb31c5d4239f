package verify

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/cilium/cilium/hubble/pkg/printer"
	"google.golang.org/protobuf/encoding/protojson"
)

// WriteText prints, for each node, its verdict, one line per check and,
// under it, the evidence flow the way `hubble observe` prints it; then the
// verdict over all nodes.
func WriteText(w io.Writer, rep Report) error {
	var b strings.Builder
	var passed, failed, noData []string
	for _, n := range rep.Nodes {
		fmt.Fprintf(&b, "node %s: %s\n", n.Node, n.Status)
		switch n.Status {
		case Pass:
			passed = append(passed, n.Node)
		case Fail:
			failed = append(failed, n.Node)
		default:
			noData = append(noData, n.Node)
		}
		for _, r := range n.Checks {
			opt := ""
			if r.Optional {
				opt = " (optional)"
			}
			fmt.Fprintf(&b, "  %-8s %s%s: %s [%d of %d flows]\n", r.Status, r.Description, opt, r.Why, r.Matched, r.InScope)
			if r.Evidence != nil {
				var buf bytes.Buffer
				p := printer.New(printer.Compact(), printer.Writer(&buf), printer.WithColor("never"))
				if err := p.WriteProtoFlow(r.Evidence); err != nil {
					return fmt.Errorf("failed to print evidence: %w", err)
				}
				fmt.Fprintf(&b, "           %s\n", strings.TrimSpace(buf.String()))
			}
		}
	}
	nodes := fmt.Sprintf("passed: %s; failed: %s; no client DNS traffic: %s", list(passed), list(failed), list(noData))
	if rep.Passed() {
		fmt.Fprintf(&b, "PASS: the node-local DNS path is proven by these flows on every node with clients (%s)\n", nodes)
	} else {
		fmt.Fprintf(&b, "FAIL: the node-local DNS path is not proven (%s)\n", nodes)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func list(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// WriteJSON prints {"pass": bool, "nodes": [{"node", "status", "checks":
// [...]}]} with each evidence flow as Hubble's own JSON.
func WriteJSON(w io.Writer, rep Report) error {
	type jsonResult struct {
		Result
		Evidence json.RawMessage `json:"evidence,omitempty"`
	}
	type jsonNode struct {
		Node   string       `json:"node"`
		Status Status       `json:"status"`
		Checks []jsonResult `json:"checks"`
	}
	out := struct {
		Pass  bool       `json:"pass"`
		Nodes []jsonNode `json:"nodes"`
	}{Pass: rep.Passed(), Nodes: []jsonNode{}}
	for _, n := range rep.Nodes {
		jn := jsonNode{Node: n.Node, Status: n.Status}
		for _, r := range n.Checks {
			jr := jsonResult{Result: r}
			if r.Evidence != nil {
				b, err := protojson.Marshal(r.Evidence)
				if err != nil {
					return fmt.Errorf("failed to encode evidence: %w", err)
				}
				jr.Evidence = b
			}
			jn.Checks = append(jn.Checks, jr)
		}
		out.Nodes = append(out.Nodes, jn)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
