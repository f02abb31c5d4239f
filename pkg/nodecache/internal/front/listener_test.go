package front

import (
	"errors"
	"net"
	"slices"
	"syscall"
	"testing"
	"time"
)

// script is a listener whose Accept returns the scripted results in order.
type script struct {
	net.Listener
	results []error // nil: a connection
}

func (s *script) Accept() (net.Conn, error) {
	err := s.results[0]
	s.results = s.results[1:]
	if err != nil {
		return nil, err
	}
	a, b := net.Pipe()
	_ = b.Close()
	return a, nil
}

// TestAcceptBacksOffAtTheDescriptorLimit: EMFILE (a temporary error) is
// retried after 5 ms, doubling to 1 s, instead of at once; a connection
// resets the back-off; a permanent error is returned without waiting.
func TestAcceptBacksOffAtTheDescriptorLimit(t *testing.T) {
	emfile := &net.OpError{Op: "accept", Err: syscall.EMFILE}
	var results []error
	for range 10 {
		results = append(results, emfile)
	}
	results = append(results, nil, emfile, net.ErrClosed)
	var slept []time.Duration
	l := &limitListener{Listener: &script{results: results}, g: newLimitListenerGroup(10), sleep: func(d time.Duration) { slept = append(slept, d) }}
	for range 10 {
		if _, err := l.Accept(); !errors.Is(err, syscall.EMFILE) {
			t.Fatalf("Accept() error = %v, want EMFILE passed on", err)
		}
	}
	ms := time.Millisecond
	want := []time.Duration{5 * ms, 10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 320 * ms, 640 * ms, time.Second, time.Second}
	if !slices.Equal(slept, want) {
		t.Errorf("back-off = %v, want %v", slept, want)
	}
	if _, err := l.Accept(); err != nil {
		t.Fatalf("Accept() = %v, want a connection", err)
	}
	slept = nil
	_, _ = l.Accept()
	if !slices.Equal(slept, []time.Duration{5 * ms}) {
		t.Errorf("back-off after a connection = %v, want it reset to [5ms]", slept)
	}
	slept = nil
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) || len(slept) != 0 {
		t.Errorf("closed listener: err %v after sleeping %v; want ErrClosed at once", err, slept)
	}
}

// TestCapCountsEachConnectionOnce: the cap refuses the connection over it,
// and a connection closed twice frees one place, not two.
func TestCapCountsEachConnectionOnce(t *testing.T) {
	g := newLimitListenerGroup(1)
	l := &limitListener{Listener: &script{results: []error{nil, nil, net.ErrClosed}}, g: g, sleep: func(time.Duration) {}}
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Accept() = %v; want the over-cap connection closed and the next result (ErrClosed) returned", err)
	}
	if g.refused.Load() != 1 || g.open.Load() != 1 {
		t.Errorf("refused %d, open %d; want 1, 1", g.refused.Load(), g.open.Load())
	}
	_ = c.Close()
	_ = c.Close()
	if g.open.Load() != 0 {
		t.Errorf("open = %d after closing the one connection twice, want 0", g.open.Load())
	}
}
