package front

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/miekg/dns"

	"github.com/lrpdns/lrpdns/pkg/nodecache/internal/hot"
)

// Limits of the public sockets.
type Limits struct {
	// MaxTCPConns caps concurrent TCP connections across the public
	// addresses; one over it is closed at once.
	MaxTCPConns int
	// MaxTCPQueries is how many queries one TCP connection may carry.
	MaxTCPQueries int
	// ReadTimeout and IdleTimeout close slow and idle TCP connections
	// (CoreDNS's defaults: 3 s and 10 s).
	ReadTimeout, IdleTimeout, WriteTimeout time.Duration
	// UDPReadBuffer is the receive buffer asked for each UDP socket; the
	// kernel caps it at net.core.rmem_max.
	UDPReadBuffer int
	// MaxGoroutines pauses reading UDP while more goroutines run (see
	// pacedReader); 0 never pauses.
	MaxGoroutines int
	// UDPSockets is how many UDP sockets each address opens, bound with
	// SO_REUSEPORT so the kernel spreads packets over them, each read by
	// its own goroutine; 0 or 1 opens one plain socket.
	UDPSockets int
}

// DefaultLimits are the shipped limits. A held TCP connection costs about
// 9 KiB (a goroutine's stack and buffers), so 1,000 hold about 9 MiB.
var DefaultLimits = Limits{
	MaxTCPConns:   1000,
	MaxTCPQueries: 100,
	ReadTimeout:   3 * time.Second,
	IdleTimeout:   10 * time.Second,
	WriteTimeout:  5 * time.Second,
	UDPReadBuffer: 4 << 20,
	MaxGoroutines: 2048,
	UDPSockets:    1,
}

// Front is the public side of one node-cache.
type Front struct {
	limits   Limits
	internal string // CoreDNS's loopback host:port
	serving  atomic.Pointer[serving]
	work     *workers // serve UDP queries the store does not answer

	mu      sync.Mutex
	public  []string // host:port, as the Corefile's blocks say
	pending []string // addresses the configuration being built asks for
	servers []*dns.Server
	addrs   []net.Addr
	tcp     *limitListenerGroup
	closed  bool
	paused  atomic.Uint64
}

// New reserves a loopback port for CoreDNS.
func New(l Limits) (*Front, error) {
	port, err := freeLoopbackPort()
	if err != nil {
		return nil, err
	}
	f := &Front{limits: l, internal: net.JoinHostPort("127.0.0.1", port), tcp: newLimitListenerGroup(l.MaxTCPConns)}
	f.work = newWorkers(f.serveDNS, maxIdleWorkers, workerIdle)
	return f, nil
}

// A burst leaves at most maxIdleWorkers workers waiting, for workerIdle:
// with 16 KiB stacks at most 2 MiB, for 2 s.
const (
	maxIdleWorkers = 128
	workerIdle     = 2 * time.Second
)

// Addrs are the public listeners: TCP then UDP for each address.
func (f *Front) Addrs() []net.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.addrs)
}

// Refused counts TCP connections closed at once because MaxTCPConns were
// open.
func (f *Front) Refused() uint64 { return f.tcp.refused.Load() }

// Paused counts UDP reads that waited for goroutines to finish.
func (f *Front) Paused() uint64 { return f.paused.Load() }

// OpenTCP is the number of open public TCP connections.
func (f *Front) OpenTCP() int64 { return f.tcp.open.Load() }

var building struct {
	sync.Mutex
	gen   *generation
	first bool // no block of this build has set up yet
}

// Build runs start (a caddy Start or Restart of a Corefile whose blocks use
// the front directive) with f as the front those blocks attach to, then
// opens the public addresses they asked for. A configuration that asks for
// other public addresses than the running one is refused.
func (f *Front) Build(start func() error) error {
	building.Lock()
	g := &generation{f: f, ready: make(chan struct{})}
	building.gen, building.first = g, true
	f.mu.Lock()
	f.pending = nil
	f.mu.Unlock()
	prev := f.serving.Load()
	err := start()
	building.gen = nil
	building.Unlock()
	if err != nil {
		f.serving.Store(prev) // a server learnt before the start failed is not serving
		return err
	}
	select {
	case <-g.ready:
	case <-time.After(5 * time.Second):
		return errors.New("front: CoreDNS did not start serving within 5s, or the configuration has no front directive")
	}
	return f.listen()
}

func (f *Front) listen() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	want := slices.Clone(f.pending)
	slices.Sort(want)
	want = slices.Compact(want)
	if f.public != nil {
		if !slices.Equal(want, f.public) {
			return fmt.Errorf("front: the listen addresses changed from %v to %v; they are fixed for the life of the process", f.public, want)
		}
		return nil
	}
	for _, a := range want {
		if err := f.serve(a); err != nil {
			_ = f.shutdownLocked()
			return err
		}
	}
	f.public = want
	return nil
}

