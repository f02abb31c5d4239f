package front

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// workers serve the UDP queries a reader hands over, each in a goroutine
// that stays for the next query instead of ending. dns.Server starts a new
// goroutine for every packet, whose stack then grows, copied each time it
// doubles, to the depth of the plugin chain and the forward's exchange: a
// cost paid again by every query. A worker's stack has grown once.
//
// A query never waits for a worker: it goes to an idle one if there is
// one and to a new goroutine otherwise, as many as queries in flight, so
// a slow upstream holds up nothing else. At most maxIdle wait for work,
// each for idleFor, then end: after a burst the goroutines go, as
// dns.Server's do, and the reader's pacing (which counts goroutines)
// sees at most maxIdle more than queries in flight.
type workers struct {
	serve   func(dns.ResponseWriter, *dns.Msg)
	maxIdle int32
	idleFor time.Duration

	jobs    chan job // unbuffered: a send succeeds only when a worker waits
	idle    atomic.Int32
	started atomic.Uint64 // goroutines started
}

// job is one query, where its answer goes, and the reader's count of its
// queries in flight.
type job struct {
	conn *net.UDPConn
	s    *dns.SessionUDP
	m    *dns.Msg
	wg   *sync.WaitGroup
}

func newWorkers(serve func(dns.ResponseWriter, *dns.Msg), maxIdle int, idleFor time.Duration) *workers {
	return &workers{serve: serve, maxIdle: int32(maxIdle), idleFor: idleFor, jobs: make(chan job)} // #nosec G115 -- a small constant
}

// do serves j in a waiting worker or a new one, counting it in j.wg
// until it is answered.
func (p *workers) do(j job) {
	j.wg.Add(1)
	select {
	case p.jobs <- j:
	default:
		p.started.Add(1)
		go p.work(j)
	}
}

func (p *workers) work(j job) {
	var t *time.Timer
	for {
		p.serve(&udpWriter{conn: j.conn, s: j.s}, j.m)
		j.wg.Done()
		if p.idle.Add(1) > p.maxIdle {
			p.idle.Add(-1)
			return
		}
		if t == nil {
			t = time.NewTimer(p.idleFor)
		} else {
			t.Reset(p.idleFor)
		}
		select {
		case j = <-p.jobs:
			p.idle.Add(-1)
		case <-t.C:
			p.idle.Add(-1)
			return
		}
	}
}

// udpWriter is dns.Server's UDP response writer for a worker: it packs
// and sends as dns.Server does, to the session the query came from.
type udpWriter struct {
	conn *net.UDPConn
	s    *dns.SessionUDP
}

func (w *udpWriter) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func (w *udpWriter) Write(b []byte) (int, error) { return dns.WriteToSessionUDP(w.conn, b, w.s) }
func (w *udpWriter) LocalAddr() net.Addr         { return w.conn.LocalAddr() }
func (w *udpWriter) RemoteAddr() net.Addr        { return w.s.RemoteAddr() }
func (w *udpWriter) TsigStatus() error           { return nil }
func (w *udpWriter) TsigTimersOnly(bool)         {}
func (w *udpWriter) Hijack()                     {}

// Close does nothing: the socket is the listener's, as for dns.Server's
// UDP writer.
func (w *udpWriter) Close() error { return nil }
