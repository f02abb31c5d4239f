package e2e

import "testing"

// TestNextRun: 254 clients in a row get 254 different run numbers, each
// one a name's second label can carry (1 to 254).
func TestNextRun(t *testing.T) {
	seen := map[int]bool{}
	for range 254 {
		n := nextRun()
		if n < 1 || n > 254 || seen[n] {
			t.Fatalf("nextRun() = %d after %v", n, len(seen))
		}
		seen[n] = true
	}
}
