package provider_test

import (
	"testing"

	p "github.com/pulumi/pulumi-go-provider"
	presource "github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/property"
)

// Every resource reads a duration input the same way (inputs.go): an unknown one is judged once
// it is known, a bad one is named with what would do.
func TestKubernetesReadyJudgesItsTimeoutAsTheOtherResourcesDo(t *testing.T) {
	inputs := property.NewMap(map[string]property.Value{
		"kubeconfig": property.New("apiVersion: v1").WithSecret(true),
		"stage":      property.New("api-server"),
	})
	ready := presource.NewURN("test", "talos-cluster", "", "talosnode:index:KubernetesReady", "api")
	for _, tc := range []struct {
		name    string
		timeout property.Value
		want    []p.CheckFailure
	}{
		{"unknown in a preview", property.New(property.Computed), nil},
		{"not a duration", property.New("soon"), []p.CheckFailure{{Property: "timeout", Reason: `"soon" is not a positive Go duration such as 15m`}}},
		{"zero", property.New("0s"), []p.CheckFailure{{Property: "timeout", Reason: `"0s" is not a positive Go duration such as 15m`}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := server(t).Check(p.CheckRequest{Urn: ready, Inputs: inputs.Set("timeout", tc.timeout)})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Failures) != len(tc.want) {
				t.Fatalf("failures %v, want %v", resp.Failures, tc.want)
			}
			for i := range tc.want {
				if resp.Failures[i] != tc.want[i] {
					t.Errorf("failure %v, want %v", resp.Failures[i], tc.want[i])
				}
			}
		})
	}
}
