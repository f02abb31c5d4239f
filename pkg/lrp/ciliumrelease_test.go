package lrp

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/version"
)

// TestJudgeCilium: the floor, each known fault's range with its edges, and
// pre-release tags, which come before their release.
func TestJudgeCilium(t *testing.T) {
	t.Parallel()
	all := CiliumBehaviour{FallsBack: true, WaitsForReady: true, AddressRedirect: true}
	for _, tc := range []struct {
		version  string
		redirect bool
		want     CiliumBehaviour
		why      []string // what the verdict must name
	}{
		{"1.17.8", false, all, []string{"1.17.8", "older than 1.18.0"}},
		{"1.18.0-pre.1", false, all, []string{"older than 1.18.0"}},
		{"1.18.0", false, CiliumBehaviour{AddressRedirect: true}, []string{"cilium/cilium#41450", "fixed in 1.18.2", "cilium/cilium#43080", "fixed in 1.18.6"}},
		{"1.18.1", false, CiliumBehaviour{AddressRedirect: true}, []string{"cilium/cilium#41450"}},
		{"1.18.2", false, CiliumBehaviour{FallsBack: true, AddressRedirect: true}, []string{"cilium/cilium#43080"}},
		{"1.18.5", false, CiliumBehaviour{FallsBack: true, AddressRedirect: true}, []string{"cilium/cilium#43080", "no redirect is created"}},
		{"1.18.6-rc.1", false, CiliumBehaviour{FallsBack: true, AddressRedirect: true}, []string{"cilium/cilium#43080"}},
		{"1.18.6", true, all, nil},
		{"1.18.11", true, all, nil},
		{"1.19.0-rc.1", true, all, nil},
		{"1.19.7", true, all, nil},
		{"1.20.2", true, all, nil},
		{"1.21.0", true, all, nil},
	} {
		t.Run(tc.version, func(t *testing.T) {
			t.Parallel()
			v := version.MustParseSemantic(tc.version)
			got := judgeCilium(v)
			if got.redirect != tc.redirect {
				t.Errorf("redirect = %v, want %v (%s)", got.redirect, tc.redirect, got.why)
			}
			if tc.redirect != (got.why == "") {
				t.Errorf("why = %q; want one exactly when no redirect is made", got.why)
			}
			for _, w := range tc.why {
				if !strings.Contains(got.why, w) {
					t.Errorf("why %q lacks %q", got.why, w)
				}
			}
			if !v.LessThan(version.MustParseSemantic(ciliumFloor)) {
				if diff := cmp.Diff(tc.want, ExpectedCiliumBehaviour(v)); diff != "" {
					t.Errorf("ExpectedCiliumBehaviour (-want +got):\n%s", diff)
				}
			}
		})
	}
}
