package dnsbench

import (
	"bufio"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lrpdns/lrpdns/internal/dnstest"
	"github.com/lrpdns/lrpdns/pkg/corefile"
)

// BenchmarkFullCacheRSS fills every cache of the node-cache binary to its
// capacity and reads the process's memory: the cluster and root blocks
// with --cache-success-capacity and --cache-denial-capacity (9,984 each by
// default) and maxZones zones, which share corefile.StubCacheBudget
// answers of each kind. Each block is asked new names until its cache holds
// its capacity (coredns_cache_entries says so), half answered, half
// NXDOMAIN with an SOA (dnstest's NXDomainPrefix). The answers' size is
// the sub-benchmark's: one A record, or 20 (about 350 bytes, compressed). TTLs are long so nothing expires
// while it fills.
//
//	go test -run '^$' -bench BenchmarkFullCacheRSS -benchtime 1x ./internal/dnsbench/
func BenchmarkFullCacheRSS(b *testing.B) {
	nodeCache := os.Getenv("LRPDNS_NODE_CACHE_BIN")
	if nodeCache == "" {
		b.Skip("set LRPDNS_NODE_CACHE_BIN (make bench does)")
	}
	for _, records := range []int{1, 20} {
		b.Run(fmt.Sprintf("answers=%dA", records), func(b *testing.B) {
			for range b.N {
				fullCache(b, nodeCache, records)
			}
		})
	}
}

// maxZones is the most zones a zones file may hold
// (pkg/nodecache/internal/zones.MaxZones).
const maxZones = 32

func fullCache(b *testing.B, nodeCache string, records int) {
	up := dnstest.StartTB(b, dnstest.Options{Answer: netip.MustParseAddr("192.0.2.1"), TTL: 3600, NoRecord: true,
		Records: records, NXDomainPrefix: "nx"}).Addr.String()
	dir := b.TempDir()
	write(b, filepath.Join(dir, "resolv.conf"), "nameserver 127.0.0.1\n")
	write(b, filepath.Join(dir, "kube-dns", "upstreamNameservers"), fmt.Sprintf("[%q]", up))
	var zoneList strings.Builder
	zoneList.WriteString("zones:\n")
	for i := range maxZones {
		fmt.Fprintf(&zoneList, "- zone: z%d.example\n  servers: [%q]\n", i, up)
	}
	write(b, filepath.Join(dir, "zones.yaml"), zoneList.String())
	metrics := dnstest.FreeAddr(b)
	port := dnstest.FreePort(b)
	defaults := corefile.DefaultCache()
	cmd := exec.Command(nodeCache, "--cluster-dns", up, "--resolv-conf", filepath.Join(dir, "resolv.conf"),
		"--kube-dns-config-dir", filepath.Join(dir, "kube-dns"), "--zones-file", filepath.Join(dir, "zones.yaml"),
		"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--health-addr", dnstest.FreeAddr(b), "--ready-addr", dnstest.FreeAddr(b),
		"--metrics-addr", metrics, "--lameduck", "0s", "--allow-loopback-resolvers",
		"--cache-success-ttl", "1h", "--cache-denial-ttl", "1h", "--prefetch=false", "--serve-stale=false")
	s := &server{name: "node-cache", port: port, cmd: cmd}
	s.start(b)
	defer s.stop()

	// Each block's suffix and capacity (of each kind).
	type block struct {
		suffix string
		want   int
	}
	zoneCap := min(defaults.SuccessCapacity, max(256, corefile.StubCacheBudget/maxZones))
	blocks := []block{{"default.svc.cluster.local.", defaults.SuccessCapacity}, {"example.com.", defaults.SuccessCapacity}}
	for i := range maxZones {
		blocks = append(blocks, block{fmt.Sprintf("z%d.example.", i), zoneCap})
	}
	wantEntries := 0
	for _, bl := range blocks {
		wantEntries += 2 * bl.want
		// 10% more names than the capacity: CoreDNS's cache is 256 shards
		// that each evict at their share, so a few more fill every shard.
		n := bl.want + bl.want/10
		for _, kind := range []string{"s", "nx"} {
			res, err := Load(s.addr(), n, 8, func(i int) string { return kind + strconv.Itoa(i) + "." + bl.suffix })
			if err != nil {
				b.Fatal(err)
			}
			// NXDOMAIN is what nx names get: Load counts it as failed.
			if kind == "s" && res.Failures > n/100 {
				b.Fatalf("%s%s: %d of %d failed", kind, bl.suffix, res.Failures, n)
			}
		}
	}
	entries := scrapeSum(b, metrics, "coredns_cache_entries")
	if entries < float64(wantEntries)*0.97 {
		b.Fatalf("the caches hold %.0f entries, want about %d (every block at its capacity)", entries, wantEntries)
	}
	rss, err := RSS(s.cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	peak, err := Status(s.cmd.Process.Pid, "VmHWM")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(entries, "entries")
	b.ReportMetric(float64(s.idleRSS)/(1<<20), "idle-RSS-MiB")
	b.ReportMetric(float64(rss)/(1<<20), "RSS-MiB")
	b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
}

// scrapeSum adds up every sample of metric at the metrics address.
func scrapeSum(b *testing.B, addr, metric string) float64 {
	b.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, metric+"{") && !strings.HasPrefix(line, metric+" ") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			b.Fatalf("%s: %v", line, err)
		}
		sum += v
	}
	return sum
}
