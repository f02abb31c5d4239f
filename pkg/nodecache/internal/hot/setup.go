package hot

import (
	"context"
	"fmt"
	"strconv"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	"github.com/miekg/dns"
)

// Name is the plugin's directive.
const Name = "hot"

func init() { plugin.Register(Name, setup) } //nolint:gochecknoinits // CoreDNS plugins register themselves in init

type paramsKey struct{ block int }

// setup reads `hot HANDBACK WARM [STALE_TTL]` (seconds, count, seconds).
func setup(c *caddy.Controller) error {
	p := &Params{}
	for i := 0; c.Next(); i++ {
		if i > 0 {
			return plugin.ErrOnce
		}
		args := c.RemainingArgs()
		if len(args) < 2 || len(args) > 3 {
			return plugin.Error(Name, c.ArgErr())
		}
		hb, err := strconv.ParseUint(args[0], 10, 32)
		if err != nil {
			return plugin.Error(Name, fmt.Errorf("hand-back %q: want seconds, 0 or more", args[0]))
		}
		warm, err := strconv.Atoi(args[1])
		if err != nil || warm < 1 {
			return plugin.Error(Name, fmt.Errorf("warm %q: want a count, 1 or more", args[1]))
		}
		p.HandBack, p.Warm = uint32(hb), warm
		if len(args) == 3 {
			st, err := strconv.ParseUint(args[2], 10, 32)
			if err != nil {
				return plugin.Error(Name, fmt.Errorf("stale TTL %q: want seconds, 0 or more", args[2]))
			}
			p.StaleTTL = uint32(st)
		}
	}
	c.Set(paramsKey{c.ServerBlockIndex}, p)
	dnsserver.GetConfig(c).AddPlugin(func(next plugin.Handler) plugin.Handler { return mark{next} })
	return nil
}

// BlockParams are the rules of the controller's server block, nil when
// the block has no hot directive. Valid once every directive is set up
// (in a plugin's handler constructor, say).
func BlockParams(c *caddy.Controller) *Params {
	p, _ := c.Get(paramsKey{c.ServerBlockIndex}).(*Params)
	return p
}

// mark is the handler after cache: whatever reaches it, the cache passed on.
type mark struct{ next plugin.Handler }

func (m mark) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	if c := captureFrom(ctx); c != nil {
		c.passed.Store(true)
	}
	return plugin.NextOrFailure(Name, m.next, ctx, w, r)
}

func (mark) Name() string { return Name }
