package front

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/metrics"
	"github.com/miekg/dns"

	"github.com/lrpdns/lrpdns/pkg/nodecache/internal/hot"
)

// Name is the plugin's directive.
const Name = "front"

func init() { plugin.Register(Name, setup) } //nolint:gochecknoinits // CoreDNS plugins register themselves in init

// handover bounds how long a stopping server waits for its successor.
const handover = 2 * time.Second

// generation is one configuration's server, as the front learns it.
type generation struct {
	f          *Front
	server     atomic.Pointer[dnsserver.Server]
	hot        atomic.Bool // a block has the hot directive
	once       sync.Once
	ready      chan struct{}
	restarting atomic.Bool
}

// learn is CoreDNS's UDPDecorateWriterFunc: the one hook that is handed the
// server, as it starts serving.
func (g *generation) learn(s *dnsserver.Server) dns.DecorateWriter {
	g.once.Do(func() {
		sv := &serving{server: s}
		if g.hot.Load() {
			sv.hot = hot.NewStore(hot.DefaultMaxBytes)
		}
		g.server.Store(s)
		g.f.serving.Store(sv)
		close(g.ready)
	})
	return nil
}

// waitSuccessor holds a restart's shutdown of this generation (before
// forward closes its upstream connections) until the front has moved to
// the new server.
func (g *generation) waitSuccessor() error {
	if !g.restarting.Load() {
		return nil
	}
	old := g.server.Load()
	for deadline := time.Now().Add(handover); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if sv := g.f.serving.Load(); sv != nil && sv.server != old {
			return nil
		}
	}
	return errors.New("front: the new server did not start within " + handover.String())
}

func setup(c *caddy.Controller) error {
	for c.Next() {
		if c.NextArg() {
			return plugin.Error(Name, c.ArgErr())
		}
	}
	g, first := building.gen, building.first
	if g == nil {
		return plugin.Error(Name, fmt.Errorf("the %s directive works only in node-cache", Name))
	}
	building.first = false
	f := g.f
	// Every zone of the block has its own config; CoreDNS copies the
	// listen hosts from the block's first zone, but not the port.
	host, port, _ := net.SplitHostPort(f.internal)
	keyIndex := c.ServerBlockKeyIndex
	c.ServerBlockKeyIndex = 0
	hosts := dnsserver.GetConfig(c).ListenHosts // bind sets them on the first zone only
	if len(hosts) == 0 {
		hosts = []string{""}
	}
	var zones []string // the block's, for the tag
	for i := range c.ServerBlockKeys {
		c.ServerBlockKeyIndex = i
		conf := dnsserver.GetConfig(c)
		zones = append(zones, conf.Zone)
		f.mu.Lock()
		for _, h := range hosts {
			f.pending = append(f.pending, net.JoinHostPort(h, conf.Port))
		}
		f.mu.Unlock()
		conf.ListenHosts, conf.Port = []string{host}, port
		conf.UDPDecorateWriterFunc = g.learn
	}
	c.ServerBlockKeyIndex = keyIndex
	dnsserver.GetConfig(c).AddPlugin(func(next plugin.Handler) plugin.Handler {
		t := tag{next: next, block: hot.Block{Params: hot.BlockParams(c), Zones: zones}}
		if t.block.Params != nil {
			g.hot.Store(true)
		}
		// CoreDNS's metrics name, as the plugin that wrote an answer, the
		// one right after prometheus (its recorder sees only that one).
		if m, ok := next.(*metrics.Metrics); ok && m.Next != nil {
			t.block.Counted, t.block.Writer = true, m.Next.Name()
		}
		return t
	})
	if first {
		c.OnRestart(func() error { g.restarting.Store(true); return nil })
		c.OnRestartFailed(func() error { g.restarting.Store(false); return nil })
		c.OnShutdown(g.waitSuccessor)
	}
	return nil
}

// tag, first in every block's chain, tells the query's capture which
// block serves it.
type tag struct {
	next  plugin.Handler
	block hot.Block // all but the labels only the query's context has
}

func (t tag) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	b := t.block
	b.Server, b.View = metrics.WithServer(ctx), metrics.WithView(ctx)
	hot.Tag(ctx, b)
	return plugin.NextOrFailure(Name, t.next, ctx, w, r)
}

func (tag) Name() string { return Name }
