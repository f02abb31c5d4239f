package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/miekg/dns"

	"github.com/lrpdns/lrpdns/internal/dnstest"
)

func TestProbeCountsAnswersAndFailures(t *testing.T) {
	t.Parallel()
	s := dnstest.StartTB(t, dnstest.Options{Answer: netip.MustParseAddr("192.0.2.7"), TTL: 30})
	var out bytes.Buffer
	args := []string{"probe", "--server", s.Addr.String(), "--count", "6", "--interval", "0s", "a.example.com", "b.example.com"}
	if err := Run(context.Background(), args, &out, io.Discard); err != nil {
		t.Fatalf("probe: %v\n%s", err, out.String())
	}
	var rep probeReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Sent != 6 || rep.Answered != 6 || rep.Answers["192.0.2.7"] != 6 || s.Count() != 6 || len(s.QueriesFor("b.example.com")) != 3 {
		t.Errorf("report %+v, server saw %d; want 6 answered, round robin", rep, s.Count())
	}

	s.Close() // now every query fails
	out.Reset()
	args[2] = s.Addr.String()
	args = append(args[:len(args)-2], "--timeout", "200ms", "a.example.com")
	err := Run(context.Background(), args, &out, io.Discard)
	if !errors.Is(err, ErrProbeFailed) {
		t.Fatalf("probe against a closed server: %v, want ErrProbeFailed", err)
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || rep.Failed != 6 || len(rep.Failures) != 6 {
		t.Fatalf("report %+v (%v), want 6 failures listed", rep, err)
	}
	// A closed UDP port answers with ICMP: refused, or a timeout where it
	// is lost; each failure says when it was sent and what was asked.
	for _, f := range rep.Failures {
		if (f.Kind != "refused" && f.Kind != "timeout") || f.Name != "a.example.com." || f.At.Before(rep.Started) || f.Detail == "" {
			t.Errorf("failure %+v, want a refused or timed-out a.example.com. sent after %v", f, rep.Started)
		}
	}
	if sum(rep.PerSecond) != rep.Sent || len(rep.PerSecond) == 0 {
		t.Errorf("per second %v, want the %d queries sent", rep.PerSecond, rep.Sent)
	}
}

func sum(ns []int) int {
	n := 0
	for _, x := range ns {
		n += x
	}
	return n
}

// TestProbeTimeline: queries are counted in the second they were sent.
func TestProbeTimeline(t *testing.T) {
	t.Parallel()
	s := dnstest.StartTB(t, dnstest.Options{Answer: netip.MustParseAddr("192.0.2.7"), TTL: 30})
	var out bytes.Buffer
	args := []string{"probe", "--server", s.Addr.String(), "--duration", "2500ms", "--interval", "100ms", "a.example.com"}
	if err := Run(context.Background(), args, &out, io.Discard); err != nil {
		t.Fatalf("probe: %v\n%s", err, out.String())
	}
	var rep probeReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.PerSecond) != 3 || sum(rep.PerSecond) != rep.Sent || rep.PerSecond[0] < 5 || rep.PerSecond[1] < 5 {
		t.Errorf("per second %v for %d sent over 2.5 s every 100 ms; want 3 seconds, about 10 a second", rep.PerSecond, rep.Sent)
	}
}

// TestProbeChecksAnswers: an answer that is not the expected one (a query
// that reached the wrong upstream) is a failure, and --fresh names are never
// the same twice.
func TestProbeChecksAnswers(t *testing.T) {
	t.Parallel()
	s := dnstest.StartTB(t, dnstest.Options{Answer: netip.MustParseAddr("192.0.2.7"), TTL: 30})
	var out bytes.Buffer
	args := []string{"probe", "--server", s.Addr.String(), "--count", "9", "--interval", "0s", "--fresh", "default.pod.cluster.local",
		"right.example.com=192.0.2.7", "wrong.example.com=198.51.100.53"}
	err := Run(context.Background(), args, &out, io.Discard)
	if !errors.Is(err, ErrProbeFailed) {
		t.Fatalf("probe: %v, want ErrProbeFailed", err)
	}
	var rep probeReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	// 3 rounds: right (answered), wrong (failed), fresh (10.r.1.n: the test
	// server answers 192.0.2.7, so wrong too).
	if rep.Sent != 9 || rep.Answered != 3 || rep.Failed != 6 || rep.Wrong != 6 {
		t.Errorf("report %+v, want 9 sent, 3 answered, 6 wrong", rep)
	}
	var fresh []string
	for _, q := range s.Queries() {
		if strings.HasSuffix(q.Name, ".default.pod.cluster.local.") {
			fresh = append(fresh, q.Name)
		}
	}
	if len(fresh) != 3 || fresh[0] == fresh[1] || fresh[1] == fresh[2] {
		t.Errorf("fresh names %v, want 3 different ones", fresh)
	}
	found := false
	for _, f := range rep.Failures {
		if f.Kind != "wrong" {
			t.Errorf("failure %+v, want kind wrong", f)
		}
		found = found || strings.Contains(f.Detail, "want 198.51.100.53")
	}
	if !found {
		t.Errorf("failures %+v do not say what was wanted", rep.Failures)
	}
}

