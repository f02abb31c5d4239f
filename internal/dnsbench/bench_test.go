package dnsbench

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lrpdns/lrpdns/internal/dnstest"
)

// BenchmarkCache loads three servers side by side, all forwarding to one
// recording server on loopback:
//
//	node-cache:          node-cache with its defaults
//	coredns-reference:   stock CoreDNS (built from the same CoreDNS module
//	                     version) serving the reference node-local-dns
//	                     Corefile (referenceCorefile), what users run today
//	coredns-same-config: stock CoreDNS serving the Corefile node-cache
//	                     renders, less node-cache's own plugins
//
// under two loads:
//
//	hit:  1,000 names, asked once before the run, then round and round:
//	      always answered from the cache
//	miss: a new name every query, always forwarded
//
// from 20 UDP clients each waiting for its answer. Besides QPS and
// latency it reports each server's CPU seconds per 100,000 queries (user +
// system, from /proc) and its RSS idle and after the load.
//
// hack/bench.sh builds the binaries and sets LRPDNS_NODE_CACHE_BIN,
// LRPDNS_COREDNS_BIN, LRPDNS_BENCH_NODE_CACHE_ARGS and LRPDNS_BENCH_ROUNDS
// (rounds, each running every server once: runs interleaved, unlike
// -count). The load generator shares the machine's cores with the server,
// so compare the columns, not absolute numbers across hosts.
func BenchmarkCache(b *testing.B) {
	nodeCache, coreDNS := os.Getenv("LRPDNS_NODE_CACHE_BIN"), os.Getenv("LRPDNS_COREDNS_BIN")
	if nodeCache == "" || coreDNS == "" {
		b.Skip("set LRPDNS_NODE_CACHE_BIN and LRPDNS_COREDNS_BIN (make bench does)")
	}
	upstream := dnstest.StartTB(b, dnstest.Options{Answer: netip.MustParseAddr("192.0.2.1"), TTL: 300, NoRecord: true})
	dir := b.TempDir()
	write(b, filepath.Join(dir, "resolv.conf"), "nameserver 127.0.0.1\n")
	write(b, filepath.Join(dir, "kube-dns", "upstreamNameservers"), fmt.Sprintf("[%q]", upstream.Addr))

	flags := func(port int) []string {
		return []string{
			"--cluster-dns", upstream.Addr.String(), "--resolv-conf", filepath.Join(dir, "resolv.conf"),
			"--kube-dns-config-dir", filepath.Join(dir, "kube-dns"), "--bind", "127.0.0.1",
			"--port", strconv.Itoa(port), "--health-addr", dnstest.FreeAddr(b), "--ready-addr", dnstest.FreeAddr(b),
			"--metrics-addr", dnstest.FreeAddr(b), "--lameduck", "0s", "--allow-loopback-resolvers",
		}
	}
	servers := []*server{
		{name: "node-cache", port: dnstest.FreePort(b)},
		{name: "coredns-reference", port: dnstest.FreePort(b)},
		{name: "coredns-same-config", port: dnstest.FreePort(b)},
	}
	// LRPDNS_BENCH_NODE_CACHE_ARGS: more flags for the node-cache columns
	// only (make bench NODE_CACHE_ARGS="--prefetch=false"), to find what a
	// default costs.
	nodeCacheCmd := func(bin string, port int) *exec.Cmd {
		return exec.Command(bin, append(flags(port), strings.Fields(os.Getenv("LRPDNS_BENCH_NODE_CACHE_ARGS"))...)...)
	}
	servers[0].cmd = nodeCacheCmd(nodeCache, servers[0].port)

	reference := referenceCorefile(servers[1].port, upstream.Addr.String(), dnstest.FreeAddr(b), dnstest.FreeAddr(b))
	write(b, filepath.Join(dir, "reference", "Corefile"), reference)
	servers[1].cmd = exec.Command(coreDNS, "-conf", filepath.Join(dir, "reference", "Corefile"), "-quiet")

	corefile, err := exec.Command(nodeCache, append([]string{"render"}, flags(servers[2].port)...)...).Output()
	if err != nil {
		b.Fatalf("render: %v", err)
	}
	// Stock CoreDNS has none of node-cache's own plugins: front (it opens
	// its listeners itself), hot (the front's answers without the chain)
	// and loopguard (its loop plugin does the same probe).
	same := strings.ReplaceAll(string(corefile), "\n    front\n", "\n")
	same = regexp.MustCompile(`\n    hot [^\n]*\n`).ReplaceAllString(same, "\n")
	same = strings.ReplaceAll(same, "\n    loopguard\n", "\n    loop\n")
	write(b, filepath.Join(dir, "same", "Corefile"), same)
	servers[2].cmd = exec.Command(coreDNS, "-conf", filepath.Join(dir, "same", "Corefile"), "-quiet")
	// LRPDNS_BENCH_NODE_CACHE_BASE: another node-cache binary (another
	// commit's) in a column of its own, so that two builds are compared in
	// the same interleaved rounds (make bench BASE=path).
	if base := os.Getenv("LRPDNS_BENCH_NODE_CACHE_BASE"); base != "" {
		s := &server{name: "node-cache-base", port: dnstest.FreePort(b)}
		s.cmd = nodeCacheCmd(base, s.port)
		servers = append(servers, s)
	}
	for _, s := range servers {
		s.start(b)
		defer s.stop()
	}

	const workers, hitNames = 20, 1000
	rounds := 1
	if r := os.Getenv("LRPDNS_BENCH_ROUNDS"); r != "" {
		var err error
		if rounds, err = strconv.Atoi(r); err != nil || rounds < 1 {
			b.Fatalf("LRPDNS_BENCH_ROUNDS=%q: want a count, 1 or more", r)
		}
	}
	hit := func(i int) string { return "h" + strconv.Itoa(i%hitNames) + ".example.com." }
	for _, s := range servers {
		if res, err := Load(s.addr(), hitNames, workers, hit); err != nil || res.Failures > 0 {
			b.Fatalf("warming %s: %v, %d failed", s.name, err, res.Failures)
		}
	}
	for _, load := range []struct {
		name  string
		qname func(i int) string
	}{
		{"hit", hit},
		{"miss", func(i int) string {
			return "m" + strconv.Itoa(i) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36) + ".example.com."
		}},
	} {
		// Rounds go server after server, so that whatever else the machine
		// does in a moment falls on every server alike (go test's -count
		// would run one server's repeats back to back).
		for range rounds {
			for _, s := range servers {
				b.Run(load.name+"/"+s.name, func(b *testing.B) {
					cpu0, err := CPU(s.cmd.Process.Pid)
					if err != nil {
						b.Fatal(err)
					}
					res, err := Load(s.addr(), b.N, workers, load.qname)
					if err != nil {
						b.Fatal(err)
					}
					cpu1, err := CPU(s.cmd.Process.Pid)
					if err != nil {
						b.Fatal(err)
					}
					if res.Failures > res.Queries/1000 {
						b.Fatalf("%d of %d queries failed", res.Failures, res.Queries)
					}
					rss, err := RSS(s.cmd.Process.Pid)
					if err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(res.QPS(), "qps")
					b.ReportMetric(float64(res.Percentile(0.5).Microseconds()), "p50-µs")
					b.ReportMetric(float64(res.Percentile(0.99).Microseconds()), "p99-µs")
					b.ReportMetric((cpu1-cpu0).Seconds()/float64(res.Queries)*1e5, "cpu-s/100k")
					b.ReportMetric(float64(s.idleRSS)/(1<<20), "idle-RSS-MiB")
					b.ReportMetric(float64(rss)/(1<<20), "RSS-MiB")
				})
			}
		}
	}
}

