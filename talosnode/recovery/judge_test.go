package recovery

import (
	"errors"
	"strings"
	"testing"

	"talos-cluster/talosnode/node"
)

func TestJudgeRecoversOnlyWhenEveryControlPlaneWaitsForTheBootstrap(t *testing.T) {
	cp := func(name, service string, healthy bool) Seen {
		s := Seen{Target: node.Target{Name: name, Address: "10.0.0." + name[len(name)-1:]}, Service: service, Healthy: healthy}
		if service == "Running" && !healthy {
			s.Status = "no leader"
		}
		return s
	}
	down := Seen{Target: node.Target{Name: "cp-3", Address: "10.0.0.3"}, Err: errors.New("version: Unavailable: connection refused")}
	for _, tc := range []struct {
		name   string
		seen   []Seen
		want   Action
		refuse []string
	}{
		{"all wiped", []Seen{cp("cp-1", "Preparing", false), cp("cp-2", "Preparing", false), cp("cp-3", "Waiting", false)}, Recover, nil},
		{"all running", []Seen{cp("cp-1", "Running", true), cp("cp-2", "Running", true), cp("cp-3", "Running", true)}, NotNeeded, nil},
		{"recovered, the others still joining", []Seen{cp("cp-1", "Running", true), cp("cp-2", "Preparing", false), cp("cp-3", "Preparing", false)}, NotNeeded, nil},
		{"one left unwiped without quorum", []Seen{cp("cp-1", "Running", false), cp("cp-2", "Preparing", false), cp("cp-3", "Preparing", false)}, 0,
			[]string{"etcd still has data on cp-1 (10.0.0.1): etcd Running (no leader)", "system-labels-to-wipe=EPHEMERAL", "remove recover.snapshot"}},
		{"a removed member", []Seen{cp("cp-1", "Preparing", false), cp("cp-2", "Failed", false)}, 0, []string{"cp-2 (10.0.0.2): etcd Failed"}},
		{"one does not answer", []Seen{cp("cp-1", "Preparing", false), cp("cp-2", "Preparing", false), down}, 0,
			[]string{"cannot tell whether etcd is empty", "cp-3 (10.0.0.3): version: Unavailable: connection refused"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Judge(tc.seen)
			if tc.refuse == nil {
				if err != nil || got != tc.want {
					t.Fatalf("got %v, %v; want %v", got, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("got %v, want a refusal", got)
			}
			for _, w := range tc.refuse {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("refusal %q does not say %q", err, w)
				}
			}
		})
	}
}
