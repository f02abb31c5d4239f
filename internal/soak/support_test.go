package soak

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func envDuration(k string, d time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(k)); err == nil {
		return v
	}
	return d
}

func artifacts(t *testing.T) string {
	dir := os.Getenv("SOAK_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	must(t, os.MkdirAll(dir, 0o755))
	return dir
}

// writeConfigMap writes the kube-dns ConfigMap's keys: data, and
// upstreamNameservers pointing at the test's upstream.
func writeConfigMap(t *testing.T, dir string, data map[string]string, upstream string) {
	t.Helper()
	files := map[string]string{"upstreamNameservers": fmt.Sprintf("[%q]", upstream), "stubDomains": ""}
	for k, v := range data {
		files[k] = v
	}
	for k, v := range files {
		tmp := filepath.Join(dir, "."+k+".tmp")
		must(t, os.WriteFile(tmp, []byte(v), 0o644))
		must(t, os.Rename(tmp, filepath.Join(dir, k)))
	}
}

func jsonMap(m map[string][]string) string {
	b, _ := json.Marshal(m)
	return string(b)
}

func waitReady(url string, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
	}
	return false
}

// metric reads one sample (name, no labels) from the cache's /metrics.
func (e *env) metric(name string) float64 {
	resp, err := http.Get("http://" + e.metrics + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}