// serve opens addr over UDP and TCP.
func (f *Front) serve(addr string) error {
	ln, pcs, err := listenBoth(addr, max(f.limits.UDPSockets, 1))
	if err != nil {
		return fmt.Errorf("front: %w", err)
	}
	h := dns.HandlerFunc(f.serveDNS)
	idle := f.limits.IdleTimeout
	tcp := &dns.Server{
		Listener: f.tcp.wrap(ln), Net: "tcp", Handler: h,
		MaxTCPQueries: f.limits.MaxTCPQueries, ReadTimeout: f.limits.ReadTimeout, WriteTimeout: f.limits.WriteTimeout,
		IdleTimeout: func() time.Duration { return idle },
		DecorateReader: func(r dns.Reader) dns.Reader {
			return &tcpReader{Reader: r, f: f, limit: f.limits.MaxTCPQueries, idle: idle}
		},
	}
	servers := []*dns.Server{tcp}
	for _, pc := range pcs {
		if uc, ok := pc.(*net.UDPConn); ok && f.limits.UDPReadBuffer > 0 {
			_ = uc.SetReadBuffer(f.limits.UDPReadBuffer)
		}
		udp := &dns.Server{PacketConn: pc, Net: "udp", Handler: h}
		udp.DecorateReader = func(r dns.Reader) dns.Reader {
			return &udpReader{Reader: r, f: f, paced: pacedReader{max: f.limits.MaxGoroutines, waited: &f.paused}}
		}
		servers = append(servers, udp)
	}
	for _, s := range servers {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go func() { _ = s.ActivateAndServe() }()
		<-started
	}
	f.servers = append(f.servers, servers...)
	f.addrs = append(f.addrs, ln.Addr(), pcs[0].LocalAddr())
	return nil
}

// listenBoth opens addr over TCP and n UDP sockets. With port 0 (tests),
// TCP takes a free port and UDP the same one; a free TCP port may be taken
// for UDP (another test's socket: "address already in use" in a make test
// run), and then another port is tried, up to ten.
func listenBoth(addr string, n int) (net.Listener, []net.PacketConn, error) {
	host, want, _ := net.SplitHostPort(addr)
	for attempt := 1; ; attempt++ {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, nil, err
		}
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		pcs, err := listenUDP(net.JoinHostPort(host, port), n)
		if err == nil {
			return ln, pcs, nil
		}
		_ = ln.Close()
		if want != "0" || !errors.Is(err, syscall.EADDRINUSE) || attempt == 10 {
			return nil, nil, err
		}
	}
}

// listenUDP opens n UDP sockets on addr: one plain socket, or n bound with
// SO_REUSEPORT.
func listenUDP(addr string, n int) ([]net.PacketConn, error) {
	if n == 1 {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, err
		}
		return []net.PacketConn{pc}, nil
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error { return reusePort(c) }}
	pcs := make([]net.PacketConn, 0, n)
	for range n {
		pc, err := lc.ListenPacket(context.Background(), "udp", addr)
		if err != nil {
			for _, p := range pcs {
				_ = p.Close()
			}
			return nil, err
		}
		pcs = append(pcs, pc)
	}
	return pcs, nil
}

// serving is the configuration the front serves: its server and, if its
// blocks have the hot directive, its store of answers.
type serving struct {
	server *dnsserver.Server
	hot    *hot.Store
}

// serveDNS is CoreDNS's own handler for its listeners, on the server
// learnt last. With a store, what the chain answers is learnt.
func (f *Front) serveDNS(w dns.ResponseWriter, r *dns.Msg) {
	sv := f.serving.Load()
	ctx := context.WithValue(context.Background(), dnsserver.Key{}, sv.server)
	ctx = context.WithValue(ctx, dnsserver.LoopKey{}, 0)
	if sv.hot == nil || !hot.Eligible(r) {
		sv.server.ServeDNS(ctx, w, r)
		return
	}
	ctx, c := hot.WithCapture(ctx)
	rec := &recorder{ResponseWriter: w}
	sv.server.ServeDNS(ctx, rec, r)
	if c.Passed() && !sv.hot.MayHold(r.Question[0].Name, r.Question[0].Qtype) {
		return // a miss with nothing to forget: no packing
	}
	// r is still the query as the client sent it: no plugin before the
	// cache changes it, and the cache passes a copy on.
	q, err := r.Pack()
	if err != nil {
		return
	}
	proto := hot.UDP
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		proto = hot.TCP
	}
	sv.hot.Learn(q, rec.resp, proto, c)
}

// Shutdown closes the public sockets and waits for queries in flight.
func (f *Front) Shutdown() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.shutdownLocked()
}

func (f *Front) shutdownLocked() error {
	if f.closed {
		return nil
	}
	f.closed = true
	var errs []error
	for _, s := range f.servers {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, s.ShutdownContext(ctx))
		cancel()
	}
	return errors.Join(errs...)
}

func freeLoopbackPort() (string, error) {
	for range 10 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", fmt.Errorf("front: no loopback port for CoreDNS: %w", err)
		}
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", port))
		_ = ln.Close()
		if err == nil {
			_ = pc.Close()
			return port, nil
		}
	}
	return "", errors.New("front: no loopback port free over both TCP and UDP")
}
