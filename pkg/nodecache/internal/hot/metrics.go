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

// setKey is the labels of a metricSet.
type setKey struct {
	server, zone, view, net, qtype, rcode, writer string
	do                                            bool
}

// metricSetLocked is the metrics of a query (name, qtype, DO bit, as it
// was learnt) the chain answered with rc over proto (nil when the block is
// not counted), one per label set.
func (s *Store) metricSetLocked(c *Capture, name string, qtype uint16, do bool, rc byte, proto int) *metricSet {
	if !c.Counted {
		return nil
	}
	k := setKey{server: c.Server, zone: zoneOf(c.Zones, name), view: c.View, net: "udp", qtype: typeLabel(qtype),
		rcode: rcode.ToString(int(rc)), writer: c.Writer, do: do}
	if proto == TCP {
		k.net = "tcp"
	}
	if m := s.sets[k]; m != nil {
		return m
	}
	m := &metricSet{
		requests: [2]lazyCounter{
			{labels: []string{k.server, k.zone, k.view, k.net, "1", k.qtype}},
			{labels: []string{k.server, k.zone, k.view, k.net, "2", k.qtype}},
		},
		duration: vars.RequestDuration.WithLabelValues(k.server, k.zone, k.view),
		respSize: vars.ResponseSize.WithLabelValues(k.server, k.zone, k.view, k.net),
		reqSize:  vars.RequestSize.WithLabelValues(k.server, k.zone, k.view, k.net),
		rcode:    vars.ResponseRcode.WithLabelValues(k.server, k.zone, k.view, k.rcode, k.writer),
		hits:     hits.WithLabelValues(k.server, k.zone),
	}
	if k.do {
		m.do = vars.RequestDo.WithLabelValues(k.server, k.zone, k.view)
	}
	s.sets[k] = m
	return m
}

func (m *metricSet) report(v6 bool, qlen, rlen int, start time.Time) {
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
	m.respSize.Observe(float64(rlen))
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
