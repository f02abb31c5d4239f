package soak

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cgroup is a memory cgroup with a limit, v2 or v1, made for one process.
type cgroup struct {
	dir string
	v2  bool
}

// newCgroup makes a memory cgroup limited to limit bytes, or returns an
// error saying why there is none (not root, no memory controller).
func newCgroup(name string, limit int64) (*cgroup, error) {
	if b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil && strings.Contains(string(b), "memory") {
		cg := &cgroup{dir: filepath.Join("/sys/fs/cgroup", name), v2: true}
		return cg, cg.make("memory.max", limit)
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes"); err == nil {
		cg := &cgroup{dir: filepath.Join("/sys/fs/cgroup/memory", name)}
		return cg, cg.make("memory.limit_in_bytes", limit)
	}
	return nil, fmt.Errorf("no memory cgroup controller")
}

func (c *cgroup) make(limitFile string, limit int64) error {
	if err := os.Mkdir(c.dir, 0o750); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.dir, limitFile), []byte(strconv.FormatInt(limit, 10)), 0o600); err != nil {
		_ = os.Remove(c.dir)
		return err
	}
	return nil
}

// procs is the file a process writes its pid to, to join.
func (c *cgroup) procs() string { return filepath.Join(c.dir, "cgroup.procs") }

// peak is the most memory the cgroup used.
func (c *cgroup) peak() (int64, error) {
	f := "memory.max_usage_in_bytes"
	if c.v2 {
		f = "memory.peak"
	}
	b, err := os.ReadFile(filepath.Join(c.dir, f))
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// ooms is how many processes the kernel killed for the limit.
func (c *cgroup) ooms() (int64, error) {
	f := "memory.oom_control"
	if c.v2 {
		f = "memory.events"
	}
	b, err := os.ReadFile(filepath.Join(c.dir, f))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, nil
}

func (c *cgroup) remove() { _ = os.Remove(c.dir) }
