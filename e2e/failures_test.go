//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
)

// CI keeps only the end of a run's output, where Go prints which tests
// failed but not why. Every failed check in the suite goes through errorf
// or fatalf, which record its message with its test's name; TestMain prints
// them again after the run.
var failures struct {
	sync.Mutex
	lines []string
}

func TestMain(m *testing.M) {
	code := m.Run()
	failures.Lock()
	defer failures.Unlock()
	if len(failures.lines) > 0 {
		fmt.Printf("the %d failed checks, again:\n%s\n", len(failures.lines), strings.Join(failures.lines, "\n"))
	}
	os.Exit(code)
}

func errorf(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	recordFailure(t, msg)
	t.Error(msg)
}

func fatalf(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	recordFailure(t, msg)
	t.Fatal(msg)
}

func fatal(t *testing.T, args ...any) {
	t.Helper()
	msg := fmt.Sprint(args...)
	recordFailure(t, msg)
	t.Fatal(msg)
}

// recordFailure keeps a message's first lines, each cut at 300 bytes: the
// place it happened has the whole of it.
func recordFailure(t *testing.T, msg string) {
	lines := strings.Split(msg, "\n")
	if len(lines) > 6 {
		lines = append(lines[:6], fmt.Sprintf("(%d more lines above)", len(lines)-6))
	}
	for i, l := range lines {
		if len(l) > 300 {
			lines[i] = l[:300] + "..."
		}
	}
	failures.Lock()
	defer failures.Unlock()
	failures.lines = append(failures.lines, "  "+t.Name()+": "+strings.Join(lines, "\n    "))
}
