package corefile

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func validConfig() *Config {
	cluster, external, stub := DefaultForwards()
	return &Config{
		ClusterForward:  cluster,
		ExternalForward: external,
		StubForward:     stub,
		ClusterDomain:   "cluster.local",
		ClusterDNS:      []netip.AddrPort{netip.MustParseAddrPort("10.96.0.11:53")},
		NodeResolvers:   []netip.AddrPort{netip.MustParseAddrPort("[fd00::1]:53")},
		Port:            5353,
		HealthAddr:      ":8080",
		ReadyAddr:       ":8181",
		MetricsAddr:     ":9253",
		Lameduck:        5 * time.Second,
		Cache:           DefaultCache(),
	}
}

func TestValidateNamesFieldAndValue(t *testing.T) {
	t.Parallel()
	stub := func(d string, s ...string) StubDomain {
		sd := StubDomain{Domain: d}
		for _, a := range s {
			sd.Servers = append(sd.Servers, netip.MustParseAddrPort(a))
		}
		return sd
	}
	tests := []struct {
		name      string
		mutate    func(*Config)
		wantField string
		wantValue string
	}{
		{"bad cluster domain", func(c *Config) { c.ClusterDomain = "cluster local" }, "cluster domain", "cluster local"},
		{"root cluster domain", func(c *Config) { c.ClusterDomain = "." }, "cluster domain", "."},
		{"no cluster DNS", func(c *Config) { c.ClusterDNS = nil }, "cluster DNS", ""},
		{"cluster DNS port 0", func(c *Config) { c.ClusterDNS = []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:0")} }, "cluster DNS", "10.0.0.1:0"},
		{"unspecified resolver", func(c *Config) { c.NodeResolvers = []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:53")} }, "node resolvers", "0.0.0.0:53"},
		{"no node resolvers", func(c *Config) { c.NodeResolvers = nil }, "node resolvers", ""},
		{"stub is cluster domain", func(c *Config) { c.StubDomains = []StubDomain{stub("Cluster.Local.", "10.0.0.1:53")} }, "stub domain", "Cluster.Local."},
		{"stub is ip6.arpa", func(c *Config) { c.StubDomains = []StubDomain{stub("ip6.arpa", "10.0.0.1:53")} }, "stub domain", "ip6.arpa"},
		{"stub twice", func(c *Config) {
			c.StubDomains = []StubDomain{stub("acme.local", "10.0.0.1:53"), stub("ACME.local.", "10.0.0.2:53")}
		}, "stub domain", "ACME.local."},
		{"stub without servers", func(c *Config) { c.StubDomains = []StubDomain{stub("acme.local")} }, `stub domain "acme.local" servers`, ""},
		{"port", func(c *Config) { c.Port = 70000 }, "port", "70000"},
		{"health addr", func(c *Config) { c.HealthAddr = "8080" }, "health address", "8080"},
		{"metrics addr injection", func(c *Config) { c.MetricsAddr = ":9253 }\nwhoami {" }, "metrics address", ":9253 }\nwhoami {"},
		{"lameduck", func(c *Config) { c.Lameduck = -time.Second }, "lameduck", "-1s"},
		{"success TTL fraction", func(c *Config) { c.Cache.SuccessTTL = 1500 * time.Millisecond }, "cache success TTL", "1.5s"},
		{"denial capacity", func(c *Config) { c.Cache.DenialCapacity = 0 }, "cache denial capacity", "0"},
		{"stale mode", func(c *Config) { c.Cache.StaleMode = "lazy" }, "serve_stale mode", "lazy"},
		{"stale TTL", func(c *Config) { c.Cache.StaleTTL = 1500 * time.Millisecond }, "serve_stale TTL", "1.5s"},
		{"no forward set", func(c *Config) { c.ExternalForward = Forward{} }, "external forward protocol", ""},
		{"forward protocol", func(c *Config) { c.ClusterForward.Protocol = "force_tcp" }, "cluster forward protocol", "force_tcp"},
		{"forward policy", func(c *Config) { c.StubForward.Policy = "least_loaded" }, "stub domain forward policy", "least_loaded"},
		{"forward max concurrent", func(c *Config) { c.ClusterForward.MaxConcurrent = 0 }, "cluster forward max concurrent", "0"},
		{"zone also a stub domain", func(c *Config) {
			c.StubDomains = []StubDomain{stub("acme.local", "10.0.0.1:53")}
			z := stub("Acme.Local.", "10.0.0.2:53")
			z.Forward = c.StubForward
			c.Zones = []StubDomain{z}
		}, "zone", "Acme.Local."},
		{"zone policy", func(c *Config) {
			z := stub("corp.example", "10.0.0.2:53")
			z.Forward = c.StubForward
			z.Forward.Policy = "weighted"
			c.Zones = []StubDomain{z}
		}, `zone "corp.example" forward policy`, "weighted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := validConfig()
			tt.mutate(c)
			err := c.Validate()
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate() = %v, want *FieldError", err)
			}
			if fe.Field != tt.wantField || fe.Value != tt.wantValue || fe.Want == "" {
				t.Errorf("Validate() = %#v, want field %q value %q and what is accepted", fe, tt.wantField, tt.wantValue)
			}
			if _, err := Render(c); !errors.As(err, &fe) {
				t.Errorf("Render() error = %v, want the validation error", err)
			}
		})
	}
}

func TestRenderIsDeterministicAndBracketsIPv6(t *testing.T) {
	t.Parallel()
	c := validConfig()
	c.StubDomains = []StubDomain{
		{Domain: "zeta.local", Servers: []netip.AddrPort{netip.MustParseAddrPort("[fd00::53]:5300")}},
		{Domain: "acme.local", Servers: []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:53")}},
	}
	first, err := Render(c)
	if err != nil {
		t.Fatal(err)
	}
	c.StubDomains[0], c.StubDomains[1] = c.StubDomains[1], c.StubDomains[0]
	second, err := Render(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) || Hash(first) != Hash(second) {
		t.Errorf("stub domain order changed the Corefile:\n%s\n---\n%s", first, second)
	}
	text := string(first)
	for _, want := range []string{"forward . [fd00::1]:53 {", "forward . [fd00::53]:5300 {", "acme.local:5353 {"} {
		if !strings.Contains(text, want) {
			t.Errorf("Corefile lacks %q:\n%s", want, text)
		}
	}
	if strings.Index(text, "acme.local:5353") > strings.Index(text, "zeta.local:5353") {
		t.Errorf("stub blocks not sorted:\n%s", text)
	}
}

func TestParseServer(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"10.0.0.1":         "10.0.0.1:53",
		"10.0.0.1:5300":    "10.0.0.1:5300",
		"fd00::1":          "[fd00::1]:53",
		"[fd00::1]":        "[fd00::1]:53",
		"[fd00::1]:5300":   "[fd00::1]:5300",
		"::ffff:10.0.0.1":  "10.0.0.1:53",
		" 192.168.0.1:53 ": "192.168.0.1:53",
	} {
		got, err := ParseServer(in)
		if err != nil || got.String() != want {
			t.Errorf("ParseServer(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "ns.example.com", "10.0.0.1:x", "fd00::1:53:"} {
		if _, err := ParseServer(in); err == nil || !strings.Contains(err.Error(), in) {
			t.Errorf("ParseServer(%q) error = %v, want one naming the value", in, err)
		}
	}
}

// TestStubCapacity: the stub domains share StubCacheBudget entries of each
// kind, evenly, capped by the main capacity, at least one cache shard.
func TestStubCapacity(t *testing.T) {
	for _, tc := range []struct{ main, stubs, want int }{
		{9984, 1, 9984}, {9984, 2, 8192}, {9984, 3, 5461}, {9984, 32, 512}, {9984, 100, 256}, {300, 1, 300}, {9984, 0, 9984},
	} {
		if got := stubCapacity(tc.main, tc.stubs); got != tc.want {
			t.Errorf("stubCapacity(%d, %d) = %d, want %d", tc.main, tc.stubs, got, tc.want)
		}
		if tc.stubs > 0 && tc.stubs*stubCapacity(tc.main, tc.stubs) > max(StubCacheBudget, 256*tc.stubs) {
			t.Errorf("%d stubs hold %d entries together, over the budget", tc.stubs, tc.stubs*stubCapacity(tc.main, tc.stubs))
		}
	}
}
