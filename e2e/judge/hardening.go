package judge

import (
	"fmt"
	"strconv"
	"strings"
)

// Process is what a node sees of a container's main process: its
// /proc/PID/status, the result of writing a file at the root of its mount
// namespace, and its memory cgroup's limit and peak.
type Process struct {
	// Status is /proc/PID/status.
	Status string
	// RootWrite is the error text of `touch /FILE` in the process's mount
	// namespace, "" when the write succeeded.
	RootWrite string
	// MemoryLimit is the cgroup's limit in bytes (memory.limit_in_bytes on
	// cgroup v1, memory.max on v2), 0 when unlimited ("max", or v1's
	// page-counter maximum).
	MemoryLimit int64
	// MemoryPeak is the cgroup's peak usage in bytes (memory.max_usage_in_bytes,
	// memory.peak), 0 when unknown.
	MemoryPeak int64
}

// Shipped is how the node-cache container is shipped (manifests/): its user,
// its memory limit.
type Shipped struct {
	UID         int
	MemoryLimit int64
}

// Hardening lists what in p is not as shipped: a user other than want's,
// any capability (effective, permitted, bounding or ambient), privilege
// escalation allowed, no seccomp filter, a root filesystem that took a
// write, a memory limit other than want's, or a peak at or over it. Empty:
// the process runs as shipped.
func Hardening(p Process, want Shipped) []string {
	var out []string
	fields := map[string]string{}
	for line := range strings.SplitSeq(p.Status, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	if uid := strings.Fields(fields["Uid"]); len(uid) == 0 {
		out = append(out, "no Uid line in /proc/PID/status")
	} else {
		for _, id := range uid { // real, effective, saved, filesystem
			if id != strconv.Itoa(want.UID) {
				out = append(out, fmt.Sprintf("runs as uid %s (Uid: %s), want %d", id, fields["Uid"], want.UID))
				break
			}
		}
	}
	for _, c := range []string{"CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh"} {
		v, ok := fields[c]
		if !ok {
			out = append(out, "no "+c+" line in /proc/PID/status")
			continue
		}
		if n, err := strconv.ParseUint(v, 16, 64); err != nil || n != 0 {
			out = append(out, fmt.Sprintf("%s %s, want no capabilities (0000000000000000)", c, v))
		}
	}
	if fields["NoNewPrivs"] != "1" {
		out = append(out, fmt.Sprintf("NoNewPrivs %q, want 1 (allowPrivilegeEscalation: false)", fields["NoNewPrivs"]))
	}
	if fields["Seccomp"] != "2" {
		out = append(out, fmt.Sprintf("Seccomp %q, want 2 (a filter: seccompProfile RuntimeDefault)", fields["Seccomp"]))
	}
	switch {
	case p.RootWrite == "":
		out = append(out, "a write to the root filesystem succeeded, want it refused (readOnlyRootFilesystem)")
	case !strings.Contains(p.RootWrite, "Read-only file system"):
		out = append(out, fmt.Sprintf("the write to the root filesystem failed with %q, want \"Read-only file system\"", p.RootWrite))
	}
	if p.MemoryLimit != want.MemoryLimit {
		out = append(out, fmt.Sprintf("memory limit %s, want %d", bytesOrNone(p.MemoryLimit), want.MemoryLimit))
	}
	if p.MemoryPeak <= 0 {
		out = append(out, "no peak memory usage read from the cgroup")
	} else if p.MemoryLimit > 0 && p.MemoryPeak >= p.MemoryLimit {
		out = append(out, fmt.Sprintf("peak memory %d reached the limit %d", p.MemoryPeak, p.MemoryLimit))
	}
	return out
}

func bytesOrNone(n int64) string {
	if n <= 0 {
		return "none"
	}
	return strconv.FormatInt(n, 10)
}

// MemoryLimit reads a memory cgroup's limit file: memory.max ("max") or
// memory.limit_in_bytes (a page-counter maximum near 2^63 means none).
func MemoryLimit(text string) (int64, error) {
	v := strings.TrimSpace(text)
	if v == "max" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("failed to read a memory limit from %q: %w", v, err)
	}
	if n >= 1<<62 {
		return 0, nil
	}
	return n, nil
}