// TestProbeSpelledExternal: with --fresh-external SUFFIX=spelled, each
// never-seen external name spells the address it must get.
func TestProbeSpelledExternal(t *testing.T) {
	t.Parallel()
	s := dnstest.StartTB(t, dnstest.Options{Answer: netip.MustParseAddr("10.7.1.1"), TTL: 30})
	var out bytes.Buffer
	args := []string{"probe", "--server", s.Addr.String(), "--count", "2", "--interval", "0s", "--run", "7", "--fresh-external", "example.com=spelled"}
	err := Run(context.Background(), args, &out, io.Discard)
	var rep probeReport
	if jerr := json.Unmarshal(out.Bytes(), &rep); jerr != nil {
		t.Fatal(jerr)
	}
	// The test server answers 10.7.1.1 to all: right for the first name
	// (10-7-1-1.example.com), wrong for the second.
	if !errors.Is(err, ErrProbeFailed) || rep.Answered != 1 || rep.Wrong != 1 || len(rep.Failures) != 1 || rep.Failures[0].Name != "10-7-1-2.example.com." {
		t.Errorf("report %+v (%v); want 10-7-1-1 answered and 10-7-1-2 wrong", rep, err)
	}
}

func TestFreshNameSpellsItsAddress(t *testing.T) {
	t.Parallel()
	for n, want := range map[int][2]string{
		0:   {"10-7-1-1.default.pod.cluster.local.", "10.7.1.1"},
		253: {"10-7-1-254.default.pod.cluster.local.", "10.7.1.254"},
		254: {"10-7-2-1.default.pod.cluster.local.", "10.7.2.1"},
	} {
		if got := freshName("default.pod.cluster.local", 7, n); got.name != want[0] || got.want != want[1] {
			t.Errorf("freshName(%d) = %+v, want %v", n, got, want)
		}
	}
}

// TestProbeFreshExternalNames: --fresh-external adds a never-seen name under
// the suffix to each round, checked against the wanted answer.
func TestProbeFreshExternalNames(t *testing.T) {
	t.Parallel()
	s := dnstest.StartTB(t, dnstest.Options{Answer: netip.MustParseAddr("192.0.2.7"), TTL: 30})
	var out bytes.Buffer
	args := []string{"probe", "--server", s.Addr.String(), "--count", "6", "--interval", "0s", "--fresh-external", "example.com=192.0.2.7", "a.example.org=192.0.2.7"}
	if err := Run(context.Background(), args, &out, io.Discard); err != nil {
		t.Fatalf("probe: %v\n%s", err, out.String())
	}
	seen := map[string]bool{}
	for _, q := range s.Queries() {
		if strings.HasSuffix(q.Name, ".example.com.") {
			seen[q.Name] = true
		}
	}
	if len(seen) != 3 {
		t.Errorf("never-seen external names %v, want 3 different ones in 3 rounds", seen)
	}
}

// TestProbeRun: --run sets the number in every never-seen name, so probes
// side by side never ask each other's names; out of range is refused with
// the flag, the value and what is accepted.
func TestProbeRun(t *testing.T) {
	t.Parallel()
	s := dnstest.StartTB(t, dnstest.Options{Answer: netip.MustParseAddr("192.0.2.7"), TTL: 30})
	args := []string{"probe", "--server", s.Addr.String(), "--count", "4", "--interval", "0s", "--run", "9",
		"--fresh-external", "example.com=192.0.2.7", "a.example.org=192.0.2.7"}
	if err := Run(context.Background(), args, io.Discard, io.Discard); err != nil {
		t.Fatalf("probe: %v", err)
	}
	var fresh []string
	for _, q := range s.Queries() {
		if strings.HasSuffix(q.Name, ".example.com.") {
			fresh = append(fresh, q.Name)
		}
	}
	if want := []string{"r9-0.example.com.", "r9-1.example.com."}; !slices.Equal(fresh, want) {
		t.Errorf("never-seen names %v, want %v", fresh, want)
	}
	for _, bad := range []string{"255", "-1"} {
		err := Run(context.Background(), []string{"probe", "--count", "1", "--run", bad, "a.example.com"}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "--run "+bad) || !strings.Contains(err.Error(), "1 to 254") {
			t.Errorf("--run %s: error %v, want the flag, its value and the range", bad, err)
		}
	}
}

