package judge

import (
	"strings"
	"testing"
)

// A node-cache process as the kind run saw it (uid 65532, every capability
// dropped, no_new_privs, a seccomp filter), abridged.
const shippedStatus = `Name:	node-cache
Umask:	0022
State:	S (sleeping)
Uid:	65532	65532	65532	65532
Gid:	65532	65532	65532	65532
CapInh:	0000000000000000
CapPrm:	0000000000000000
CapEff:	0000000000000000
CapBnd:	0000000000000000
CapAmb:	0000000000000000
NoNewPrivs:	1
Seccomp:	2
Seccomp_filters:	1
`

func TestHardening(t *testing.T) {
	t.Parallel()
	want := Shipped{UID: 65532, MemoryLimit: 256 << 20}
	ok := Process{Status: shippedStatus, RootWrite: "touch: cannot touch '/.x': Read-only file system", MemoryLimit: 256 << 20, MemoryPeak: 30 << 20}
	if got := Hardening(ok, want); len(got) != 0 {
		t.Fatalf("the shipped process: %q, want nothing", got)
	}
	// Each broken process must fail, naming what is wrong.
	for _, tc := range []struct {
		name string
		p    func(p *Process)
		want string
	}{
		{"root user", func(p *Process) { p.Status = strings.Replace(p.Status, "Uid:\t65532\t65532", "Uid:\t0\t0", 1) }, "runs as uid 0"},
		{"a capability kept", func(p *Process) {
			p.Status = strings.Replace(p.Status, "CapBnd:\t0000000000000000", "CapBnd:\t00000000a80425fb", 1)
		}, "CapBnd 00000000a80425fb"},
		{"NET_BIND_SERVICE effective", func(p *Process) {
			p.Status = strings.Replace(p.Status, "CapEff:\t0000000000000000", "CapEff:\t0000000000000400", 1)
		}, "CapEff 0000000000000400"},
		{"privilege escalation", func(p *Process) { p.Status = strings.Replace(p.Status, "NoNewPrivs:\t1", "NoNewPrivs:\t0", 1) }, "NoNewPrivs"},
		{"unconfined", func(p *Process) { p.Status = strings.Replace(p.Status, "Seccomp:\t2", "Seccomp:\t0", 1) }, "Seccomp"},
		{"writable root", func(p *Process) { p.RootWrite = "" }, "write to the root filesystem succeeded"},
		{"write refused otherwise", func(p *Process) { p.RootWrite = "Permission denied" }, "Permission denied"},
		{"no memory limit", func(p *Process) { p.MemoryLimit = 0 }, "memory limit none"},
		{"another memory limit", func(p *Process) { p.MemoryLimit = 1 << 30 }, "memory limit 1073741824"},
		{"peak at the limit", func(p *Process) { p.MemoryPeak = 256 << 20 }, "reached the limit"},
		{"no peak", func(p *Process) { p.MemoryPeak = 0 }, "no peak"},
		{"no status", func(p *Process) { p.Status = "" }, "no Uid line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := ok
			tc.p(&p)
			got := Hardening(p, want)
			if !strings.Contains(strings.Join(got, "; "), tc.want) {
				t.Errorf("Hardening = %q, want a finding with %q", got, tc.want)
			}
		})
	}
}

func TestMemoryLimit(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{"268435456\n": 256 << 20, "max\n": 0, "9223372036854771712": 0} {
		got, err := MemoryLimit(in)
		if err != nil || got != want {
			t.Errorf("MemoryLimit(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := MemoryLimit("lots"); err == nil {
		t.Error(`MemoryLimit("lots"): want an error`)
	}
}
