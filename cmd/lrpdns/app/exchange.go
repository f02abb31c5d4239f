package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// The probe's client kinds: how real resolvers hold their sockets, which
// decides what a socket-level load balancer does to them across a rollout.
const (
	clientSocket       = "socket"
	clientUDPConnected = "udp-connected"
	clientTCPKeepalive = "tcp-keepalive"
)

// exchanger sends one query and returns its answer.
type exchanger struct {
	name    string
	addr    string
	timeout time.Duration
	client  *dns.Client // a new socket per query
	network string      // of the kept connection
	conn    *dns.Conn   // the kept connection, when there is one
}

func newExchanger(kind string, tcp bool, addr string, timeout time.Duration) (*exchanger, error) {
	e := &exchanger{name: kind, addr: addr, timeout: timeout}
	switch kind {
	case clientSocket:
		e.client = &dns.Client{Timeout: timeout}
		if tcp {
			e.client.Net = "tcp"
			e.name = "tcp, a connection per query"
		} else {
			e.name = "udp, a socket per query"
		}
	case clientUDPConnected:
		e.network, e.name = "udp", "udp, one connected socket"
	case clientTCPKeepalive:
		e.network, e.name = "tcp", "tcp, one connection kept open"
	default:
		return nil, fmt.Errorf("probe: --client %q: want %s, %s or %s", kind, clientSocket, clientUDPConnected, clientTCPKeepalive)
	}
	if tcp && kind != clientSocket {
		return nil, fmt.Errorf("probe: --tcp goes with --client %s only", clientSocket)
	}
	return e, nil
}

func (e *exchanger) kind() string { return e.name }

// exchange returns m's answer and, when m was sent again on a new socket
// because the kept one failed, that socket's error.
func (e *exchanger) exchange(ctx context.Context, m *dns.Msg) (r *dns.Msg, resentAfter, err error) {
	if e.client != nil {
		r, _, err = e.client.ExchangeContext(ctx, m, e.addr)
		if network := e.client.Net; err != nil && resend(cmp.Or(network, "udp"), err) {
			// A socket error, not a timeout: glibc (send_dg and send_vc
			// return to the next try) and c-ares send the query again on a
			// new socket. Socket LB's termination of sockets connected to a
			// deleted backend ends a query in flight here: its read fails
			// with ECONNABORTED.
			resentAfter = err
			r, _, err = e.client.ExchangeContext(ctx, m, e.addr)
		}
		return r, resentAfter, err
	}
	reused := e.conn != nil
	if err = e.dial(ctx); err != nil {
		return nil, nil, err
	}
	r, err = e.roundTrip(m)
	if err != nil && reused && resend(e.network, err) {
		// The kept socket failed before the answer came: a TCP client sends
		// the query again on a new connection (RFC 7766, 6.2.1), and c-ares
		// requeues it on a new UDP socket. Socket LB's termination of
		// sockets connected to a deleted backend ends here: the UDP socket
		// loses its peer (EDESTADDRREQ), the TCP one is reset. So does a
		// cache that closed its socket while its pod still answers ICMP:
		// the next read is refused (ECONNREFUSED).
		resentAfter = err
		e.close()
		if err = e.dial(ctx); err != nil {
			return nil, resentAfter, err
		}
		r, err = e.roundTrip(m)
	}
	var ne net.Error
	timedOut := errors.As(err, &ne) && ne.Timeout()
	// A TCP client opens its connection again after any error; a UDP one
	// (c-ares) keeps its socket through timeouts and only replaces a
	// socket that failed.
	if err != nil && (e.network == "tcp" || !timedOut) {
		e.close()
	}
	return r, resentAfter, err
}

// errClass names a socket error without its addresses, to count causes.
func errClass(err error) string {
	var errno syscall.Errno
	switch {
	case errors.As(err, &errno):
		return errno.Error()
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed by the server (EOF)"
	}
	return err.Error()
}

// resend says whether a client sends a query again on a new socket after
// err on its kept one: TCP when the peer closed or reset the connection,
// UDP on any socket error but a timeout (which is a lost packet, answered
// by the resolver's retry policy, not by a new socket).
func resend(network string, err error) bool {
	if network == "tcp" {
		return closedByPeer(err)
	}
	var ne net.Error
	return !errors.As(err, &ne) || !ne.Timeout()
}

func (e *exchanger) dial(ctx context.Context) error {
	if e.conn != nil {
		return nil
	}
	d := net.Dialer{Timeout: e.timeout}
	c, err := d.DialContext(ctx, e.network, e.addr)
	if err != nil {
		return err
	}
	e.conn = &dns.Conn{Conn: c}
	return nil
}

// closedByPeer is an error of a connection the other side closed.
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// roundTrip writes m and reads until the answer with m's ID arrives (a late
// answer to an earlier query is skipped, as resolvers do) or the timeout
// passes.
func (e *exchanger) roundTrip(m *dns.Msg) (*dns.Msg, error) {
	deadline := time.Now().Add(e.timeout)
	_ = e.conn.SetDeadline(deadline)
	if err := e.conn.WriteMsg(m); err != nil {
		return nil, err
	}
	for {
		r, err := e.conn.ReadMsg()
		if err != nil {
			return nil, err
		}
		if r.Id == m.Id {
			return r, nil
		}
	}
}

func (e *exchanger) close() {
	if e.conn != nil {
		_ = e.conn.Close()
		e.conn = nil
	}
}
