package hot

import (
	"sync"
	"time"

	"github.com/coredns/coredns/plugin/metrics/vars"
	"github.com/coredns/coredns/plugin/pkg/rcode"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// hits counts the answers served here. CoreDNS's cache_hits_total counts
// only those the cache plugin served; the two together are the hits.
var hits = promauto.NewCounterVec(prometheus.CounterOpts{
	Namespace: "lrpdns",
	Subsystem: "node_cache",
	Name:      "hot_hits_total",
	Help:      "Queries answered from the cache's own earlier answers without the plugin chain; add coredns_cache_hits_total for all cache hits.",
}, []string{"server", "zone"})

// metricSet is what CoreDNS's prometheus plugin records of a query (its
// vars.Report), resolved to the query's labels once, when its answer is
// learnt, so that a hit only adds and observes.
type metricSet struct {
	requests                    [2]lazyCounter     // by family: IPv4, IPv6
	do                          prometheus.Counter // nil unless the query has DO
	duration, respSize, reqSize prometheus.Observer
	rcode, hits                 prometheus.Counter
	respLen                     float64
}

// lazyCounter is a counter made at its first use: CoreDNS shows a family's
// series only once a query of that family came.
type lazyCounter struct {
	once   sync.Once
	labels []string
	c      prometheus.Counter
}

func (l *lazyCounter) inc() {
	l.once.Do(func() { l.c = vars.RequestCount.WithLabelValues(l.labels...) })
	l.c.Inc()
}

func newMetricSet(c *Capture, q, resp []byte, proto int) *metricSet {
	if !c.Counted {
		return nil
	}
	name, off, err := dns.UnpackDomainName(q, 12)
	if err != nil || off+4 > len(q) {
		name = "."
	}
	var qtype uint16
	if off+4 <= len(q) {
		qtype = uint16(q[off])<<8 | uint16(q[off+1])
	}
	zone := zoneOf(c.Zones, name)
	net := "udp"
	if proto == TCP {
		net = "tcp"
	}
	s, v := c.Server, c.View
	m := &metricSet{
		requests: [2]lazyCounter{
			{labels: []string{s, zone, v, net, "1", typeLabel(qtype)}},
			{labels: []string{s, zone, v, net, "2", typeLabel(qtype)}},
		},
		duration: vars.RequestDuration.WithLabelValues(s, zone, v),
		respSize: vars.ResponseSize.WithLabelValues(s, zone, v, net),
		reqSize:  vars.RequestSize.WithLabelValues(s, zone, v, net),
		rcode:    vars.ResponseRcode.WithLabelValues(s, zone, v, rcode.ToString(int(resp[3]&0xF)), c.Writer),
		hits:     hits.WithLabelValues(s, zone),
		respLen:  float64(len(resp)),
	}
	if hasDO(q, off+4) {
		m.do = vars.RequestDo.WithLabelValues(s, zone, v)
	}
	return m
}

func (m *metricSet) report(v6 bool, qlen int, start time.Time) {
	if m == nil {
		return
	}
	if v6 {
		m.requests[1].inc()
	} else {
		m.requests[0].inc()
	}
	if m.do != nil {
		m.do.Inc()
	}
	m.duration.Observe(time.Since(start).Seconds())
	m.respSize.Observe(m.respLen)
	m.reqSize.Observe(float64(qlen))
	m.rcode.Inc()
	m.hits.Inc()
}

// hasDO reads the DO bit of the OPT record at off, the query's only
// additional record if it has one.
func hasDO(q []byte, off int) bool {
	// root name (1), type (2), class (2), extended rcode (1), version (1), flags (2)
	if off+11 > len(q) || q[off] != 0 || uint16(q[off+1])<<8|uint16(q[off+2]) != dns.TypeOPT {
		return false
	}
	return q[off+7]&0x80 != 0
}

// typeLabel is the type label CoreDNS's metrics give a query (vars'
// monitorType).
func typeLabel(t uint16) string {
	switch t {
	case dns.TypeAAAA, dns.TypeA, dns.TypeCNAME, dns.TypeDNSKEY, dns.TypeDS, dns.TypeMX, dns.TypeNSEC3,
		dns.TypeNSEC, dns.TypeNS, dns.TypePTR, dns.TypeRRSIG, dns.TypeSOA, dns.TypeSRV, dns.TypeTXT,
		dns.TypeHTTPS, dns.TypeSVCB, dns.TypeIXFR, dns.TypeAXFR, dns.TypeANY:
		return dns.Type(t).String()
	}
	return "other"
}
