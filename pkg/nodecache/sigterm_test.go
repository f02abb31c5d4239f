package nodecache

import (
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lrpdns/lrpdns/internal/dnstest"
)

// buildNodeCache builds the node-cache binary for tests that need a real
// process and real signals.
func buildNodeCache(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "node-cache")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/lrpdns/lrpdns/cmd/node-cache").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// process is the real node-cache binary running against recording servers
// on loopback.
type process struct {
	cmd            *exec.Cmd
	dnsAddr, ready string
	logs           *syncBuffer
	exited         chan error
}

// startProcess builds and starts node-cache with the cluster DNS and node
// resolver on loopback, plus extra flags.
func startProcess(t *testing.T, extra ...string) *process {
	t.Helper()
	bin := buildNodeCache(t)
	cluster := startDNS(t, "10.96.0.99", 30)
	node := startDNS(t, "192.0.2.1", 30)
	dir := t.TempDir()
	cm := filepath.Join(dir, "kube-dns")
	writeConfigMap(t, cm, map[string]string{"upstreamNameservers": fmt.Sprintf("[%q]", node.Addr)})
	writeFile(t, filepath.Join(dir, "resolv.conf"), "nameserver 127.0.0.1\n")
	p := &process{dnsAddr: dnstest.FreeAddr(t), ready: dnstest.FreeAddr(t), logs: &syncBuffer{}, exited: make(chan error, 1)}
	_, port, _ := net.SplitHostPort(p.dnsAddr)
	p.cmd = exec.Command(bin, append([]string{
		"--cluster-dns", cluster.Addr.String(), "--resolv-conf", filepath.Join(dir, "resolv.conf"),
		"--kube-dns-config-dir", cm, "--bind", "127.0.0.1", "--port", port,
		"--ready-addr", p.ready, "--health-addr", dnstest.FreeAddr(t), "--metrics-addr", dnstest.FreeAddr(t),
		"--allow-loopback-resolvers"}, extra...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	go func() { p.exited <- p.cmd.Wait() }()
	return p
}

// TestSIGTERMDropsReadinessBeforeClosingThePort runs the binary, sends it
// SIGTERM and watches, every 10ms, the ready endpoint and a DNS query: the
// ready endpoint must go down while DNS is still answered (the lameduck
// period), and the DNS port must close only after that.
func TestSIGTERMDropsReadinessBeforeClosingThePort(t *testing.T) {
	p := startProcess(t, "--lameduck", "1s")
	cmd, dnsAddr, ready, logs, exited := p.cmd, p.dnsAddr, p.ready, p.logs, p.exited

	isReady := func() bool {
		c := http.Client{Timeout: 200 * time.Millisecond}
		resp, err := c.Get("http://" + ready + "/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	answers := func(i int) bool {
		r, err := exchange("udp", dnsAddr, "q"+strconv.Itoa(i)+".example.com")
		return err == nil && len(r.Answer) == 1
	}
	if !eventually(10*time.Second, isReady) {
		t.Fatalf("never ready; logs:\n%s", logs)
	}
	if !answers(0) {
		t.Fatalf("ready but DNS not answered; logs:\n%s", logs)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	var readyOff, dnsOff time.Time
	answeredWhileUnready := 0
	for i := 1; dnsOff.IsZero() && time.Since(sent) < 10*time.Second; i++ {
		r := isReady()
		a := answers(i)
		now := time.Now()
		if !r && readyOff.IsZero() {
			readyOff = now
		}
		if !r && a {
			answeredWhileUnready++
		}
		if !a {
			dnsOff = now
			if r {
				t.Fatalf("DNS stopped answering while still ready")
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if readyOff.IsZero() || dnsOff.IsZero() {
		t.Fatalf("readiness off at %v, DNS off at %v after SIGTERM; want both; logs:\n%s", readyOff, dnsOff, logs)
	}
	if answeredWhileUnready == 0 || !readyOff.Before(dnsOff) {
		t.Fatalf("readiness went off %v after SIGTERM and DNS %v after, with %d answers in between; want readiness first and DNS still answered",
			readyOff.Sub(sent), dnsOff.Sub(sent), answeredWhileUnready)
	}
	t.Logf("readiness off %v after SIGTERM; DNS answered %d queries while unready; port closed %v after SIGTERM",
		readyOff.Sub(sent).Round(time.Millisecond), answeredWhileUnready, dnsOff.Sub(sent).Round(time.Millisecond))
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("node-cache exited with %v, want 0; logs:\n%s", err, logs)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("node-cache did not exit; logs:\n%s", logs)
	}
}

// TestSIGHUPReloads: SIGHUP re-reads the inputs and never ends the process
// (its default action would, at once, without a lameduck).
func TestSIGHUPReloads(t *testing.T) {
	p := startProcess(t, "--config-check-interval", "1h")
	cmd, dnsAddr, logs, exited := p.cmd, p.dnsAddr, p.logs, p.exited
	answers := func(name string) bool {
		r, err := exchange("udp", dnsAddr, name)
		return err == nil && len(r.Answer) == 1
	}
	if !eventually(10*time.Second, func() bool { return answers("first.example.com") }) {
		t.Fatalf("never answered; logs:\n%s", logs)
	}
	for i := range 3 {
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		select {
		case err := <-exited:
			t.Fatalf("SIGHUP %d ended the process: %v; logs:\n%s", i+1, err, logs)
		default:
		}
		if !answers(fmt.Sprintf("after-hup-%d.example.com", i)) {
			t.Fatalf("not answering after SIGHUP %d; logs:\n%s", i+1, logs)
		}
	}
	if n := strings.Count(logs.String(), "reloading on signal"); n != 3 {
		t.Errorf("logged %d reloads for 3 SIGHUPs; logs:\n%s", n, logs)
	}
}
