package nodecache

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestUDPSocketsShareThePort: with --udp-sockets=4 the address has four
// UDP sockets (SO_REUSEPORT), and queries from 64 source ports, which the
// kernel spreads over them, are all answered.
func TestUDPSocketsShareThePort(t *testing.T) {
	h := newHarness(t, func(h *harness) { h.opts.UDPSockets = 4 })
	_, port, _ := net.SplitHostPort(h.dns["udp"])
	p, _ := strconv.Atoi(port)
	// This process's UDP sockets bound to 127.0.0.1:p, asked of each of its
	// descriptors (getsockname): /proc/net/udp lists the whole namespace,
	// a page per read, and under make test's other packages the four could
	// straddle a page (a rehearsal's read saw 1).
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	var bound []string
	for _, fd := range fds {
		n, err := strconv.Atoi(fd.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink("/proc/self/fd/" + fd.Name()); err != nil || !strings.HasPrefix(l, "socket:[") {
			continue
		}
		if typ, err := syscall.GetsockoptInt(n, syscall.SOL_SOCKET, syscall.SO_TYPE); err != nil || typ != syscall.SOCK_DGRAM {
			continue
		}
		sa, err := syscall.Getsockname(n)
		if a, ok := sa.(*syscall.SockaddrInet4); err == nil && ok && a.Port == p && a.Addr == [4]byte{127, 0, 0, 1} {
			bound = append(bound, fd.Name())
		}
	}
	if len(bound) != 4 {
		t.Errorf("this process has %d UDP sockets on 127.0.0.1:%d (descriptors %v), want 4", len(bound), p, bound)
	}
	for i := range 64 {
		h.mustAnswer(fmt.Sprintf("www%d.example.com", i), "192.0.2.1")
	}
}

// TestStartRefusesLimits: a limit out of range is refused at start with
// the flag, the value and what is accepted.
func TestStartRefusesLimits(t *testing.T) {
	for _, c := range []struct {
		mutate func(*Options)
		want   string
	}{
		{func(o *Options) { o.UDPSockets = 0 }, `invalid --udp-sockets "0": want a number from 1 to 64`},
		{func(o *Options) { o.UDPSockets = 65 }, `invalid --udp-sockets "65": want a number from 1 to 64`},
		{func(o *Options) { o.MaxTCPConns = 0 }, `invalid --max-tcp-connections "0": want a number from 1 to 1000000`},
		{func(o *Options) { o.MaxTCPQueries = 0 }, `invalid --max-tcp-queries "0": want a number from 1 to 1000000`},
	} {
		o := DefaultOptions()
		c.mutate(&o)
		if _, err := o.limits(); err == nil || err.Error() != c.want {
			t.Errorf("limits() error = %v, want %s", err, c.want)
		}
	}
	o := DefaultOptions()
	if _, err := o.limits(); err != nil {
		t.Errorf("the default limits are refused: %v", err)
	}
}
