package front

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// limitListenerGroup caps the open connections of several listeners
// together. A connection over the cap is closed at once rather than left in
// the accept queue: the client learns at once and retries elsewhere (over
// UDP, or after its timeout), and nothing it sends is buffered.
type limitListenerGroup struct {
	max     int64
	open    atomic.Int64
	refused atomic.Uint64
}

func newLimitListenerGroup(max int) *limitListenerGroup {
	return &limitListenerGroup{max: int64(max)}
}

func (g *limitListenerGroup) wrap(l net.Listener) net.Listener {
	return &limitListener{Listener: l, g: g, sleep: time.Sleep}
}

type limitListener struct {
	net.Listener
	g     *limitListenerGroup
	sleep func(time.Duration)
	// backoff after a temporary accept error (EMFILE at the descriptor
	// limit), as net/http does: 5 ms, doubling to 1 s.
	backoff time.Duration
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Temporary() { //nolint:staticcheck // EMFILE is only reported as Temporary
				l.backoff = min(max(2*l.backoff, 5*time.Millisecond), time.Second)
				l.sleep(l.backoff)
			}
			return nil, err
		}
		l.backoff = 0
		if n := l.g.open.Add(1); l.g.max > 0 && n > l.g.max {
			l.g.open.Add(-1)
			l.g.refused.Add(1)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // RST: no TIME_WAIT left behind
			}
			_ = c.Close()
			continue
		}
		return &limitConn{Conn: c, g: l.g}, nil
	}
}

type limitConn struct {
	net.Conn
	g    *limitListenerGroup
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.g.open.Add(-1) })
	return err
}
