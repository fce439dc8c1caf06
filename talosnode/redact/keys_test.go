package redact_test

import (
	"slices"
	"testing"

	"talos-cluster/talosnode/redact"
)

func TestKeysNameEachValueByItsPath(t *testing.T) {
	got, err := redact.Keys(`version: v1alpha1
machine:
  type: worker
  token: (redacted)
  certSANs: [a.example.com, b.example.com]
  sysctls:
    net.core.somaxconn: "65535"
  nodeLabels:
    node.kubernetes.io/pool: blue
  network: {}
  kubelet:
    extraArgs:
      max-pods: "250"
    extraMounts: []
---
apiVersion: v1alpha1
kind: ExtensionServiceConfig
name: nut-client
configFiles:
  - content: (redacted)
    mountPath: /usr/local/etc/nut/upsmon.conf
---
apiVersion: v1alpha1
kind: HostnameConfig
auto: stable
`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"version":                               "v1alpha1",
		"machine.type":                          "worker",
		"machine.token":                         "(redacted)",
		"machine.certSANs[0]":                   "a.example.com",
		"machine.certSANs[1]":                   "b.example.com",
		`machine.sysctls["net.core.somaxconn"]`: "65535",
		`machine.nodeLabels["node.kubernetes.io/pool"]`: "blue",
		"machine.network":                                               "{}",
		`machine.kubelet.extraArgs["max-pods"]`:                         "250",
		"machine.kubelet.extraMounts":                                   "[]",
		`ExtensionServiceConfig["nut-client"].apiVersion`:               "v1alpha1",
		`ExtensionServiceConfig["nut-client"].kind`:                     "ExtensionServiceConfig",
		`ExtensionServiceConfig["nut-client"].name`:                     "nut-client",
		`ExtensionServiceConfig["nut-client"].configFiles[0].content`:   "(redacted)",
		`ExtensionServiceConfig["nut-client"].configFiles[0].mountPath`: "/usr/local/etc/nut/upsmon.conf",
		"HostnameConfig.apiVersion":                                     "v1alpha1",
		"HostnameConfig.kind":                                           "HostnameConfig",
		"HostnameConfig.auto":                                           "stable",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected key %s = %q", k, got[k])
		}
	}
}

func TestKeysOfTextThatIsNotYAMLIsAnError(t *testing.T) {
	if _, err := redact.Keys("machine: [unclosed"); err == nil {
		t.Error("no error")
	}
}

func TestChangedKeysInPathOrder(t *testing.T) {
	before := map[string]string{"machine.type": "worker", "machine.token": "(redacted)", "machine.certSANs[0]": "a", "machine.network": "{}"}
	after := map[string]string{"machine.type": "worker", "machine.token": "(redacted)", "machine.certSANs[0]": "b", `machine.sysctls["vm.max_map_count"]`: "262144"}
	var got []string
	for _, c := range redact.ChangedKeys(before, after) {
		got = append(got, c.String())
	}
	want := []string{"~ machine.certSANs[0]", "- machine.network", `+ machine.sysctls["vm.max_map_count"]`}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if c := redact.ChangedKeys(before, before); len(c) != 0 {
		t.Errorf("no change: got %v", c)
	}
}
