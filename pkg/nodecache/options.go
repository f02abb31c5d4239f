package nodecache

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/lrpdns/lrpdns/pkg/corefile"
	"github.com/lrpdns/lrpdns/pkg/nodecache/internal/front"
)

// limits are the front's limits from the options, checked.
func (o *Options) limits() (front.Limits, error) {
	l := front.DefaultLimits
	if o.MaxTCPConns < 1 || o.MaxTCPConns > 1_000_000 {
		return l, &corefile.FieldError{Field: "--max-tcp-connections", Value: fmt.Sprint(o.MaxTCPConns), Want: "a number from 1 to 1000000"}
	}
	if o.MaxTCPQueries < 1 || o.MaxTCPQueries > 1_000_000 {
		return l, &corefile.FieldError{Field: "--max-tcp-queries", Value: fmt.Sprint(o.MaxTCPQueries), Want: "a number from 1 to 1000000"}
	}
	if o.UDPSockets < 1 || o.UDPSockets > 64 {
		return l, &corefile.FieldError{Field: "--udp-sockets", Value: fmt.Sprint(o.UDPSockets), Want: "a number from 1 to 64"}
	}
	l.MaxTCPConns, l.MaxTCPQueries, l.UDPSockets = o.MaxTCPConns, o.MaxTCPQueries, o.UDPSockets
	return l, nil
}

// EnvPrefix prefixes the environment variable that can set each flag:
// --cluster-domain is also NODE_CACHE_CLUSTER_DOMAIN. A flag on the command
// line wins over the environment.
const EnvPrefix = "NODE_CACHE_"

// Options are the node-cache's inputs, as flags give them.
type Options struct {
	ClusterDomain   string
	ClusterDNS      []string
	UpstreamService string
	// Namespace is the pod's: where kube-dns and kube-dns-upstream are.
	Namespace string
	// KubeDNSService names the cluster DNS Service whose traffic the
	// redirect sends to this cache; KubeDNSIPs are its addresses (default:
	// its service-link environment variables). No upstream may be there.
	KubeDNSService string
	KubeDNSIPs     []string
	// AllowLoopbackResolvers accepts upstreams on loopback addresses, which
	// only a cache in the host's network namespace can reach.
	AllowLoopbackResolvers bool
	ResolvConf             string
	KubeDNSConfigDir       string
	Bind                   []string
	Port                   int
	HealthAddr             string
	ReadyAddr              string
	MetricsAddr            string
	Lameduck               time.Duration
	Cache                  corefile.Cache
	LogQueries             bool
	// ClusterForward, ExternalForward and StubForward ask the cluster DNS,
	// the node's resolvers and the stub domains' servers; their
	// MaxConcurrent is ForwardMaxConcurrent.
	ClusterForward, ExternalForward, StubForward corefile.Forward
	ForwardMaxConcurrent                         int
	NoIPv6Lookups                                bool
	// ZonesFile holds server blocks users add (package zones); a missing
	// file is none.
	ZonesFile string
	// CheckInterval re-reads the inputs even when no file event arrived
	// (bind-mounted files such as resolv.conf send none).
	CheckInterval time.Duration
	// MaxTCPConns caps concurrent TCP connections; MaxTCPQueries caps the
	// queries one connection carries.
	MaxTCPConns, MaxTCPQueries int
	// UDPSockets is how many UDP sockets each address opens (SO_REUSEPORT).
	UDPSockets int

	// Getenv reads the environment; os.Getenv when nil.
	Getenv func(string) string

	// resolverPort replaces port 53 for resolv.conf nameservers, which
	// cannot carry a port; tests use it to reach resolvers on loopback.
	resolverPort uint16
	// upstreamPort replaces port 53 for a kube-dns-upstream found through
	// kube-dns; tests use it to reach a server on loopback.
	upstreamPort uint16
}