// TestProbeFlagAfterNames: the flag package stops at the first name, so a
// flag after one would be asked as a name; the probe refuses it.
func TestProbeFlagAfterNames(t *testing.T) {
	t.Parallel()
	err := Run(context.Background(), []string{"probe", "--count", "1", "a.example.com", "--fresh-external", "example.com"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `flag "--fresh-external" after the names`) {
		t.Errorf("error = %v, want the misplaced flag named", err)
	}
}

// peerRecorder answers every A query with 192.0.2.9 over UDP and TCP on one
// port and records the client address of each query.
type peerRecorder struct {
	addr  string
	mu    sync.Mutex
	peers []string
}

func startPeerRecorder(t *testing.T, maxTCPQueries int) *peerRecorder {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		t.Skipf("port %s taken over TCP: %v", pc.LocalAddr(), err)
	}
	p := &peerRecorder{addr: pc.LocalAddr().String()}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		p.mu.Lock()
		p.peers = append(p.peers, w.RemoteAddr().Network()+" "+w.RemoteAddr().String())
		p.mu.Unlock()
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 30}, A: net.IPv4(192, 0, 2, 9)})
		_ = w.WriteMsg(m)
	})
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h, MaxTCPQueries: maxTCPQueries}} {
		go func() { _ = s.ActivateAndServe() }()
		t.Cleanup(func() { _ = s.Shutdown() })
	}
	return p
}

func (p *peerRecorder) distinct() (int, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := map[string]bool{}
	for _, x := range p.peers {
		seen[x] = true
	}
	return len(seen), slices.Clone(p.peers)
}

// TestProbeClientKinds: each client kind holds its sockets as the resolver
// it stands for: a new UDP socket per query, one connected UDP socket, one
// TCP connection; every query is answered.
func TestProbeClientKinds(t *testing.T) {
	for _, tc := range []struct {
		client, kind string
		peers        int // distinct client addresses for 5 queries
	}{
		{"socket", "udp, a socket per query, every 0s", 5},
		{"udp-connected", "udp, one connected socket, every 0s", 1},
		{"tcp-keepalive", "tcp, one connection kept open, every 0s", 1},
	} {
		t.Run(tc.client, func(t *testing.T) {
			s := startPeerRecorder(t, -1)
			var out bytes.Buffer
			args := []string{"probe", "--server", s.addr, "--client", tc.client, "--count", "5", "--interval", "0s", "a.example.com=192.0.2.9"}
			if err := Run(context.Background(), args, &out, io.Discard); err != nil {
				t.Fatalf("probe: %v\n%s", err, out.String())
			}
			var rep probeReport
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatal(err)
			}
			n, peers := s.distinct()
			if rep.Answered != 5 || rep.Client != tc.kind || n != tc.peers || len(peers) != 5 {
				t.Errorf("report %+v; the server saw %d queries from %d client addresses %v; want 5 answered, client %q, from %d", rep, len(peers), n, peers, tc.kind, tc.peers)
			}
		})
	}
	// A server that closes each connection after 2 queries (as node-cache
	// does after --max-tcp-queries): the query that meets the closed
	// connection is sent again on a new one, not lost.
	s := startPeerRecorder(t, 2)
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"probe", "--server", s.addr, "--client", "tcp-keepalive", "--count", "7", "--interval", "10ms", "a.example.com=192.0.2.9"}, &out, io.Discard); err != nil {
		t.Errorf("tcp-keepalive against a server closing after 2 queries: %v\n%s", err, out.String())
	}
	if n, peers := s.distinct(); n != 4 || len(peers) != 7 {
		t.Errorf("the server saw %d queries on %d connections %v; want 7 on 4", len(peers), n, peers)
	}
	if err := Run(context.Background(), []string{"probe", "--client", "bogus", "--server", "127.0.0.1:1", "--count", "1", "a.example.com"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), `--client "bogus"`) {
		t.Errorf("unknown client kind: %v, want it named", err)
	}
}

