package hot

import (
	"context"
	"sync/atomic"
	"time"
)

// Lifetime bounds how long an answer is served here before one query goes
// to the chain again: half the cache plugin's prefetch window (1m), so the
// hits the cache counts towards prefetch do not start over.
const Lifetime = 30 * time.Second

// Params are one server block's rules, from its `hot` directive.
type Params struct {
	// HandBack: an answer with this many seconds of TTL left, or fewer,
	// goes to the chain (the cache prefetches in its last 10%).
	HandBack uint32
	// Warm is how many cache hits a query needs before it is served here.
	Warm int
	// StaleTTL is the TTL serve_stale gives a stale answer: an answer
	// with it is never learnt. 0 when serve_stale is off.
	StaleTTL uint32
}

// Block is what the front's tag knows of the server block serving a query.
type Block struct {
	Params *Params  // nil: the block has no hot directive
	Zones  []string // the block's zones
	// Counted: the block has the prometheus directive; Writer is the
	// plugin its metrics name for every answer (the one after prometheus);
	// Server and View are the labels its metrics give the query.
	Counted              bool
	Writer, Server, View string
}

// Capture travels with one query down the chain: the front's tag says
// which block serves it, the mark says the cache passed it on.
type Capture struct {
	Block
	passed atomic.Bool
}

type captureKey struct{}

// WithCapture returns ctx carrying a new Capture.
func WithCapture(ctx context.Context) (context.Context, *Capture) {
	c := &Capture{}
	return context.WithValue(ctx, captureKey{}, c), c
}

func captureFrom(ctx context.Context) *Capture {
	c, _ := ctx.Value(captureKey{}).(*Capture)
	return c
}

// Tag records, on the query's capture if it has one, the block serving it.
func Tag(ctx context.Context, b Block) {
	if c := captureFrom(ctx); c != nil {
		c.Block = b
	}
}

// Passed reports whether the cache passed the query on.
func (c *Capture) Passed() bool { return c.passed.Load() }
