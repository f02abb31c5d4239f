package loopguard

import (
	"crypto/rand"
	"math/big"
	"net"
	"strconv"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/pkg/dnsutil"
)

// Name is the plugin's directive.
const Name = "loopguard"

func init() { plugin.Register(Name, setup) } //nolint:gochecknoinits // CoreDNS plugins register themselves in init

// Probe timings, as CoreDNS's loop plugin: retry an unanswered probe each
// second for up to 30 s; once answered, stop looking 2 s later.
var (
	probeFor   = 30 * time.Second
	probeRetry = time.Second
	afterReply = 2 * time.Second
)

func setup(c *caddy.Controller) error {
	zone := "."
	for i := 0; c.Next(); i++ {
		if i > 0 {
			return plugin.ErrOnce
		}
		if c.NextArg() {
			return plugin.Error(Name, c.ArgErr())
		}
		if len(c.ServerBlockKeys) > 0 {
			if z := plugin.Host(c.ServerBlockKeys[0]).NormalizeExact(); len(z) > 0 {
				zone = z[0]
			}
		}
	}
	g := &Guard{zone: zone, qname: dnsutil.Join(randLabel(), randLabel(), zone), found: reports(c)}
	dnsserver.GetConfig(c).AddPlugin(func(next plugin.Handler) plugin.Handler {
		g.Next = next
		return g
	})
	c.OnStartup(func() error {
		conf := dnsserver.GetConfig(c)
		host := ""
		if len(conf.ListenHosts) > 0 {
			host = conf.ListenHosts[0]
		}
		go g.probe(net.JoinHostPort(host, conf.Port))
		return nil
	})
	c.OnShutdown(func() error {
		g.stop()
		return nil
	})
	return nil
}

type storageKey struct{}

// reports is the instance's loop channel, made by the first guard set up.
func reports(c *caddy.Controller) chan Loop {
	if ch, ok := c.Get(storageKey{}).(chan Loop); ok {
		return ch
	}
	ch := make(chan Loop, 16)
	c.Set(storageKey{}, ch)
	return ch
}

// Reports delivers the loops the guards of inst find, one per zone. It is
// nil (never ready) when inst has no guard.
func Reports(inst *caddy.Instance) <-chan Loop {
	inst.StorageMu.RLock()
	defer inst.StorageMu.RUnlock()
	ch, _ := inst.Storage[storageKey{}].(chan Loop)
	return ch
}

func randLabel() string {
	n, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return strconv.FormatInt(time.Now().UnixNano(), 10)
	}
	return n.String()
}
