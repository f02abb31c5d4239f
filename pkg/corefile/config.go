package corefile

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Config is everything the node-cache's Corefile is rendered from.
type Config struct {
	// ClusterDomain is the cluster's DNS domain, for example cluster.local.
	// Names in it and reverse lookups go to ClusterDNS over TCP.
	ClusterDomain string
	// ClusterDNS are the cluster DNS servers (the kube-dns-upstream Service),
	// one per IP family.
	ClusterDNS []netip.AddrPort
	// NodeResolvers resolve every name outside the cluster and stub domains.
	NodeResolvers []netip.AddrPort
	// StubDomains send a domain to its own servers (the kube-dns
	// ConfigMap's stubDomains), with StubForward.
	StubDomains []StubDomain
	// Zones are server blocks users add: like stub domains, each with its
	// own forward settings.
	Zones []StubDomain

	// ClusterForward, ExternalForward and StubForward are how the cluster
	// DNS, the node's resolvers and the stub domains' servers are asked.
	ClusterForward  Forward
	ExternalForward Forward
	StubForward     Forward

	// NoIPv6Lookups answers AAAA queries outside the cluster domain with
	// an empty NOERROR at once, for IPv4-only clusters whose upstreams
	// should not see them.
	NoIPv6Lookups bool

	// Bind restricts the listeners to these addresses; empty means all.
	Bind []netip.Addr
	// Port is the DNS port for UDP and TCP; 0 picks a free one.
	Port int

	HealthAddr  string
	ReadyAddr   string
	MetricsAddr string
	// Lameduck keeps serving DNS for this long after readiness drops.
	Lameduck time.Duration

	Cache Cache
	// LogQueries logs every query (the log plugin); noisy on a busy node.
	LogQueries bool
}

// StubDomain sends queries for Domain to Servers.
type StubDomain struct {
	Domain  string
	Servers []netip.AddrPort
	// Forward is used for a zone; stub domains use Config.StubForward.
	Forward Forward
}

// Forward is how a server block's forward plugin asks its upstreams.
type Forward struct {
	// Protocol is ProtocolTCP (force_tcp), ProtocolUDP (prefer_udp: UDP
	// even for clients that asked over TCP) or ProtocolClient (the
	// client's, and TCP after a truncated UDP answer).
	Protocol string
	// Policy picks the upstream to ask: random, round_robin or sequential.
	Policy string
	// MaxConcurrent caps the queries in flight; more are refused.
	MaxConcurrent int
}

// Forward protocols and policies.
const (
	ProtocolTCP    = "tcp"
	ProtocolUDP    = "udp"
	ProtocolClient = "client"

	PolicyRandom     = "random"
	PolicyRoundRobin = "round_robin"
	PolicySequential = "sequential"
)

// DefaultForwards are the forwards used unless configured otherwise: cluster
// names over TCP (no conntrack races, no truncation), the node's resolvers
// in their resolv.conf order, stub domains and zones as the client asked.
func DefaultForwards() (cluster, external, stub Forward) {
	return Forward{ProtocolTCP, PolicyRandom, 1000}, Forward{ProtocolClient, PolicySequential, 1000}, Forward{ProtocolClient, PolicyRandom, 1000}
}

func (f Forward) validate(field string) error {
	if !slices.Contains([]string{ProtocolTCP, ProtocolUDP, ProtocolClient}, f.Protocol) {
		return &FieldError{field + " protocol", f.Protocol, `"tcp", "udp" or "client"`}
	}
	if !slices.Contains([]string{PolicyRandom, PolicyRoundRobin, PolicySequential}, f.Policy) {
		return &FieldError{field + " policy", f.Policy, `"random", "round_robin" or "sequential"`}
	}
	if f.MaxConcurrent < 1 || f.MaxConcurrent > 1_000_000 {
		return &FieldError{field + " max concurrent", fmt.Sprint(f.MaxConcurrent), "a number from 1 to 1000000"}
	}
	return nil
}

