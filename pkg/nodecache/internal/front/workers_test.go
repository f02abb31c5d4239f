package front

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// answer is the handler of these tests: a reply with one A record, the
// query's OPT echoed, so that what the writer sends depends on the query.
func answer(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	if len(r.Question) == 0 { // dns.Server lets a header that promises one through
		m.Rcode = dns.RcodeServerFailure
		_ = w.WriteMsg(m)
		return
	}
	m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 30}, A: net.IPv4(192, 0, 2, 1)}}
	if o := r.IsEdns0(); o != nil {
		m.SetEdns0(o.UDPSize(), o.Do())
	}
	_ = w.WriteMsg(m)
}

// serveUDP serves h on a loopback UDP socket: through a front's reader and
// workers when f is set, else as a bare dns.Server. It returns the address
// and the server.
func serveUDP(t *testing.T, f *Front, h dns.HandlerFunc) (string, *dns.Server) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &dns.Server{PacketConn: pc, Net: "udp", Handler: h}
	if f != nil {
		s.DecorateReader = func(r dns.Reader) dns.Reader { return &udpReader{Reader: r, f: f} }
	}
	started := make(chan struct{})
	s.NotifyStartedFunc = func() { close(started) }
	go func() { _ = s.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = s.Shutdown() })
	return pc.LocalAddr().String(), s
}

// testFront is a front with no CoreDNS and no store: its workers serve h.
func testFront(h dns.HandlerFunc, maxIdle int, idleFor time.Duration) *Front {
	f := &Front{}
	f.serving.Store(&serving{})
	f.work = newWorkers(h, maxIdle, idleFor)
	return f
}

// raw sends b and returns the reply's bytes, or nil if none came within
// wait. Safe in any goroutine: a socket error is an Errorf.
func raw(t *testing.T, addr string, b []byte, wait time.Duration) []byte {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Error(err)
		return nil
	}
	defer func() { _ = c.Close() }()
	if _, err := c.Write(b); err != nil {
		t.Error(err)
		return nil
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	if err != nil {
		t.Error(err)
		return nil
	}
	return buf[:n]
}

