package front

import (
	"runtime"
	"sync/atomic"
	"time"
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
	max    int            // 0 never waits
	waited *atomic.Uint64 // reads that had to wait
}

func (r *pacedReader) pace() {
	if r.max <= 0 || runtime.NumGoroutine() <= r.max {
		return
	}
	r.waited.Add(1)
	for runtime.NumGoroutine() > r.max {
		time.Sleep(100 * time.Microsecond)
	}
}
