package provider

import (
	"slices"
	"testing"

	rpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

func update() *rpc.PropertyDiff {
	return &rpc.PropertyDiff{Kind: rpc.PropertyDiff_UPDATE, InputDiff: true}
}
func add() *rpc.PropertyDiff { return &rpc.PropertyDiff{Kind: rpc.PropertyDiff_ADD, InputDiff: true} }

func detailedKeys(resp *rpc.DiffResponse) []string {
	var keys []string
	for k := range resp.GetDetailedDiff() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func TestTheDiffOfANodeStateShowsTheConfigKeysThatChange(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		detailed                map[string]*rpc.PropertyDiff
		diffs                   []string
		wantDetailed, wantDiffs []string
	}{
		{
			name: "a key changes",
			detailed: map[string]*rpc.PropertyDiff{
				`config["machine.sysctls[\"net.core.somaxconn\"]"]`: add(),
				"configHash":           update(),
				"machineConfiguration": update(),
			},
			diffs:        []string{`config["machine.sysctls[\"net.core.somaxconn\"]"]`, "configHash", "machineConfiguration"},
			wantDetailed: []string{`config["machine.sysctls[\"net.core.somaxconn\"]"]`},
			wantDiffs:    []string{`config["machine.sysctls[\"net.core.somaxconn\"]"]`, "configHash", "machineConfiguration", "config"},
		},
		{
			// A secret changes: its key reads (redacted) before and after, the hash alone shows it.
			name:         "a secret changes",
			detailed:     map[string]*rpc.PropertyDiff{"configHash": update(), "machineConfiguration": update()},
			diffs:        []string{"configHash", "machineConfiguration"},
			wantDetailed: []string{"configHash", "machineConfiguration"},
			wantDiffs:    []string{"configHash", "machineConfiguration"},
		},
		{
			name:         "the release changes",
			detailed:     map[string]*rpc.PropertyDiff{"talosVersion": update()},
			diffs:        []string{"talosVersion"},
			wantDetailed: []string{"talosVersion"},
			wantDiffs:    []string{"talosVersion"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := &rpc.DiffResponse{Changes: rpc.DiffResponse_DIFF_SOME, Diffs: tc.diffs, DetailedDiff: tc.detailed, HasDetailedDiff: true}
			shapeDiff(nodeStateType, resp)
			if got := detailedKeys(resp); !slices.Equal(got, tc.wantDetailed) {
				t.Errorf("detailed diff %q, want %q", got, tc.wantDetailed)
			}
			if !slices.Equal(resp.Diffs, tc.wantDiffs) {
				t.Errorf("diffs %q, want %q", resp.Diffs, tc.wantDiffs)
			}
			if resp.Changes != rpc.DiffResponse_DIFF_SOME {
				t.Errorf("changes %s", resp.Changes)
			}
		})
	}
}

func TestTheDiffOfARolloutLeavesTheNodesSecretConfigsToThePlan(t *testing.T) {
	// Only configs change: the one entry is the plan.
	resp := &rpc.DiffResponse{
		Changes: rpc.DiffResponse_DIFF_SOME, HasDetailedDiff: true,
		Diffs:        []string{"nodes"},
		DetailedDiff: map[string]*rpc.PropertyDiff{"nodes[0].machineConfiguration": update(), "nodes[3].machineConfiguration": update()},
	}
	shapeDiff(rolloutType, resp)
	if got := detailedKeys(resp); !slices.Equal(got, []string{PlanDiffKey}) {
		t.Errorf("detailed diff %q, want only %s", got, PlanDiffKey)
	}
	if !slices.Equal(resp.Diffs, []string{"nodes", PlanDiffKey}) {
		t.Errorf("diffs %q", resp.Diffs)
	}

	// A release changes too: it shows as it was; a node added shows whole.
	resp = &rpc.DiffResponse{
		Changes: rpc.DiffResponse_DIFF_SOME, HasDetailedDiff: true,
		Diffs: []string{"nodes"},
		DetailedDiff: map[string]*rpc.PropertyDiff{
			"nodes[0].machineConfiguration": update(), "nodes[0].talosVersion": update(), "nodes[4]": add(),
		},
	}
	shapeDiff(rolloutType, resp)
	if got := detailedKeys(resp); !slices.Equal(got, []string{"nodes[0].talosVersion", "nodes[4]"}) {
		t.Errorf("detailed diff %q", got)
	}
	if !slices.Equal(resp.Diffs, []string{"nodes"}) {
		t.Errorf("diffs %q", resp.Diffs)
	}
}
