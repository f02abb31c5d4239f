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
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

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
			up := startDNS(t, "192.0.2.53", 30).Addr
			local := func(s []netip.AddrPort) {
				for i := range s {
					s[i] = up
				}
			}
			local(cfg.ClusterDNS)
			local(cfg.NodeResolvers)
			for _, stub := range cfg.StubDomains {
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
			zones := []string{"kubernetes.default.svc." + cfg.ClusterDomain, "www.example.com"}
			for _, stub := range cfg.StubDomains {
				zones = append(zones, "x."+stub.Domain)
			}
			for _, a := range inst.Addrs() {
				host, port, _ := net.SplitHostPort(a.String())
				if ip := net.ParseIP(host); ip.IsUnspecified() {
					host = "127.0.0.1"
				}
				for _, name := range zones {
					r, err := exchange(a.Network(), net.JoinHostPort(host, port), name)
					if err != nil || len(r.Answer) != 1 {
						t.Errorf("%s over %s: %v, %v", name, a.Network(), r, err)
					}
				}
			}
		})
	}
}
