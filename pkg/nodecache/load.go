package nodecache

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	"github.com/lrpdns/lrpdns/pkg/corefile"
	"github.com/lrpdns/lrpdns/pkg/nodecache/internal/kubednsconfig"
	"github.com/lrpdns/lrpdns/pkg/nodecache/internal/zones"
)

// Config reads every input and returns the validated configuration.
func (o *Options) Config() (*corefile.Config, error) {
	c := &corefile.Config{
		ClusterDomain: strings.TrimSuffix(o.ClusterDomain, "."),
		Port:          o.Port,
		HealthAddr:    o.HealthAddr,
		ReadyAddr:     o.ReadyAddr,
		MetricsAddr:   o.MetricsAddr,
		Lameduck:      o.Lameduck,
		Cache:         o.Cache,
		LogQueries:    o.LogQueries,
		NoIPv6Lookups: o.NoIPv6Lookups,
	}
	c.ClusterForward, c.ExternalForward, c.StubForward = o.ClusterForward, o.ExternalForward, o.StubForward
	for _, f := range []*corefile.Forward{&c.ClusterForward, &c.ExternalForward, &c.StubForward} {
		f.MaxConcurrent = o.ForwardMaxConcurrent
	}
	for _, b := range o.Bind {
		a, err := netip.ParseAddr(b)
		if err != nil {
			return nil, &corefile.FieldError{Field: "--bind", Value: b, Want: "IP addresses separated by commas"}
		}
		c.Bind = append(c.Bind, a)
	}
	var err error
	if c.ClusterDNS, err = o.clusterDNS(); err != nil {
		return nil, err
	}
	km, err := kubednsconfig.ReadDir(o.KubeDNSConfigDir)
	if err != nil {
		return nil, err
	}
	c.StubDomains = km.StubDomains
	if c.Zones, err = zones.Read(o.ZonesFile); err != nil {
		return nil, err
	}
	resolversFrom := kubednsconfig.FieldPrefix + kubednsconfig.KeyUpstreamNameservers
	if c.NodeResolvers = km.UpstreamNameservers; len(c.NodeResolvers) == 0 {
		if c.NodeResolvers, err = o.nodeResolvers(); err != nil {
			return nil, err
		}
		resolversFrom = "nameserver in " + o.ResolvConf
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	g, err := o.upstreamRules(c)
	if err != nil {
		return nil, err
	}
	if err := g.check(clusterDNSSource(o), c.ClusterDNS); err != nil {
		return nil, err
	}
	if err := g.check(resolversFrom, c.NodeResolvers); err != nil {
		return nil, err
	}
	for _, sd := range c.StubDomains {
		if err := g.check(fmt.Sprintf("%s%s[%q]", kubednsconfig.FieldPrefix, kubednsconfig.KeyStubDomains, sd.Domain), sd.Servers); err != nil {
			return nil, err
		}
	}
	for _, z := range c.Zones {
		if err := g.check(fmt.Sprintf("zones file %s zone %q servers", o.ZonesFile, z.Domain), z.Servers); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func clusterDNSSource(o *Options) string {
	if len(o.ClusterDNS) > 0 {
		return "--cluster-dns"
	}
	return serviceEnvPrefix(o.UpstreamService) + "HOST"
}

// serviceEnvPrefix is the prefix of a Service's service-link variables.
func serviceEnvPrefix(service string) string {
	return strings.ToUpper(strings.ReplaceAll(service, "-", "_")) + "_SERVICE_"
}

// Corefile reads every input and renders the Corefile.
func (o *Options) Corefile() ([]byte, error) {
	c, err := o.Config()
	if err != nil {
		return nil, err
	}
	return corefile.Render(c)
}

func (o *Options) getenv(k string) string {
	if o.Getenv != nil {
		return o.Getenv(k)
	}
	return os.Getenv(k)
}

// clusterDNS is --cluster-dns, or else the upstream Service's address from
// the environment variables the kubelet sets for Services in the pod's
// namespace (the dns-tcp port when named so, since forwards use TCP).
func (o *Options) clusterDNS() ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for _, s := range o.ClusterDNS {
		ap, err := corefile.ParseServer(s)
		if err != nil {
			return nil, &corefile.FieldError{Field: "--cluster-dns", Value: s, Want: "IP[:PORT] addresses separated by commas"}
		}
		out = append(out, ap)
	}
	if len(out) > 0 {
		return out, nil
	}
	prefix := serviceEnvPrefix(o.UpstreamService)
	host := o.getenv(prefix + "HOST")
	if host == "" {
		return nil, fmt.Errorf("no cluster DNS: --cluster-dns is empty and %sHOST is unset; "+
			"create Service %q in the pod's namespace before the pod starts, or pass --cluster-dns", prefix, o.UpstreamService)
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return nil, &corefile.FieldError{Field: prefix + "HOST", Value: host, Want: "an IP address"}
	}
	portVar := prefix + "PORT_DNS_TCP"
	port := o.getenv(portVar)
	if port == "" {
		portVar = prefix + "PORT"
		port = o.getenv(portVar)
	}
	p := uint64(53)
	if port != "" {
		if p, err = strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
			return nil, &corefile.FieldError{Field: portVar, Value: port, Want: "a port from 1 to 65535"}
		}
	}
	return []netip.AddrPort{netip.AddrPortFrom(a.Unmap(), uint16(p))}, nil
}

// nodeResolvers are the nameservers of resolv.conf: with dnsPolicy Default
// the node's own.
func (o *Options) nodeResolvers() ([]netip.AddrPort, error) {
	rc, err := dns.ClientConfigFromFile(o.ResolvConf)
	if err != nil {
		return nil, fmt.Errorf("failed to read node resolvers from %s: %w", o.ResolvConf, err)
	}
	port := o.resolverPort
	if port == 0 {
		port = 53
	}
	var out []netip.AddrPort
	for _, s := range rc.Servers {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return nil, &corefile.FieldError{Field: "nameserver in " + o.ResolvConf, Value: s, Want: "an IP address without a zone"}
		}
		out = append(out, netip.AddrPortFrom(a.Unmap(), port))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no nameserver in %s: the node-cache needs the node's resolvers (dnsPolicy: Default) or upstreamNameservers in the kube-dns ConfigMap", o.ResolvConf)
	}
	return out, nil
}
