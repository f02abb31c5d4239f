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
	_ "github.com/coredns/coredns/plugin/timeouts"

	"github.com/lrpdns/lrpdns/pkg/nodecache/internal/loopguard"
)

// Directives is the curated plugin set in CoreDNS's execution order.
var Directives = []string{
	"timeouts",
	"bind",
	"ready",
	"health",
	"prometheus",
	"errors",
	"log",
	"cache",
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

// Instance is a running CoreDNS.
type Instance struct {
	inst *caddy.Instance
}

func input(corefile []byte) caddy.Input {
	return caddy.CaddyfileInput{Filepath: "Corefile", Contents: corefile, ServerTypeName: "dns"}
}

// Start parses corefile and starts serving it.
func Start(corefile []byte) (*Instance, error) {
	Install()
	inst, err := caddy.Start(input(corefile))
	if err != nil {
		return nil, fmt.Errorf("failed to start CoreDNS: %w", err)
	}
	return &Instance{inst: inst}, nil
}

// Restart replaces the running configuration with corefile, handing the
// listening sockets over. On error the old configuration keeps serving.
func (i *Instance) Restart(corefile []byte) error {
	inst, err := i.inst.Restart(input(corefile))
	if err != nil {
		return fmt.Errorf("failed to reload CoreDNS: %w", err)
	}
	i.inst = inst
	return nil
}

// Shutdown drains and stops the instance in CoreDNS's order: the ready
// endpoint closes first, then health's lameduck period passes while DNS is
// still served, then the DNS listeners close.
func (i *Instance) Shutdown() error {
	errs := i.inst.ShutdownCallbacks()
	errs = append(errs, i.inst.Stop())
	i.inst.Wait()
	return errors.Join(errs...)
}

// Loops delivers the forwarding loops this instance's guards find.
func (i *Instance) Loops() <-chan loopguard.Loop { return loopguard.Reports(i.inst) }

// Addrs returns the addresses the DNS servers listen on: for each server
// its TCP listener then its UDP socket (useful with port 0).
func (i *Instance) Addrs() []net.Addr {
	var out []net.Addr
	for _, s := range i.inst.Servers() {
		if a := s.Addr(); a != nil {
			out = append(out, a)
		}
		if a := s.LocalAddr(); a != nil {
			out = append(out, a)
		}
	}
	return out
}