// referenceCorefile is the Corefile of the reference node-local-dns
// (kubernetes/kubernetes cluster/addons/dns/nodelocaldns/nodelocaldns.yaml),
// its pillars filled in for loopback: one address to bind, one upstream for
// every block (the cluster's CoreDNS and the node's resolvers are the same
// recording server here), health and metrics on free ports.
func referenceCorefile(port int, upstream, health, metrics string) string {
	block := func(zone, cache, forward, extra string) string {
		return fmt.Sprintf("%s:%d {\n    errors\n    %s\n    reload\n    loop\n    bind 127.0.0.1\n    %s\n    prometheus %s\n%s}\n",
			zone, port, cache, forward, metrics, extra)
	}
	clusterForward := "forward . " + upstream + " {\n        force_tcp\n    }"
	return block("cluster.local", "cache {\n        success 9984 30\n        denial 9984 5\n    }", clusterForward, "    health "+health+"\n") +
		block("in-addr.arpa", "cache 30", clusterForward, "") +
		block("ip6.arpa", "cache 30", clusterForward, "") +
		block(".", "cache 30", "forward . "+upstream, "")
}

type server struct {
	name    string
	port    int
	cmd     *exec.Cmd
	out     bytes.Buffer
	idleRSS uint64
}

func (s *server) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

func (s *server) start(b *testing.B) {
	b.Helper()
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
	if err := s.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := Load(s.addr(), 1, 1, func(int) string { return "hit.example.com." })
		if err == nil && res.Failures == 0 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s never answered: %s", s.name, s.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // settle before reading idle memory
	rss, err := RSS(s.cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	s.idleRSS = rss
}

func (s *server) stop() {
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
}

func write(b *testing.B, path, content string) {
	b.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		b.Fatal(err)
	}
}
