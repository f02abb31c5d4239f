package soak

import (
	"net"
	"sync/atomic"

	"github.com/miekg/dns"
)

// upstream answers every A query with 192.0.2.1 (TTL 5 s: names expire
// within a mix, so stale answers are exercised), or, when
// down, drops every query (an upstream that hangs).
type upstream struct {
	addr    string
	down    atomic.Bool
	servers []*dns.Server
}

func startUpstream() (*upstream, error) {
	var pc net.PacketConn
	var ln net.Listener
	var err error
	for range 10 { // the UDP port may be taken over TCP
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			return nil, err
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		_ = pc.Close()
	}
	if err != nil {
		return nil, err
	}
	u := &upstream{addr: pc.LocalAddr().String()}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		if u.down.Load() || len(r.Question) != 1 {
			return
		}
		m := new(dns.Msg)
		m.SetReply(r)
		if r.Question[0].Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5}, A: net.IPv4(192, 0, 2, 1)})
		}
		_ = w.WriteMsg(m)
	})
	u.servers = []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}}
	for _, s := range u.servers {
		go func() { _ = s.ActivateAndServe() }()
	}
	return u, nil
}

func (u *upstream) close() {
	for _, s := range u.servers {
		_ = s.Shutdown()
	}
}
