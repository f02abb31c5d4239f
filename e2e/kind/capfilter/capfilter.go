// Package capfilter takes out of an OCI runtime spec (a bundle's
// config.json, or the process file of `runc exec --process`) every
// capability outside a bounding set. Some machines run container engines
// with a capability bounding set narrower than the full set (no
// CAP_SYS_RESOURCE, say): runc then refuses a privileged container, which
// asks for every capability, with "unable to apply caps: operation not
// permitted". Filtered, the container gets every capability the machine
// has, as it would on a machine with a narrower kernel.
//
// It is test infrastructure for make e2e (kind in Docker); nothing shipped
// imports it.
package capfilter

import (
	"encoding/json"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// names are the capabilities by number, as in linux/capability.h.
var names = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
	"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
	"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
	"CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// Set is a set of capabilities by name.
type Set map[string]bool

// Bounding reads the CapBnd line of a /proc/PID/status file's content.
func Bounding(status string) (Set, error) {
	for line := range strings.SplitSeq(status, "\n") {
		hex, ok := strings.CutPrefix(line, "CapBnd:")
		if !ok {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
		if err != nil {
			return nil, fmt.Errorf("failed to parse CapBnd %q: %w", strings.TrimSpace(hex), err)
		}
		s := Set{}
		for mask != 0 {
			bit := bits.TrailingZeros64(mask)
			mask &^= 1 << bit
			if bit < len(names) {
				s[names[bit]] = true
			}
		}
		return s, nil
	}
	return nil, fmt.Errorf("no CapBnd line in the status file")
}

// Missing are the known capabilities outside s, in number order.
func (s Set) Missing() []string {
	var out []string
	for _, n := range names {
		if !s[n] {
			out = append(out, n)
		}
	}
	return out
}

// Filter takes every capability outside keep out of a runtime spec's
// capability lists: process.capabilities in a bundle's config.json, or
// capabilities at the top of a process file (spec true for the first).
// It returns the document unchanged (same bytes) when nothing is taken.
func Filter(doc []byte, keep Set, spec bool) ([]byte, []string, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(doc, &top); err != nil {
		return nil, nil, fmt.Errorf("failed to parse the runtime spec: %w", err)
	}
	process := top
	if spec {
		raw, ok := top["process"]
		if !ok {
			return doc, nil, nil
		}
		process = nil
		if err := json.Unmarshal(raw, &process); err != nil {
			return nil, nil, fmt.Errorf("failed to parse process: %w", err)
		}
	}
	raw, ok := process["capabilities"]
	if !ok || string(raw) == "null" {
		return doc, nil, nil
	}
	var caps map[string][]string
	if err := json.Unmarshal(raw, &caps); err != nil {
		return nil, nil, fmt.Errorf("failed to parse capabilities: %w", err)
	}
	dropped := map[string]bool{}
	for kind, list := range caps {
		kept := list[:0:0]
		for _, c := range list {
			if keep[c] {
				kept = append(kept, c)
			} else {
				dropped[c] = true
			}
		}
		caps[kind] = kept
	}
	if len(dropped) == 0 {
		return doc, nil, nil
	}
	var out []string
	for _, n := range names {
		if dropped[n] {
			out = append(out, n)
			delete(dropped, n)
		}
	}
	for n := range dropped { // not in names: unknown to this table
		out = append(out, n)
	}
	b, err := json.Marshal(caps)
	if err != nil {
		return nil, nil, err
	}
	process["capabilities"] = b
	if spec {
		p, err := json.Marshal(process)
		if err != nil {
			return nil, nil, err
		}
		top["process"] = p
	}
	doc, err = json.Marshal(top)
	return doc, out, err
}

// Target is what a runc command line asks to filter: the bundle's
// config.json (create, run) or the process file (exec --process), or ""
// for neither. cwd is the bundle when --bundle is absent.
func Target(args []string, cwd string) (path string, spec bool) {
	cmd := ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			if cmd == "" {
				cmd = a
				continue
			}
			continue
		}
		if cmd == "" {
			// A global flag; those with a separate value: --root, --log,
			// --log-format, --criu, --rootless.
			switch a {
			case "--root", "--log", "--log-format", "--criu", "--rootless":
				i++
			}
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		want := ""
		switch {
		case (cmd == "create" || cmd == "run") && (name == "bundle" || name == "b"):
			want = "bundle"
		case cmd == "exec" && (name == "process" || name == "p"):
			want = "process"
		default:
			continue
		}
		if !hasValue && i+1 < len(args) {
			i++
			value = args[i]
		}
		if want == "bundle" {
			return strings.TrimSuffix(value, "/") + "/config.json", true
		}
		return value, false
	}
	if cmd == "create" || cmd == "run" {
		return strings.TrimSuffix(cwd, "/") + "/config.json", true
	}
	return "", false
}
