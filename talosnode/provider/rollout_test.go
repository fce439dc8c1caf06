package provider_test

import (
	"strings"
	"testing"

	p "github.com/pulumi/pulumi-go-provider"
	presource "github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/property"

	"talos-cluster/talosnode/internal/lab"
)

func rolloutURN() presource.URN {
	return presource.NewURN("test", "talos-cluster", "", "talosnode:index:Rollout", "rollout")
}

// rolloutInputs is a Rollout of the given nodes (name, address, role, release, config).
func rolloutInputs(l *lab.Lab, nodes ...[5]string) property.Map {
	list := make([]property.Value, len(nodes))
	for i, n := range nodes {
		list[i] = property.New(map[string]property.Value{
			"name": property.New(n[0]), "address": property.New(n[1]), "role": property.New(n[2]),
			"talosVersion": property.New(n[3]), "schematicId": property.New(lab.Schematic),
			"installerImage":       property.New(lab.InstallerOf(lab.Schematic, n[3])),
			"machineConfiguration": property.New(n[4]).WithSecret(true),
		})
	}
	return property.NewMap(map[string]property.Value{
		"clientConfiguration": property.New(map[string]property.Value{
			"caCertificate":     property.New(l.Credentials.CACertificate),
			"clientCertificate": property.New(l.Credentials.ClientCertificate),
			"clientKey":         property.New(l.Credentials.ClientKey).WithSecret(true),
		}),
		"nodes":          property.New(list),
		"snapshotDir":    property.New("/tmp/snapshots"),
		"snapshotPrefix": property.New("lab"),
	})
}

func TestThePreviewChecksTheDeclaredKubernetesAgainstEachNodesRunningRelease(t *testing.T) {
	l := lab.New(t)
	running := l.ControlPlane(t, lab.KubernetesVersion, lab.Installer, "")
	n := l.Configured(t, "127.0.10.61", running)
	s := server(t)
	old := rolloutInputs(l, [5]string{"cp-1", n.Addr(), "controlplane", lab.TalosVersion, string(running)})
	checked, err := s.Check(p.CheckRequest{Urn: rolloutURN(), Inputs: old})
	if err != nil || len(checked.Failures) > 0 {
		t.Fatalf("check: %v %v", checked.Failures, err)
	}
	created, err := s.Create(p.CreateRequest{Urn: rolloutURN(), Properties: checked.Inputs})
	if err != nil {
		t.Fatal(err)
	}
	// Kubernetes 1.35 on the Talos 1.11.5 the node runs: refused at preview, naming the node,
	// its release and the range it supports.
	next := rolloutInputs(l, [5]string{"cp-1", n.Addr(), "controlplane", lab.TalosVersion,
		string(l.ControlPlane(t, "1.35.0", lab.Installer, ""))})
	checked, err = s.Check(p.CheckRequest{Urn: rolloutURN(), Inputs: next, State: old})
	if err != nil || len(checked.Failures) > 0 {
		t.Fatalf("check: %v %v", checked.Failures, err)
	}
	_, err = s.Update(p.UpdateRequest{ID: created.ID, Urn: rolloutURN(), State: created.Properties, Inputs: checked.Inputs, DryRun: true})
	for _, want := range []string{"cp-1 runs Talos v1.11.5", "1.29.0 to 1.34.99", "Kubernetes 1.35.0"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("preview: %v, want it to say %q", err, want)
		}
	}
	if st := n.State(); st.Applies != 1 {
		t.Errorf("the preview changed the node: %d applies", st.Applies)
	}
}

func TestAnUpgradeOfAStackWithTwoControlPlanesIsRefusedAtCheck(t *testing.T) {
	l := lab.New(t)
	s := server(t)
	nodes := func(version string, controlPlanes int) property.Map {
		var list [][5]string
		for i := range controlPlanes {
			list = append(list, [5]string{"cp-" + string(rune('1'+i)), "127.0.10.7" + string(rune('1'+i)), "controlplane", version, "config"})
		}
		return rolloutInputs(l, append(list, [5]string{"worker-1", "127.0.10.79", "worker", version, "config"})...)
	}
	resp, err := s.Check(p.CheckRequest{Urn: rolloutURN(), State: nodes("v1.11.5", 2), Inputs: nodes("v1.11.6", 2)})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Failures) != 1 || resp.Failures[0].Property != "nodes" ||
		!strings.Contains(resp.Failures[0].Reason, "etcd member count(2) is insufficient to maintain quorum if upgrade commences") ||
		!strings.Contains(resp.Failures[0].Reason, "cp-1, cp-2") {
		t.Fatalf("failures %v, want the two control planes and Talos' reason", resp.Failures)
	}
	// Three control planes, or two that keep their release, pass.
	for _, tc := range []struct{ old, next property.Map }{{nodes("v1.11.5", 3), nodes("v1.11.6", 3)}, {nodes("v1.11.5", 2), nodes("v1.11.5", 2)}, {property.Map{}, nodes("v1.11.6", 2)}} {
		resp, err := s.Check(p.CheckRequest{Urn: rolloutURN(), State: tc.old, Inputs: tc.next})
		if err != nil || len(resp.Failures) > 0 {
			t.Errorf("check: %v %v", resp.Failures, err)
		}
	}
}