func query(t *testing.T, name string, edns bool) []byte {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	m.Id = 0x4242
	if edns {
		m.SetEdns0(1232, true)
		m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWorkersAnswerAsDNSServer: for queries dns.Server serves, refuses
// (other opcodes, several questions, a response, more records than a query
// has), cannot unpack (cut short, a bad name) or drops (under a header),
// and for random mutations of those, the front's reader and workers send
// byte for byte what a bare dns.Server with the same handler sends, or,
// like it, nothing.
func TestWorkersAnswerAsDNSServer(t *testing.T) {
	t.Parallel()
	f := testFront(answer, 8, time.Second)
	front, _ := serveUDP(t, f, answer)
	bare, _ := serveUDP(t, nil, answer)

	set := func(b []byte, off int, v uint16) []byte {
		b = bytes.Clone(b)
		binary.BigEndian.PutUint16(b[off:], v)
		return b
	}
	plain, withOPT := query(t, "a.example.", false), query(t, "b.example.", true)
	cases := map[string][]byte{
		"query":                plain,
		"query with OPT":       withOPT,
		"NOTIFY":               set(plain, 2, 0x2000),
		"UPDATE":               set(plain, 2, 0x2800),
		"IQUERY":               set(plain, 2, 0x0800),
		"a response":           set(plain, 2, 0x8000),
		"no question":          set(plain, 4, 0),
		"two questions":        set(plain, 4, 2),
		"two answers":          set(plain, 6, 2),
		"three additional":     set(plain, 10, 3),
		"cut in the question":  plain[:len(plain)-3],
		"cut in the OPT":       withOPT[:len(withOPT)-4],
		"a label past the end": append(bytes.Clone(plain[:12]), 63, 'a'),
		"header only":          plain[:12],
		"under a header":       plain[:11],
		"the Z bit":            set(plain, 2, 0x0140),
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		b := bytes.Clone([][]byte{plain, withOPT}[i%2])
		for range 1 + rng.IntN(3) {
			b[rng.IntN(len(b))] = byte(rng.Uint32())
		}
		cases[fmt.Sprintf("mutation %d", i)] = b
	}
	// All at once, each waiting up to a second for what may not come.
	var mu sync.Mutex
	var wg sync.WaitGroup
	answered := 0
	for name, b := range cases {
		wg.Go(func() {
			want := raw(t, bare, b, time.Second)
			got := raw(t, front, b, time.Second)
			mu.Lock()
			defer mu.Unlock()
			if !bytes.Equal(got, want) {
				t.Errorf("%s (% x): front sent % x, dns.Server % x", name, b, got, want)
			}
			if want != nil {
				answered++
			}
		})
	}
	wg.Wait()
	if answered < len(cases)/2 {
		t.Errorf("dns.Server answered %d of %d packets: too few to compare", answered, len(cases))
	}
	if f.work.started.Load() == 0 {
		t.Error("no query went to a worker")
	}
}

// TestWorkersLastAndAreFew: 2,000 queries one after another are served by
// a handful of goroutines, not one each.
func TestWorkersLastAndAreFew(t *testing.T) {
	t.Parallel()
	f := testFront(answer, 8, time.Minute)
	addr, _ := serveUDP(t, f, answer)
	c := &dns.Client{Timeout: 2 * time.Second}
	for i := range 2000 {
		m := new(dns.Msg)
		m.SetQuestion("q.example.", dns.TypeA)
		r, _, err := c.Exchange(m, addr)
		if err != nil || len(r.Answer) != 1 {
			t.Fatalf("query %d: %v, %v", i, r, err)
		}
	}
	if n := f.work.started.Load(); n > 8 {
		t.Errorf("%d goroutines started for 2,000 queries in sequence, want at most 8", n)
	}
}

// TestWorkersSlowQueryHoldsUpNothing: while queries wait on a slow
// upstream, more than maxIdle of them, others are answered; once they are
// answered at most maxIdle goroutines wait, and after the idle time none.
func TestWorkersSlowQueryHoldsUpNothing(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	h := func(w dns.ResponseWriter, r *dns.Msg) {
		if r.Question[0].Name == "slow.example." {
			<-release
		}
		answer(w, r)
	}
	const maxIdle, slow = 4, 40
	f := testFront(h, maxIdle, 300*time.Millisecond)
	addr, _ := serveUDP(t, f, h)
	var wg sync.WaitGroup
	errs := make(chan error, slow)
	for range slow {
		wg.Go(func() {
			c := &dns.Client{Timeout: 10 * time.Second}
			m := new(dns.Msg)
			m.SetQuestion("slow.example.", dns.TypeA)
			if _, _, err := c.Exchange(m, addr); err != nil {
				errs <- err
			}
		})
	}
	waitUntil(t, "40 slow queries in workers", func() bool { return f.work.started.Load() >= slow })
	c := &dns.Client{Timeout: time.Second}
	for i := range 20 {
		m := new(dns.Msg)
		m.SetQuestion("fast.example.", dns.TypeA)
		if _, _, err := c.Exchange(m, addr); err != nil {
			t.Fatalf("fast query %d while %d slow ones wait: %v", i, slow, err)
		}
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("slow query: %v", err)
	}
	waitUntil(t, "the workers to settle", func() bool { return f.work.idle.Load() <= maxIdle })
	if n := f.work.idle.Load(); n > maxIdle {
		t.Errorf("%d workers idle, want at most %d", n, maxIdle)
	}
	waitUntil(t, "idle workers to end", func() bool { return f.work.idle.Load() == 0 })
}

// TestShutdownAnswersQueriesInFlight: a query in a worker when the server
// shuts down is still answered on the socket, as dns.Server answers its
// own before it closes it.
func TestShutdownAnswersQueriesInFlight(t *testing.T) {
	t.Parallel()
	inside, release := make(chan struct{}), make(chan struct{})
	h := func(w dns.ResponseWriter, r *dns.Msg) {
		close(inside)
		<-release
		answer(w, r)
	}
	f := testFront(h, 4, time.Second)
	addr, s := serveUDP(t, f, h)
	got := make(chan []byte, 1)
	go func() { got <- raw(t, addr, query(t, "in-flight.example.", false), 5*time.Second) }()
	<-inside
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stopped <- s.ShutdownContext(ctx)
	}()
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-stopped:
		t.Fatalf("shutdown returned (%v) with a query in flight", err)
	default:
	}
	close(release)
	if b := <-got; b == nil {
		t.Error("the query in flight at shutdown got no answer")
	}
	if err := <-stopped; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
		time.Sleep(5 * time.Millisecond)
	}
}
