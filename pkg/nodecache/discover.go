package nodecache

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// discoverInterval is how often the upstream Service is looked up while it
// is not found.
const discoverInterval = time.Second

// DiscoverClusterDNS finds the upstream Service when neither --cluster-dns
// nor its service-link variables say where it is: the pod started before the
// Service existed (the controller creates it for the DaemonSet). It asks the
// cluster DNS Service for <upstream>.<namespace>.svc.<cluster domain>, until
// found or ctx ends. The cache is not ready meanwhile, so the redirect does
// not send these queries to itself: they reach CoreDNS, or a ready cache on
// the node.
func (o *Options) DiscoverClusterDNS(ctx context.Context, log *slog.Logger) error {
	if len(o.ClusterDNS) > 0 || o.getenv(serviceEnvPrefix(o.UpstreamService)+"HOST") != "" {
		return nil
	}
	servers, from, err := o.kubeDNSAddrs()
	if err != nil {
		return err
	}
	if len(servers) == 0 {
		_, err := o.clusterDNS() // says what is missing
		return err
	}
	port := o.kubeDNSPort()
	name := dns.Fqdn(fmt.Sprintf("%s.%s.svc.%s", o.UpstreamService, o.Namespace, o.ClusterDomain))
	log.Info("upstream Service not in the environment; looking it up through the cluster DNS", "name", name, "clusterDNS", servers, "from", from)
	for attempt := 1; ; attempt++ {
		var found []string
		for _, s := range servers {
			found = append(found, lookup(ctx, netip.AddrPortFrom(s, port), name)...)
			if len(found) > 0 {
				break
			}
		}
		if len(found) > 0 {
			upstreamPort := o.upstreamPort
			if upstreamPort == 0 {
				upstreamPort = 53
			}
			for _, a := range found {
				o.ClusterDNS = append(o.ClusterDNS, netip.AddrPortFrom(netip.MustParseAddr(a), upstreamPort).String())
			}
			log.Info("found the upstream Service", "name", name, "clusterDNS", o.ClusterDNS, "attempts", attempt)
			return nil
		}
		if attempt%10 == 1 {
			log.Info("upstream Service not found yet; retrying", "name", name, "attempts", attempt)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("failed to find the upstream Service %s through the cluster DNS %v: %w", name, servers, ctx.Err())
		case <-time.After(discoverInterval):
		}
	}
}

// kubeDNSPort is the kube-dns Service's DNS port from its service links, or 53.
func (o *Options) kubeDNSPort() uint16 {
	prefix := serviceEnvPrefix(o.KubeDNSService)
	for _, k := range []string{prefix + "PORT_DNS", prefix + "PORT"} {
		var p uint16
		if _, err := fmt.Sscan(o.getenv(k), &p); err == nil && p != 0 {
			return p
		}
	}
	return 53
}

// lookup returns the addresses of name's A and AAAA records at server.
func lookup(ctx context.Context, server netip.AddrPort, name string) []string {
	var out []string
	c := &dns.Client{Timeout: 2 * time.Second}
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
		m := new(dns.Msg)
		m.SetQuestion(name, t)
		r, _, err := c.ExchangeContext(ctx, m, server.String())
		if err != nil || r.Rcode != dns.RcodeSuccess {
			continue
		}
		for _, rr := range r.Answer {
			switch rr := rr.(type) {
			case *dns.A:
				out = append(out, rr.A.String())
			case *dns.AAAA:
				out = append(out, rr.AAAA.String())
			}
		}
	}
	return out
}
