package nodecache

import (
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/lrpdns/lrpdns/pkg/corefile"
)

// upstreamRules know where no upstream may be: an upstream there sends the
// cache's own forwards back into it (CoreDNS's loop plugin would stop the
// process, on every node at once), or is out of the pod's reach.
type upstreamRules struct {
	// kubeDNS are the cluster DNS Service's addresses: the redirect sends
	// their DNS traffic, this cache's own forwards included, to this cache.
	kubeDNS     []netip.Addr
	kubeDNSFrom string
	// self are the cache's own addresses, listening on port.
	self []netip.Addr
	port int
	// loopback upstreams are unreachable from a pod's network namespace.
	allowLoopback bool
}

func (o *Options) upstreamRules(c *corefile.Config) (upstreamRules, error) {
	g := upstreamRules{port: c.Port, allowLoopback: o.AllowLoopbackResolvers}
	var err error
	if g.kubeDNS, g.kubeDNSFrom, err = o.kubeDNSAddrs(); err != nil {
		return g, err
	}
	g.self = c.Bind
	if len(g.self) == 0 {
		addrs, err := net.InterfaceAddrs()
		if err != nil {
			return g, fmt.Errorf("failed to list the pod's addresses: %w", err)
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				g.self = append(g.self, p.Addr().Unmap())
			}
		}
	}
	return g, nil
}

// kubeDNSAddrs are --kube-dns-ips, or else the kube-dns Service's address
// from its service-link environment variables (one family), or none.
func (o *Options) kubeDNSAddrs() ([]netip.Addr, string, error) {
	if len(o.KubeDNSIPs) > 0 {
		var out []netip.Addr
		for _, s := range o.KubeDNSIPs {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, "", &corefile.FieldError{Field: "--kube-dns-ips", Value: s, Want: "IP addresses separated by commas"}
			}
			out = append(out, a.Unmap())
		}
		return out, "--kube-dns-ips", nil
	}
	env := serviceEnvPrefix(o.KubeDNSService) + "HOST"
	host := o.getenv(env)
	if host == "" {
		return nil, "", nil
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return nil, "", &corefile.FieldError{Field: env, Value: host, Want: "an IP address"}
	}
	return []netip.Addr{a.Unmap()}, env, nil
}

// check refuses the first server in servers that loops or cannot be reached;
// field names where the servers came from.
func (g upstreamRules) check(field string, servers []netip.AddrPort) error {
	for _, s := range servers {
		a := s.Addr().Unmap()
		switch {
		case slices.Contains(g.kubeDNS, a):
			return &corefile.FieldError{Field: field, Value: s.String(), Want: fmt.Sprintf(
				"a server other than the cluster DNS Service (%s, from %s): the redirect sends its DNS traffic back to this cache, a loop",
				a, g.kubeDNSFrom)}
		case a.IsLoopback() && !g.allowLoopback:
			return &corefile.FieldError{Field: field, Value: s.String(), Want: "a server the pod can reach: a loopback address is the pod's own, not the node's " +
				"(point the node's resolv.conf at its real upstream, or set upstreamNameservers in the kube-dns ConfigMap)"}
		case int(s.Port()) == g.port && slices.Contains(g.self, a):
			return &corefile.FieldError{Field: field, Value: s.String(), Want: "a server other than this cache itself, a loop"}
		}
	}
	return nil
}
