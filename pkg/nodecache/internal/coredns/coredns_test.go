package coredns

import (
	"cmp"
	"slices"
	"strings"
	"testing"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"

	"github.com/lrpdns/lrpdns/pkg/nodecache/internal/front"
)

// standsIn maps this project's plugins to the upstream plugin whose place in
// the order they take (hot: right after cache, which it marks).
var standsIn = map[string]string{"loopguard": "loop", "front": "bind", "hot": "cache"}

// TestDirectives checks the curated list against upstream: every directive
// is registered as a dns plugin, and the order is upstream's relative order.
func TestDirectives(t *testing.T) {
	upstream := dnsserver.Directives
	if slices.Equal(upstream, Directives) {
		t.Skip("Install already ran in this process; upstream order is gone")
	}
	last := -1
	for _, d := range Directives {
		if _, err := caddy.DirectiveAction("dns", d); err != nil {
			t.Errorf("directive %q is not a registered dns plugin: %v", d, err)
		}
		i := slices.Index(upstream, cmp.Or(standsIn[d], d))
		if i < 0 {
			t.Errorf("directive %q is not in CoreDNS's directive list", d)
			continue
		}
		if i < last {
			t.Errorf("directive %q is out of CoreDNS's order %v", d, upstream)
		}
		last = i
	}
	// Plugins registered only because a curated one imports them (debug,
	// dnstap, metadata) are not in the order: a Corefile cannot use them.
	for _, p := range caddy.ListPlugins()["others"] {
		name, ok := strings.CutPrefix(p, "dns.")
		if !ok || slices.Contains(Directives, name) {
			continue
		}
		if _, err := Start([]byte(".:0 {\n    front\n    "+name+"\n}\n"), front.DefaultLimits); err == nil {
			t.Errorf("a Corefile using %q, registered but not curated, started", name)
		}
	}
}
