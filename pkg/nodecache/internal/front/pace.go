package front

import (
	"net"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// pacedReader stops reading UDP while too many goroutines run. miekg/dns
// (and so CoreDNS) starts a goroutine for every packet it reads, with no
// bound: under a flood the cache can read faster than it answers, and the
// goroutines, each with its stack and packet, pile up until the memory
// limit kills the process. Waiting before the next read leaves the excess
// in the socket's receive buffer, where the kernel drops it, as it does for
// any server that cannot keep up. The goroutine count is the process's,
// so it covers every way a query is in flight (forwards included).
type pacedReader struct {
	dns.Reader
	max    int
	waited *atomic.Uint64 // reads that had to wait
}

func (r *pacedReader) pace() {
	if runtime.NumGoroutine() <= r.max {
		return
	}
	r.waited.Add(1)
	for runtime.NumGoroutine() > r.max {
		time.Sleep(100 * time.Microsecond)
	}
}

func (r *pacedReader) ReadUDP(conn *net.UDPConn, timeout time.Duration) ([]byte, *dns.SessionUDP, error) {
	r.pace()
	return r.Reader.ReadUDP(conn, timeout)
}

func (r *pacedReader) ReadPacketConn(conn net.PacketConn, timeout time.Duration) ([]byte, net.Addr, error) {
	r.pace()
	return r.Reader.(dns.PacketConnReader).ReadPacketConn(conn, timeout)
}
