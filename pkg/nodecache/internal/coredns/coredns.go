package coredns

import (
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"

	// The curated plugin set. Each registers itself with caddy in init, as
	// CoreDNS requires.
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/template"

	"github.com/lrpdns/lrpdns/pkg/nodecache/internal/front"
	_ "github.com/lrpdns/lrpdns/pkg/nodecache/internal/hot"
	"github.com/lrpdns/lrpdns/pkg/nodecache/internal/loopguard"
)

// Directives is the curated plugin set in CoreDNS's execution order.
var Directives = []string{
	"bind",
	"front", // after bind: it moves the block to the front's loopback port
	"ready",
	"health",
	"prometheus",
	"errors",
	"log",
	"cache",
	"hot",       // marks what the cache passes on (package hot)
	"template",  // --no-ipv6-lookups only
	"loopguard", // CoreDNS's loop, reporting instead of exiting
	"forward",
}

var installOnce sync.Once

// Install makes Directives CoreDNS's directive list and silences the
// start-up banner. It is idempotent.
func Install() {
	installOnce.Do(func() {
		dnsserver.Directives = Directives
		dnsserver.Quiet = true
		caddy.Quiet = true
		caddy.AppName = "node-cache"
	})
}

// Instance is a running CoreDNS behind its front.
type Instance struct {
	inst  *caddy.Instance
	front *front.Front
}

func input(corefile []byte) caddy.Input {
	return caddy.CaddyfileInput{Filepath: "Corefile", Contents: corefile, ServerTypeName: "dns"}
}

// Start parses corefile, whose blocks use the front directive, and starts
// serving it on the public addresses the blocks name.
func Start(corefile []byte, limits front.Limits) (*Instance, error) {
	Install()
	f, err := front.New(limits)
	if err != nil {
		return nil, err
	}
	i := &Instance{front: f}
	err = f.Build(func() error {
		var err error
		i.inst, err = caddy.Start(input(corefile))
		return err
	})
	if err != nil {
		if i.inst != nil {
			_ = i.inst.Stop()
		}
		_ = f.Shutdown()
		return nil, fmt.Errorf("failed to start CoreDNS: %w", err)
	}
	return i, nil
}

// Restart replaces the running configuration with corefile. The public
// sockets stay open; the front moves to the new server before the old one
// stops. On error the old configuration keeps serving.
func (i *Instance) Restart(corefile []byte) error {
	err := i.front.Build(func() error {
		inst, err := i.inst.Restart(input(corefile))
		if err != nil {
			return err
		}
		i.inst = inst
		return nil
	})
	if err != nil {
		return fmt.Errorf("failed to reload CoreDNS: %w", err)
	}
	return nil
}

// Shutdown drains and stops the instance in CoreDNS's order: the ready
// endpoint closes first, then health's lameduck period passes while DNS is
// still served, then the DNS listeners close.
func (i *Instance) Shutdown() error {
	errs := i.inst.ShutdownCallbacks()
	errs = append(errs, i.front.Shutdown(), i.inst.Stop())
	i.inst.Wait()
	return errors.Join(errs...)
}

// Loops delivers the forwarding loops this instance's guards find.
func (i *Instance) Loops() <-chan loopguard.Loop { return loopguard.Reports(i.inst) }

// Addrs returns the public addresses: for each, its TCP listener then its
// UDP socket (useful with port 0).
func (i *Instance) Addrs() []net.Addr { return i.front.Addrs() }

// Front is the public side, for its counters.
func (i *Instance) Front() *front.Front { return i.front }