// Cache configures the cache plugin in every server block.
type Cache struct {
	SuccessCapacity int
	SuccessTTL      time.Duration
	DenialCapacity  int
	DenialTTL       time.Duration

	// Prefetch refreshes popular names before they expire.
	Prefetch       bool
	PrefetchAmount int

	// ServeStale answers from expired entries for up to StaleMaxAge when the
	// upstream cannot be reached.
	ServeStale  bool
	StaleMaxAge time.Duration
	// StaleMode is "verify" (ask the upstream first, answer stale only when
	// it fails or takes longer than StaleVerifyTimeout) or "immediate".
	StaleMode          string
	StaleVerifyTimeout time.Duration
	// StaleTTL is the TTL of a stale answer (RFC 8767 recommends 30s).
	StaleTTL time.Duration

	// HotPath answers a query the cache answered before from that answer,
	// without the plugin chain (the hot directive, package hot). Off when
	// LogQueries is on: every query must reach the log.
	HotPath bool
}

// Stale refresh modes accepted in Cache.StaleMode.
const (
	StaleVerify    = "verify"
	StaleImmediate = "immediate"
)

// DefaultCache is the cache used unless configured otherwise: the sizes of
// the reference node-local-dns, with prefetch and serve_stale on.
func DefaultCache() Cache {
	return Cache{
		SuccessCapacity:    9984,
		SuccessTTL:         30 * time.Second,
		DenialCapacity:     9984,
		DenialTTL:          5 * time.Second,
		Prefetch:           true,
		PrefetchAmount:     10,
		ServeStale:         true,
		StaleMaxAge:        time.Hour,
		StaleMode:          StaleVerify,
		StaleVerifyTimeout: time.Second,
		StaleTTL:           30 * time.Second,
		HotPath:            true,
	}
}

// FieldError says which field had which value and what would be accepted.
type FieldError struct {
	Field string
	Value string
	Want  string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("invalid %s %q: want %s", e.Field, e.Value, e.Want)
}

// Clip shortens user input for an error or a log: at most 120 bytes, then
// its size. A value the size of a ConfigMap would otherwise be one log line
// of that size.
func Clip(s string) string {
	const max = 120
	if len(s) > max {
		return fmt.Sprintf("%s... (%d bytes)", strings.ToValidUTF8(s[:max], ""), len(s))
	}
	return s
}

// Validate reports the first problem in c, as a *FieldError.
func (c *Config) Validate() error {
	if !ValidDomain(c.ClusterDomain) || c.ClusterDomain == "." {
		return &FieldError{"cluster domain", c.ClusterDomain, "a DNS domain such as cluster.local"}
	}
	if len(c.ClusterDNS) == 0 {
		return &FieldError{"cluster DNS", "", "at least one IP address of the upstream Service (kube-dns-upstream)"}
	}
	if err := validServers("cluster DNS", c.ClusterDNS); err != nil {
		return err
	}
	if len(c.NodeResolvers) == 0 {
		return &FieldError{"node resolvers", "", "at least one nameserver (from resolv.conf or upstreamNameservers)"}
	}
	if err := validServers("node resolvers", c.NodeResolvers); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		f    Forward
	}{{"cluster forward", c.ClusterForward}, {"external forward", c.ExternalForward}, {"stub domain forward", c.StubForward}} {
		if err := f.f.validate(f.name); err != nil {
			return err
		}
	}
	seen := map[string]bool{}
	for _, s := range c.StubDomains {
		if err := c.validateBlock("stub domain", s, seen); err != nil {
			return err
		}
	}
	for _, z := range c.Zones {
		if err := c.validateBlock("zone", z, seen); err != nil {
			return err
		}
		if err := z.Forward.validate(fmt.Sprintf("zone %q forward", z.Domain)); err != nil {
			return err
		}
	}
	for _, a := range c.Bind {
		if !a.IsValid() || a.Zone() != "" {
			return &FieldError{"bind", a.String(), "IP addresses without a zone"}
		}
	}
	if c.Port < 0 || c.Port > 65535 {
		return &FieldError{"port", fmt.Sprint(c.Port), "0 to 65535"}
	}
	for _, a := range []struct{ field, addr string }{
		{"health address", c.HealthAddr}, {"ready address", c.ReadyAddr}, {"metrics address", c.MetricsAddr},
	} {
		if _, _, err := net.SplitHostPort(a.addr); err != nil || strings.ContainsAny(a.addr, " {}\n") {
			return &FieldError{a.field, a.addr, "HOST:PORT or :PORT"}
		}
	}
	if c.Lameduck < 0 {
		return &FieldError{"lameduck", c.Lameduck.String(), "a duration of 0s or more"}
	}
	return c.Cache.validate()
}