// disconnect does to a connected UDP socket what Cilium's socket LB does to
// one connected to a deleted backend (sock_destroy): the socket loses its
// peer, and the next write fails with EDESTADDRREQ.
func disconnect(t *testing.T, c net.Conn) {
	t.Helper()
	rc, err := c.(*net.UDPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		sa := syscall.RawSockaddr{Family: syscall.AF_UNSPEC}
		_, _, errno = syscall.Syscall(syscall.SYS_CONNECT, fd, uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	}); err != nil || errno != 0 {
		t.Fatalf("disconnecting the socket: %v %v", err, errno)
	}
}

// TestUDPConnectedResendsAfterSocketError: a kept UDP socket that fails
// (here: lost its peer, as socket LB's termination leaves it) is replaced
// and the query sent again on the new one, as c-ares requeues it; a timeout
// is not a socket error and sends nothing again.
func TestUDPConnectedResendsAfterSocketError(t *testing.T) {
	s := startPeerRecorder(t, -1)
	ex, err := newExchanger(clientUDPConnected, false, s.addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer ex.close()
	ask := func() (*dns.Msg, error, error) {
		m := new(dns.Msg)
		m.SetQuestion("a.example.com.", dns.TypeA)
		return ex.exchange(context.Background(), m)
	}
	if _, resent, err := ask(); err != nil || resent != nil {
		t.Fatalf("first query: resent after %v, %v", resent, err)
	}
	disconnect(t, ex.conn.Conn)
	r, resent, err := ask()
	if err != nil || resent == nil || errClass(resent) != syscall.EDESTADDRREQ.Error() || len(r.Answer) != 1 {
		t.Fatalf("query on the disconnected socket: %v, resent after %v, %v; want answered on a new socket after EDESTADDRREQ", r, resent, err)
	}
	if n, peers := s.distinct(); n != 2 || len(peers) != 2 {
		t.Errorf("the server saw %v; want one query from each of two sockets (the write on the failed one never left)", peers)
	}

	// A server that never answers: each query times out on the same socket,
	// and none is sent again.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	ex2, err := newExchanger(clientUDPConnected, false, silent.LocalAddr().String(), 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer ex2.close()
	var first *dns.Conn
	for i := range 2 {
		m := new(dns.Msg)
		m.SetQuestion("a.example.com.", dns.TypeA)
		_, resent, err := ex2.exchange(context.Background(), m)
		if i == 0 {
			first = ex2.conn
		}
		if err == nil || resent != nil || ex2.conn == nil || ex2.conn != first {
			t.Errorf("query %d to a silent server: resent %v, err %v, same socket %v; want a timeout, nothing resent, the socket kept", i, resent, err, ex2.conn == first)
		}
	}
}

// TestSocketPerQueryResendsAfterSocketError: a query whose fresh socket
// fails (here: refused, as a port without a server answers) is sent once
// more on a new socket, as glibc and c-ares do; one that times out is not.
func TestSocketPerQueryResendsAfterSocketError(t *testing.T) {
	t.Parallel()
	m := new(dns.Msg)
	m.SetQuestion("a.example.com.", dns.TypeA)
	refused := dnstest.FreeAddr(t) // nothing listens there for UDP either: refused
	ex, err := newExchanger(clientSocket, false, refused, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, resent, err := ex.exchange(context.Background(), m)
	if err == nil || resent == nil || errClass(resent) != syscall.ECONNREFUSED.Error() {
		t.Errorf("refused: resent after %v, %v; want sent again after ECONNREFUSED, then failed", resent, err)
	}
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	ex, err = newExchanger(clientSocket, false, silent.LocalAddr().String(), 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if _, resent, err := ex.exchange(context.Background(), m); err == nil || resent != nil {
		t.Errorf("silent server: resent after %v, %v; want a timeout and nothing sent again", resent, err)
	}
	s := dnstest.StartTB(t, dnstest.Options{Answer: netip.MustParseAddr("192.0.2.7"), TTL: 30})
	ex, err = newExchanger(clientSocket, false, s.Addr.String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r, resent, err := ex.exchange(context.Background(), m); err != nil || resent != nil || len(r.Answer) != 1 {
		t.Errorf("answering server: %v, resent after %v, %v; want one answer, nothing sent again", r, resent, err)
	}
}
