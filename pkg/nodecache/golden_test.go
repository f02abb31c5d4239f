package nodecache

import (
	"bufio"
	"bytes"
	"flag"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"

	"github.com/lrpdns/lrpdns/pkg/corefile"
	"github.com/lrpdns/lrpdns/pkg/nodecache/internal/coredns"
	"github.com/lrpdns/lrpdns/pkg/nodecache/internal/front"
)

var update = flag.Bool("update", false, "rewrite the golden Corefiles under testdata/render")

// renderCase is a directory under testdata/render: args (one per line), env
// (KEY=VALUE lines), resolv.conf, an optional kube-dns ConfigMap directory,
// and the golden Corefile.
type renderCase struct {
	name, dir string
	args      []string
}

func renderCases(t *testing.T) []renderCase { return casesIn(t, "testdata/render") }

func casesIn(t *testing.T, root string) []renderCase {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(root, "*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no cases in %s: %v", root, err)
	}
	var out []renderCase
	for _, dir := range dirs {
		c := renderCase{name: filepath.Base(dir), dir: dir}
		c.args = append(readLines(t, filepath.Join(dir, "args")),
			"--resolv-conf", filepath.Join(dir, "resolv.conf"),
			"--kube-dns-config-dir", filepath.Join(dir, "kube-dns"))
		out = append(out, c)
	}
	return out
}

// setenv sets the case's environment for the rest of the (serial) test.
func (c renderCase) setenv(t *testing.T) {
	t.Helper()
	for _, kv := range readLines(t, filepath.Join(c.dir, "env")) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// render is what `node-cache render ARGS` prints (cmd/node-cache/app).
func render(args []string) ([]byte, error) {
	opts, err := ParseFlags("node-cache render", args, io.Discard)
	if err != nil {
		return nil, err
	}
	return opts.Corefile()
}

// TestRenderGolden runs `node-cache render` for each case and compares the
// Corefile with the golden one (go test -run TestRenderGolden -update).
func TestRenderGolden(t *testing.T) {
	for _, c := range renderCases(t) {
		t.Run(c.name, func(t *testing.T) {
			c.setenv(t)
			text, err := render(c.args)
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			stdout := bytes.NewBuffer(text)
			golden := filepath.Join(c.dir, "Corefile")
			if *update {
				if err := os.WriteFile(golden, stdout.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(want), stdout.String()); diff != "" {
				t.Errorf("Corefile (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRenderRefuses runs `node-cache render` for each case under
// testdata/refuse: upstreams that would loop back into the cache or that a
// pod cannot reach, and stub domains that would take names from the cluster
// DNS. Each must fail with an error containing every line of the case's
// error file: where the value came from, the value, and why.
func TestRenderRefuses(t *testing.T) {
	for _, c := range casesIn(t, "testdata/refuse") {
		t.Run(c.name, func(t *testing.T) {
			c.setenv(t)
			text, err := render(c.args)
			if err == nil {
				t.Fatalf("render accepted it:\n%s", text)
			}
			for _, want := range readLines(t, filepath.Join(c.dir, "error")) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q\ndoes not contain %q", err, want)
				}
			}
		})
	}
}

// TestRenderGoldenStarts starts each case for real, to prove CoreDNS accepts
// the Corefile and serves it. Only addresses change: port 0, loopback HTTP
// endpoints, and every upstream replaced by a recording server on loopback,
// since the loop plugin's start-up probe goes through forward and no test
// may send a packet beyond this machine.
func TestRenderGoldenStarts(t *testing.T) {
	for _, c := range renderCases(t) {
		t.Run(c.name, func(t *testing.T) {
			c.setenv(t)
			opts, err := ParseFlags("node-cache", c.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := opts.Config()
			if err != nil {
				t.Fatal(err)
			}
			upstream := startDNS(t, "192.0.2.53", 30)
			up := upstream.Addr
			local := func(s []netip.AddrPort) {
				for i := range s {
					s[i] = up
				}
			}
			local(cfg.ClusterDNS)
			local(cfg.NodeResolvers)
			for _, stub := range append(slices.Clone(cfg.StubDomains), cfg.Zones...) {
				local(stub.Servers)
			}
			cfg.Port, cfg.Lameduck = 0, 0
			cfg.HealthAddr, cfg.ReadyAddr, cfg.MetricsAddr = "127.0.0.1:0", "127.0.0.1:0", metricsAddr(t)
			text, err := corefile.Render(cfg)
			if err != nil {
				t.Fatal(err)
			}
			inst, err := coredns.Start(text, front.DefaultLimits)
			if err != nil {
				t.Fatalf("start: %v\n%s", err, text)
			}
			defer func() {
				if err := inst.Shutdown(); err != nil {
					t.Errorf("shutdown: %v", err)
				}
			}()
			if len(inst.Addrs()) == 0 {
				t.Fatalf("listening on nothing")
			}
			// A name in each block, with the forward that asks its upstream.
			type block struct {
				name    string
				forward corefile.Forward
				cluster bool
			}
			blocks := []block{{"kubernetes.default.svc." + cfg.ClusterDomain, cfg.ClusterForward, true}, {"www.example.com", cfg.ExternalForward, false}}
			for _, stub := range cfg.StubDomains {
				blocks = append(blocks, block{"x." + stub.Domain, cfg.StubForward, false})
			}
			for _, z := range cfg.Zones {
				blocks = append(blocks, block{"x." + z.Domain, z.Forward, false})
			}
			for _, a := range inst.Addrs() {
				host, port, _ := net.SplitHostPort(a.String())
				if ip := net.ParseIP(host); ip.IsUnspecified() {
					host = "127.0.0.1"
				}
				addr := net.JoinHostPort(host, port)
				for _, b := range blocks {
					// A name of its own per listener: not answered from the cache.
					name := a.Network() + "." + b.name
					r, err := exchange(a.Network(), addr, name)
					if err != nil || len(r.Answer) != 1 {
						t.Errorf("%s over %s: %v, %v", name, a.Network(), r, err)
						continue
					}
					want := map[string]string{corefile.ProtocolTCP: "tcp", corefile.ProtocolUDP: "udp", corefile.ProtocolClient: a.Network()}[b.forward.Protocol]
					if q := upstream.QueriesFor(name); len(q) == 0 || q[len(q)-1].Net != want {
						t.Errorf("%s asked over %s reached its upstream as %v, want over %s (forward protocol %q)", name, a.Network(), q, want, b.forward.Protocol)
					}
					// AAAA: outside the cluster domain, --no-ipv6-lookups
					// answers empty and asks no upstream.
					aaaa := "aaaa." + name
					r, err = exchangeType(a.Network(), addr, aaaa, dns.TypeAAAA)
					if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
						t.Errorf("AAAA %s over %s: %v, %v; want an empty NOERROR", aaaa, a.Network(), r, err)
						continue
					}
					asked := len(upstream.QueriesFor(aaaa)) > 0
					if filtered := cfg.NoIPv6Lookups && !b.cluster; asked == filtered {
						t.Errorf("AAAA %s over %s: upstream asked %v, want %v (no IPv6 lookups %v)", aaaa, a.Network(), asked, !filtered, cfg.NoIPv6Lookups)
					}
				}
			}
		})
	}
}