// DefaultOptions are the values used for flags that are not given.
func DefaultOptions() Options {
	cluster, external, stub := corefile.DefaultForwards()
	return Options{
		ClusterDomain:    "cluster.local",
		UpstreamService:  "kube-dns-upstream",
		Namespace:        "kube-system",
		KubeDNSService:   "kube-dns",
		ResolvConf:       "/etc/resolv.conf",
		KubeDNSConfigDir: "/etc/kube-dns",
		Port:             5353,
		HealthAddr:       ":8080",
		ReadyAddr:        ":8181",
		MetricsAddr:      ":9253",
		Lameduck:         5 * time.Second,
		Cache:            corefile.DefaultCache(),
		ClusterForward:   cluster,
		ExternalForward:  external,
		StubForward:      stub,
		// Every forward's default.
		ForwardMaxConcurrent: cluster.MaxConcurrent,
		CheckInterval:        10 * time.Second,
		MaxTCPConns:          front.DefaultLimits.MaxTCPConns,
		MaxTCPQueries:        front.DefaultLimits.MaxTCPQueries,
		UDPSockets:           front.DefaultLimits.UDPSockets,
	}
}

type listFlag struct{ p *[]string }

func (l listFlag) String() string {
	if l.p == nil {
		return ""
	}
	return strings.Join(*l.p, ",")
}

func (l listFlag) Set(s string) error {
	*l.p = nil
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l.p = append(*l.p, v)
		}
	}
	return nil
}

