package node

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// mount is a volume bind-mounted into a container.
type mount struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// execState is how to enter a container's world: the pod's network
// namespace and a private mount namespace with its own /etc, /run and /tmp.
// It is saved per container so `lab-node exec` can run commands in a pod.
type execState struct {
	Netns  string   `json:"netns"`
	Dir    string   `json:"dir"`
	Mounts []mount  `json:"mounts"`
	User   *int64   `json:"user,omitempty"`
	Env    []string `json:"env"`
	// Cgroup is the cgroup v2 directory the process joins before it runs:
	// the agent's cgroup root, so Cilium's socket load balancer sees the
	// pod's sockets as it sees them on a real node.
	Cgroup string `json:"cgroup,omitempty"`
}

// mountRoots are where volumes may be mounted: each gets a tmpfs in the
// container's mount namespace, so nothing is created on the host.
var mountRoots = []string{"/etc/", "/run/", "/var/run/"}

func (s execState) save(path string) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

func loadExecState(path string) (execState, error) {
	var s execState
	b, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(b, &s)
}

func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// script sets up the container's mount namespace and execs "$@".
func (s execState) script() (string, error) {
	var b strings.Builder
	b.WriteString("set -e\n")
	b.WriteString("mount -t tmpfs -o mode=0755 lab-etc /etc\n")
	b.WriteString("mount -t tmpfs -o mode=0755 lab-run /run\n")
	for _, f := range []string{"resolv.conf", "hosts"} {
		fmt.Fprintf(&b, "touch /etc/%s\nmount --bind %s /etc/%s\n", f, shQuote(filepath.Join(s.Dir, f)), f)
	}
	for _, m := range s.Mounts {
		ok := false
		for _, root := range mountRoots {
			ok = ok || strings.HasPrefix(filepath.Clean(m.Target)+"/", root)
		}
		if !ok || strings.Contains(m.Target, "..") {
			return "", fmt.Errorf("mount path %s is outside %v, which the lab does not support", m.Target, mountRoots)
		}
		fmt.Fprintf(&b, "mkdir -p %s\nmount --bind %s %s\n", shQuote(m.Target), shQuote(m.Source), shQuote(m.Target))
		if m.ReadOnly {
			fmt.Fprintf(&b, "mount -o remount,bind,ro %s\n", shQuote(m.Target))
		}
	}
	// The binary ("$1") and the pod's files may live under /tmp: bind the
	// binary into the container's /run, then give it its own /tmp.
	b.WriteString("touch /run/lab-entrypoint\nmount --bind \"$1\" /run/lab-entrypoint\nshift\n")
	b.WriteString("mount -t tmpfs -o mode=1777 lab-tmp /tmp\n")
	if s.User != nil {
		fmt.Fprintf(&b, "exec setpriv --reuid=%d --regid=%d --clear-groups -- /run/lab-entrypoint \"$@\"\n", *s.User, *s.User)
	} else {
		b.WriteString("exec /run/lab-entrypoint \"$@\"\n")
	}
	return b.String(), nil
}

// command returns the process for argv in the container's world. Its PID is
// the workload's: sh, ip, sh and setpriv each exec the next.
func (s execState) command(argv []string) *exec.Cmd {
	script, err := s.script()
	if err != nil {
		script = "echo " + shQuote(err.Error()) + " >&2; exit 1"
	}
	args := append([]string{"ip", "netns", "exec", s.Netns, "sh", "-c", script, "sh"}, argv...)
	if s.Cgroup != "" {
		// Joined before ip netns exec, which mounts a sysfs of its own.
		args = append([]string{"sh", "-c", `echo $$ > "$0"; exec "$@"`, filepath.Join(s.Cgroup, "cgroup.procs")}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = s.Env
	return cmd
}

// Exec runs argv (its first element an image entrypoint) in the first
// container of the pod namespace/name, which runs on the node of one of
// dirs, with that container's environment, mounts and user, and returns
// the process to run.
func Exec(dirs []string, images Images, namespace, name string, argv []string) (*exec.Cmd, error) {
	var matches []string
	for _, dir := range dirs {
		m, err := filepath.Glob(filepath.Join(dir, "pods", namespace+"_"+name+"_*", "exec-*.json"))
		if err != nil {
			return nil, err
		}
		matches = append(matches, m...)
	}
	if len(matches) == 0 {
		return nil, fmt.Errorf("pod %s/%s is not running on a lab node (%s)", namespace, name, strings.Join(dirs, ", "))
	}
	s, err := loadExecState(matches[0])
	if err != nil {
		return nil, err
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("no command")
	}
	if bin, ok := images.Binary(argv[0]); ok {
		argv[0] = bin
	} else if !filepath.IsAbs(argv[0]) {
		// A command of the image's own (sh): the host's, by its path,
		// which the container's entrypoint mount needs.
		bin, err := exec.LookPath(argv[0])
		if err != nil {
			return nil, err
		}
		argv[0] = bin
	}
	return s.command(argv), nil
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}