// validateBlock checks a stub domain or zone (kind): a domain of its own,
// outside the cluster domain, once among them all (seen), with servers.
func (c *Config) validateBlock(kind string, s StubDomain, seen map[string]bool) error {
	reserved := []string{".", Zone(c.ClusterDomain), "in-addr.arpa.", "ip6.arpa."}
	if !ValidDomain(s.Domain) || slices.Contains(reserved, Zone(s.Domain)) {
		return &FieldError{kind, s.Domain, "a DNS domain other than ., the cluster domain, in-addr.arpa and ip6.arpa"}
	}
	if dns.IsSubDomain(Zone(c.ClusterDomain), Zone(s.Domain)) {
		return &FieldError{kind, s.Domain, fmt.Sprintf(
			"a domain outside the cluster domain %s: names in it are the cluster DNS's, answered over TCP", c.ClusterDomain)}
	}
	if seen[Zone(s.Domain)] {
		return &FieldError{kind, s.Domain, "each domain once among stub domains and zones"}
	}
	seen[Zone(s.Domain)] = true
	field := fmt.Sprintf("%s %q servers", kind, s.Domain)
	if len(s.Servers) == 0 {
		return &FieldError{field, "", "at least one IP address"}
	}
	return validServers(field, s.Servers)
}

func (c *Cache) validate() error {
	if c.SuccessCapacity < 1 {
		return &FieldError{"cache success capacity", fmt.Sprint(c.SuccessCapacity), "1 or more"}
	}
	if c.DenialCapacity < 1 {
		return &FieldError{"cache denial capacity", fmt.Sprint(c.DenialCapacity), "1 or more"}
	}
	if err := wholeSeconds("cache success TTL", c.SuccessTTL, time.Second); err != nil {
		return err
	}
	if err := wholeSeconds("cache denial TTL", c.DenialTTL, time.Second); err != nil {
		return err
	}
	if c.Prefetch && c.PrefetchAmount < 1 {
		return &FieldError{"cache prefetch amount", fmt.Sprint(c.PrefetchAmount), "1 or more"}
	}
	if !c.ServeStale {
		return nil
	}
	if err := wholeSeconds("serve_stale max age", c.StaleMaxAge, time.Second); err != nil {
		return err
	}
	if c.StaleMode != StaleVerify && c.StaleMode != StaleImmediate {
		return &FieldError{"serve_stale mode", c.StaleMode, `"verify" or "immediate"`}
	}
	if c.StaleVerifyTimeout < 0 || c.StaleVerifyTimeout%time.Millisecond != 0 {
		return &FieldError{"serve_stale verify timeout", c.StaleVerifyTimeout.String(), "0 (wait for the upstream) or a whole number of milliseconds"}
	}
	if c.StaleTTL < 0 || c.StaleTTL%time.Second != 0 {
		return &FieldError{"serve_stale TTL", c.StaleTTL.String(), "0s or a whole number of seconds"}
	}
	return nil
}

func wholeSeconds(field string, d, min time.Duration) error {
	if d < min || d%time.Second != 0 {
		return &FieldError{field, d.String(), fmt.Sprintf("a whole number of seconds, at least %s", min)}
	}
	return nil
}

func validServers(field string, servers []netip.AddrPort) error {
	for _, s := range servers {
		if !s.IsValid() || s.Port() == 0 || s.Addr().Zone() != "" {
			return &FieldError{field, s.String(), "IP or IP:PORT with a port from 1 to 65535"}
		}
		if s.Addr().IsUnspecified() {
			return &FieldError{field, s.String(), "a specific address, not " + s.Addr().String()}
		}
	}
	return nil
}

// ValidDomain reports whether s is a domain name a Corefile can hold.
func ValidDomain(s string) bool {
	if s == "" || strings.ContainsAny(s, " \t\n{}*\\\"#;") {
		return false
	}
	if _, ok := dns.IsDomainName(s); !ok {
		return false
	}
	return true
}

// Zone returns the canonical, fully-qualified, lower-case form of a domain.
func Zone(domain string) string {
	return dns.CanonicalName(domain)
}

// ParseServer reads a DNS server as IP or IP:PORT (IPv6 with a port in
// brackets); the port defaults to 53.
func ParseServer(s string) (netip.AddrPort, error) {
	s = strings.TrimSpace(s)
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("failed to parse DNS server %q: want IP, IP:PORT or [IPv6]:PORT", s)
	}
	return netip.AddrPortFrom(a.Unmap(), 53), nil
}
