package zones

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lrpdns/lrpdns/pkg/corefile"
)

func TestParse(t *testing.T) {
	got, err := Parse("z.yaml", []byte(`
zones:
- zone: corp.example
  servers: ["10.0.0.10", "[fd00::10]:5353"]
  protocol: tcp
  policy: sequential
  maxConcurrent: 100
- zone: plain.example
  servers: [10.0.0.11]
`))
	if err != nil {
		t.Fatal(err)
	}
	_, _, def := corefile.DefaultForwards()
	want := []corefile.StubDomain{
		{Domain: "corp.example", Servers: []netip.AddrPort{netip.MustParseAddrPort("10.0.0.10:53"), netip.MustParseAddrPort("[fd00::10]:5353")},
			Forward: corefile.Forward{Protocol: corefile.ProtocolTCP, Policy: corefile.PolicySequential, MaxConcurrent: 100}},
		{Domain: "plain.example", Servers: []netip.AddrPort{netip.MustParseAddrPort("10.0.0.11:53")}, Forward: def},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("zones (-want +got):\n%s", diff)
	}
}

// TestParseErrors: each refusal names the file, the field and the value.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"not YAML", "zones: [", `zones file z.yaml`},
		{"unknown field", "zones:\n- zone: a.example\n  servers: [10.0.0.1]\n  force_tcp: true\n", `"unknown field force_tcp"`},
		{"not a list", "zones: corp.example\n", `zones file z.yaml`},
		{"bad domain", "zones:\n- zone: 'a.example {'\n  servers: [10.0.0.1]\n", `zones file z.yaml zones[0].zone "a.example {"`},
		{"bad server", "zones:\n- zone: a.example\n  servers: [10.0.0.1, host.example]\n", `zones file z.yaml zones[0].servers[1] "host.example"`},
		{"too many", "zones:\n" + strings.Repeat("- zone: a.example\n  servers: [10.0.0.1]\n", MaxZones+1), `"33 zones": want at most 32`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("z.yaml", []byte(tc.text))
			var fe *corefile.FieldError
			if !errors.As(err, &fe) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse() error = %v, want a field error containing %s", err, tc.want)
			}
		})
	}
}

func TestRead(t *testing.T) {
	dir := t.TempDir()
	if z, err := Read(filepath.Join(dir, "missing.yaml")); err != nil || z != nil {
		t.Errorf("missing file: %v, %v; want no zone, no error", z, err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte("zones: []\n"+strings.Repeat("#", MaxBytes)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(big); err == nil || !strings.Contains(err.Error(), "at most 65536 bytes") {
		t.Errorf("oversized file: error %v, want the limit named", err)
	}
}

// FuzzParse: whatever the file says, a zone that is accepted renders as
// exactly one server block of its own; no text in it opens another.
func FuzzParse(f *testing.F) {
	f.Add([]byte("zones:\n- zone: corp.example\n  servers: [10.0.0.10]\n  protocol: tcp\n"))
	f.Add([]byte("zones:\n- zone: \"a.example }\\n. {\"\n  servers: [10.0.0.10]\n"))
	f.Add([]byte("zones:\n- zone: a.example\n  servers: [\"10.0.0.1 }\"]\n  policy: \"random }\"\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		z, err := Parse("fuzz.yaml", b)
		if err != nil {
			return
		}
		cluster, external, stub := corefile.DefaultForwards()
		c := &corefile.Config{
			ClusterDomain: "cluster.local", ClusterDNS: []netip.AddrPort{netip.MustParseAddrPort("10.96.0.11:53")},
			NodeResolvers: []netip.AddrPort{netip.MustParseAddrPort("10.99.0.1:53")}, Zones: z,
			ClusterForward: cluster, ExternalForward: external, StubForward: stub,
			HealthAddr: ":8080", ReadyAddr: ":8181", MetricsAddr: ":9253", Cache: corefile.DefaultCache(),
		}
		text, err := corefile.Render(c)
		if err != nil {
			return
		}
		blocks := 0
		for _, l := range strings.Split(string(text), "\n") {
			if strings.HasSuffix(l, "{") && !strings.HasPrefix(l, " ") {
				blocks++
			}
		}
		if want := 2 + len(z); blocks != want {
			t.Errorf("%d server blocks, want %d:\n%s", blocks, want, text)
		}
	})
}