// ParseFlags fills Options from args and then, for flags not on the command
// line, from NODE_CACHE_* environment variables.
func ParseFlags(name string, args []string, stderr io.Writer) (Options, error) {
	o := DefaultOptions()
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.ClusterDomain, "cluster-domain", o.ClusterDomain, "the cluster's DNS domain")
	fs.Var(listFlag{&o.ClusterDNS}, "cluster-dns", "cluster DNS server(s) `IP[,IP]` (one per family); default: the upstream Service's environment variables")
	fs.StringVar(&o.UpstreamService, "upstream-service", o.UpstreamService, "Service `NAME` whose environment variables give the cluster DNS when --cluster-dns is empty")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "the pod's `NAMESPACE`, where the upstream Service is")
	fs.StringVar(&o.KubeDNSService, "kube-dns-service", o.KubeDNSService, "the cluster DNS Service `NAME` the redirect sends to this cache")
	fs.Var(listFlag{&o.KubeDNSIPs}, "kube-dns-ips", "the cluster DNS Service's `IP[,IP]`; default: its environment variables")
	fs.BoolVar(&o.AllowLoopbackResolvers, "allow-loopback-resolvers", o.AllowLoopbackResolvers, "accept upstreams on loopback addresses (only for a cache in the host network namespace)")
	fs.StringVar(&o.ResolvConf, "resolv-conf", o.ResolvConf, "resolv.conf `FILE` whose nameservers resolve external names")
	fs.StringVar(&o.KubeDNSConfigDir, "kube-dns-config-dir", o.KubeDNSConfigDir, "`DIR` of the mounted kube-dns ConfigMap (optional)")
	fs.Var(listFlag{&o.Bind}, "bind", "listen only on `IP[,IP]`; default: all addresses of both families")
	fs.IntVar(&o.Port, "port", o.Port, "DNS port for UDP and TCP")
	fs.StringVar(&o.HealthAddr, "health-addr", o.HealthAddr, "liveness endpoint `HOST:PORT` (/health)")
	fs.StringVar(&o.ReadyAddr, "ready-addr", o.ReadyAddr, "readiness endpoint `HOST:PORT` (/ready)")
	fs.StringVar(&o.MetricsAddr, "metrics-addr", o.MetricsAddr, "Prometheus endpoint `HOST:PORT` (/metrics)")
	fs.DurationVar(&o.Lameduck, "lameduck", o.Lameduck, "on shutdown, keep serving DNS this long after readiness drops")
	fs.IntVar(&o.Cache.SuccessCapacity, "cache-success-capacity", o.Cache.SuccessCapacity, "cached positive answers")
	fs.DurationVar(&o.Cache.SuccessTTL, "cache-success-ttl", o.Cache.SuccessTTL, "maximum TTL of cached positive answers")
	fs.IntVar(&o.Cache.DenialCapacity, "cache-denial-capacity", o.Cache.DenialCapacity, "cached negative answers")
	fs.DurationVar(&o.Cache.DenialTTL, "cache-denial-ttl", o.Cache.DenialTTL, "maximum TTL of cached negative answers")
	fs.BoolVar(&o.Cache.Prefetch, "prefetch", o.Cache.Prefetch, "refresh popular names before they expire")
	fs.IntVar(&o.Cache.PrefetchAmount, "prefetch-amount", o.Cache.PrefetchAmount, "queries a name needs to be prefetched")
	fs.BoolVar(&o.Cache.ServeStale, "serve-stale", o.Cache.ServeStale, "answer from expired entries when the upstream fails")
	fs.DurationVar(&o.Cache.StaleMaxAge, "serve-stale-max-age", o.Cache.StaleMaxAge, "how long past expiry an entry may be served")
	fs.StringVar(&o.Cache.StaleMode, "serve-stale-mode", o.Cache.StaleMode, `"verify" (ask the upstream first) or "immediate"`)
	fs.DurationVar(&o.Cache.StaleVerifyTimeout, "serve-stale-verify-timeout", o.Cache.StaleVerifyTimeout, "in verify mode, answer stale after waiting this long for the upstream (0: its own timeout)")
	fs.DurationVar(&o.Cache.StaleTTL, "serve-stale-ttl", o.Cache.StaleTTL, "TTL of a stale answer")
	fs.BoolVar(&o.LogQueries, "log-queries", o.LogQueries, "log every query")
	fs.BoolVar(&o.Cache.HotPath, "hot-path", o.Cache.HotPath, "answer repeated cache hits from the cache's earlier answer, without the plugin chain (off with --log-queries)")
	for _, f := range []struct {
		name, what string
		fw         *corefile.Forward
	}{{"cluster", "the cluster DNS", &o.ClusterForward}, {"external", "the node's resolvers", &o.ExternalForward}, {"stub", "stub domains' servers", &o.StubForward}} {
		fs.StringVar(&f.fw.Protocol, f.name+"-forward-protocol", f.fw.Protocol, `ask `+f.what+` over "tcp", "udp" or the "client"'s protocol`)
		fs.StringVar(&f.fw.Policy, f.name+"-forward-policy", f.fw.Policy, `pick among `+f.what+`: "random", "round_robin" or "sequential"`)
	}
	fs.IntVar(&o.ForwardMaxConcurrent, "forward-max-concurrent", o.ForwardMaxConcurrent, "queries in flight to each server block's upstreams; more are refused")
	fs.BoolVar(&o.NoIPv6Lookups, "no-ipv6-lookups", o.NoIPv6Lookups, "answer AAAA queries outside the cluster domain with an empty answer (IPv4-only clusters)")
	fs.StringVar(&o.ZonesFile, "zones-file", o.ZonesFile, "YAML `FILE` of server blocks to add (zones: [{zone, servers, protocol, policy, maxConcurrent}])")
	fs.DurationVar(&o.CheckInterval, "config-check-interval", o.CheckInterval, "re-read the inputs this often even without file events")
	fs.IntVar(&o.MaxTCPConns, "max-tcp-connections", o.MaxTCPConns, "concurrent TCP connections; one more is closed at once")
	fs.IntVar(&o.MaxTCPQueries, "max-tcp-queries", o.MaxTCPQueries, "queries one TCP connection may carry before the cache closes it")
	fs.IntVar(&o.UDPSockets, "udp-sockets", o.UDPSockets, "UDP sockets per address, bound with SO_REUSEPORT when more than one")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s [render] [flags]\n\nServes DNS (or with render, prints the Corefile it would serve).\nEach flag can also be set as %s<FLAG_NAME>.\n\n", name, EnvPrefix)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return Options{}, err
	}
	if fs.NArg() > 0 {
		return Options{}, fmt.Errorf("unexpected argument %q: want flags only", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		env := EnvPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v, ok := os.LookupEnv(env)
		if set[f.Name] || !ok || err != nil {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = fmt.Errorf("invalid value %q for %s: %w", v, env, e)
		}
	})
	return o, err
}
