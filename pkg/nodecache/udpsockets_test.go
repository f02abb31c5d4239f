package nodecache

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestUDPSocketsShareThePort: with --udp-sockets=4 the address has four
// UDP sockets (SO_REUSEPORT), and queries from 64 source ports, which the
// kernel spreads over them, are all answered.
func TestUDPSocketsShareThePort(t *testing.T) {
	h := newHarness(t, func(h *harness) { h.opts.UDPSockets = 4 })
	_, port, _ := net.SplitHostPort(h.dns["udp"])
	p, _ := strconv.Atoi(port)
	// One read with a buffer larger than the table: the kernel walks its
	// table afresh for each read, so several reads can skip a socket or
	// list one twice.
	pf, err := os.Open("/proc/self/net/udp")
	if err != nil {
		t.Skipf("no /proc/self/net/udp: %v", err)
	}
	b := make([]byte, 1<<20)
	k, err := pf.Read(b)
	_ = pf.Close()
	if err != nil {
		t.Fatal(err)
	}
	b = b[:k]
	// Only this process's sockets: their inodes among its descriptors.
	mine := map[string]bool{}
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		if l, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(l, "socket:[") {
			mine[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	local := fmt.Sprintf("0100007F:%04X", p)
	// The kernel may list a socket twice in one read: count inodes.
	seen := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 9 && f[1] == local && mine[f[9]] {
			seen[f[9]] = true
		}
	}
	if n := len(seen); n != 4 {
		t.Errorf("this process has %d UDP sockets on 127.0.0.1:%d, want 4:\n%s", n, p, b)
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
