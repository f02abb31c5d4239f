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

// WriteText prints one line per check and, under it, the evidence flow the
// way `hubble observe` prints it.
func WriteText(w io.Writer, rs []Result) error {
	var b strings.Builder
	for _, r := range rs {
		opt := ""
		if r.Optional {
			opt = " (optional)"
		}
		fmt.Fprintf(&b, "%-8s %s%s: %s [%d of %d flows]\n", r.Status, r.Description, opt, r.Why, r.Matched, r.InScope)
		if r.Evidence != nil {
			var buf bytes.Buffer
			p := printer.New(printer.Compact(), printer.Writer(&buf), printer.WithColor("never"))
			if err := p.WriteProtoFlow(r.Evidence); err != nil {
				return fmt.Errorf("failed to print evidence: %w", err)
			}
			fmt.Fprintf(&b, "         %s\n", strings.TrimSpace(buf.String()))
		}
	}
	verdict := "FAIL: the node-local DNS path is not proven"
	if Passed(rs) {
		verdict = "PASS: the node-local DNS path is proven by these flows"
	}
	fmt.Fprintln(&b, verdict)
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON prints {"pass": bool, "checks": [...]} with each evidence flow
// as Hubble's own JSON.
func WriteJSON(w io.Writer, rs []Result) error {
	type jsonResult struct {
		Result
		Evidence json.RawMessage `json:"evidence,omitempty"`
	}
	out := struct {
		Pass   bool         `json:"pass"`
		Checks []jsonResult `json:"checks"`
	}{Pass: Passed(rs)}
	for _, r := range rs {
		jr := jsonResult{Result: r}
		if r.Evidence != nil {
			b, err := protojson.Marshal(r.Evidence)
			if err != nil {
				return fmt.Errorf("failed to encode evidence: %w", err)
			}
			jr.Evidence = b
		}
		out.Checks = append(out.Checks, jr)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
