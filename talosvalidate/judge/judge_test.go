package judge

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
)

// The program's built-in patches, in the shapes lib/patches.ts builds them for a cluster
// with Cilium, the serving-cert approver, a VIP, labels and taints.
const (
	installer      = "factory.talos.dev/installer/376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba:v1.11.5"
	clusterPatch   = `{"machine":{"certSANs":["10.0.0.10"],"kubelet":{"extraArgs":{"rotate-server-certificates":"true"}}},"cluster":{"network":{"podSubnets":["10.244.0.0/16"],"serviceSubnets":["10.96.0.0/12"],"cni":{"name":"none"}},"proxy":{"disabled":true}}}`
	controlPlane   = `{"cluster":{"apiServer":{"certSANs":["10.0.0.10"]}}}`
	vipPatch       = `{"machine":{"network":{"interfaces":[{"interface":"eth0","vip":{"ip":"10.0.0.10"}}]}}}`
	vipByMACPatch  = `{"machine":{"network":{"interfaces":[{"deviceSelector":{"hardwareAddr":"52:54:00:*"},"dhcp":true,"vip":{"ip":"10.0.0.10"}}]}}}`
	allowSchedule  = `{"cluster":{"allowSchedulingOnControlPlanes":true}}`
	timeServers    = `{"machine":{"time":{"servers":["time.cloudflare.com","pool.ntp.org"],"bootTimeout":"2m"}}}`
	keyCluster     = "(program: cluster patch)"
	keyRole        = "(program: control-plane patch)"
	keyVIP         = "(program: VIP patch)"
	keyNode        = "(program: node patch)"
	keyAll         = "talos-cluster:patches.all[0]"
	keyWorker      = "talos-cluster:patches.worker[0]"
	keyOwn         = "talos-cluster:nodes[4].patches[0]"
	keyControlRole = "talos-cluster:patches.controlplane[0]"
)

func nodePatch(name, role string) string {
	if role == "controlplane" {
		return fmt.Sprintf(`{"machine":{"network":{"hostname":%q},"install":{"image":%q,"disk":"/dev/sda"},"nodeLabels":{"topology.kubernetes.io/zone":"rack-1"},"nodeTaints":{"dedicated":"infra:NoSchedule"}}}`, name, installer)
	}
	return fmt.Sprintf(`{"machine":{"network":{"hostname":%q},"install":{"image":%q,"diskSelector":{"size":">= 100GB"}},"nodeLabels":{"node-role.kubernetes.io/storage":""},"kubelet":{"extraConfig":{"registerWithTaints":[{"key":"gpu","value":"true","effect":"NoSchedule"}]}}}}`, name, installer)
}

// chain is a node's patches in the program's order: cluster built-in, patches.all, role
// built-ins, the role's patches, node built-in, the node's own patches.
type chain struct{ all, role, own []Patch }

func node(name, role string, c chain) Node {
	p := []Patch{{Key: keyCluster, Patch: clusterPatch}}
	p = append(p, c.all...)
	if role == "controlplane" {
		p = append(p, Patch{Key: keyRole, Patch: controlPlane}, Patch{Key: keyVIP, Patch: vipPatch})
	}
	p = append(p, c.role...)
	p = append(p, Patch{Key: keyNode, Patch: nodePatch(name, role)})
	p = append(p, c.own...)
	return Node{Name: name, Role: role, Patches: p}
}

func input(nodes ...Node) Input {
	return Input{
		ClusterName: "lab", Endpoint: "https://10.0.0.10:6443",
		TalosVersion: "v1.11.5", KubernetesVersion: "1.34.1", Nodes: nodes,
	}
}

func mustJudge(t *testing.T, in Input) Report {
	t.Helper()
	r, err := Judge(in)
	if err != nil {
		t.Fatalf("Judge: %v", err)
	}
	return r
}

func TestRefusesBadPatches(t *testing.T) {
	for _, tc := range []struct {
		name    string
		role    string
		key     string
		patch   string
		message string
	}{
		{
			"unknown key under machine", "controlplane", keyAll, `{"machine":{"tyme":{"servers":["pool.ntp.org"]}}}`,
			"unknown key machine.tyme (Talos: unknown keys found during decoding)",
		},
		{
			"unknown key in a node's own patch", "worker", keyOwn, `{"machine":{"kubelett":{"image":"ghcr.io/x/kubelet:v1.34.1"}}}`,
			"unknown key machine.kubelett (Talos: unknown keys found during decoding)",
		},
		{
			"unknown key two levels down", "worker", keyWorker, `{"machine":{"kubelet":{"extraArgz":{"v":"2"}}}}`,
			"unknown key machine.kubelet.extraArgz (Talos: unknown keys found during decoding)",
		},
		{
			"unknown key under cluster.network", "controlplane", keyAll, `{"cluster":{"network":{"cnii":{"name":"none"}}}}`,
			"unknown key cluster.network.cnii (Talos: unknown keys found during decoding)",
		},
		{
			"unknown key inside a list of objects", "controlplane", keyControlRole, `{"machine":{"network":{"interfaces":[{"interface":"eth1","dhcp":true},{"interface":"eth2","adresses":["10.0.1.5/24"]}]}}}`,
			"unknown key machine.network.interfaces[1].adresses (Talos: unknown keys found during decoding)",
		},
		{
			"several unknown keys in one patch", "worker", keyAll, `{"machine":{"tyme":{}},"cluster":{"proxi":{"disabled":true}}}`,
			"unknown keys machine.tyme, cluster.proxi (Talos: unknown keys found during decoding)",
		},
		{
			"unknown key in a VolumeConfig", "worker", keyOwn, `{"apiVersion":"v1alpha1","kind":"VolumeConfig","name":"EPHEMERAL","provisioning":{"maxSise":"10GiB"}}`,
			`unknown key provisioning.maxSise in VolumeConfig "EPHEMERAL" (Talos: unknown keys found during decoding)`,
		},
		{
			"a string where a list is expected", "controlplane", keyAll, `{"machine":{"certSANs":"x"}}`,
			"machine.certSANs: a string (\"x\") where Talos expects a list of strings (Talos: cannot construct !!str `x` into []string)",
		},
		{
			"time servers as one string", "worker", keyAll, `{"machine":{"time":{"servers":"pool.ntp.org"}}}`,
			"machine.time.servers: a string (\"pool.ntp.org\") where Talos expects a list of strings (Talos: cannot construct !!str `pool.nt...` into []string)",
		},
		{
			"an invalid CIDR in the pod subnets", "controlplane", keyAll, `{"cluster":{"network":{"podSubnets":["10.244.0.0/33"]}}}`,
			`cluster.network.podSubnets[0]: "10.244.0.0/33" is not a CIDR (Talos does not check this; Kubernetes would fail to start)`,
		},
		{
			"an invalid IP in an interface's addresses", "worker", keyOwn, `{"machine":{"network":{"interfaces":[{"interface":"eth1","addresses":["10.0.0.300/24"]}]}}}`,
			`machine.network.interfaces (interface eth1) addresses: not an IP address or CIDR (Talos: [networking.os.device.addresses] "eth1": invalid CIDR address: 10.0.0.300/24)`,
		},
		{
			"an invalid IP in the kubelet's node IP subnets", "worker", keyWorker, `{"machine":{"kubelet":{"nodeIP":{"validSubnets":["10.0.0.0/33"]}}}}`,
			`invalid machine config (Talos: kubelet nodeIP subnet is not valid: "10.0.0.0/33")`,
		},
		{
			"an invalid duration", "controlplane", keyAll, `{"machine":{"time":{"bootTimeout":"5 minutes"}}}`,
			"machine.time.bootTimeout: a string (\"5 minutes\") where Talos expects a duration like 30s, 5m or 1h30m (Talos: cannot construct !!str `5 minutes` into time.Duration)",
		},
		{
			"an interface with both interface and deviceSelector", "controlplane", keyControlRole, `{"machine":{"network":{"interfaces":[{"interface":"eth1","deviceSelector":{"hardwareAddr":"52:54:00:*"},"dhcp":true}]}}}`,
			"machine.network.interfaces: an entry sets both interface and deviceSelector; set one (Talos: [networking.os.device.interface], [networking.os.device.deviceSelector]: config sections are mutually exclusive)",
		},
		{
			"an interface with neither interface nor deviceSelector", "worker", keyOwn, `{"machine":{"network":{"interfaces":[{"dhcp":true}]}}}`,
			"machine.network.interfaces: an entry sets neither interface nor deviceSelector; set one (Talos: [networking.os.device.interface], [networking.os.device.deviceSelector]: required either config section to be set)",
		},
		{
			"a VIP on a worker", "worker", keyWorker, `{"machine":{"network":{"interfaces":[{"interface":"eth0","vip":{"ip":"10.0.0.11"}}]}}}`,
			"a VIP (machine.network.interfaces[].vip) is only allowed on control planes (Talos: virtual (shared) IP is not allowed on non-controlplane nodes)",
		},
		{
			"a kubelet extra arg of the wrong type", "worker", keyAll, `{"machine":{"kubelet":{"extraArgs":{"x":[1,2]}}}}`,
			"machine.kubelet.extraArgs.x: a list where Talos expects a string (Talos: cannot unmarshal !!seq into string)",
		},
		{
			"an API server extra arg as a list, which only machinery 1.13+ takes", "controlplane", keyAll, `{"cluster":{"apiServer":{"extraArgs":{"feature-gates":["A=true","B=true"]}}}}`,
			"cluster.apiServer.extraArgs.feature-gates: a list where Talos expects a string (Talos: cannot unmarshal !!seq into string)",
		},
		{
			"a HostnameConfig beside the hostname the program sets", "controlplane", keyOwn, `{"apiVersion":"v1alpha1","kind":"HostnameConfig","auto":"off","hostname":"cp-1"}`,
			"invalid machine config (Talos: static hostname is already set in v1alpha1 config)",
		},
		{
			"a misspelt document kind", "worker", keyAll, `{"apiVersion":"v1alpha1","kind":"VolumeConfg","name":"EPHEMERAL"}`,
			`unknown document kind VolumeConfg (apiVersion v1alpha1) for Talos' config library v1.14.1 (Talos: "VolumeConfg" "v1alpha1": not registered)`,
		},
		{
			"a VolumeConfig with a size that is not one", "worker", keyOwn, `{"apiVersion":"v1alpha1","kind":"VolumeConfig","name":"EPHEMERAL","provisioning":{"maxSize":"lots"}}`,
			`provisioning.maxSize in VolumeConfig "EPHEMERAL": "lots" is not valid here (Talos: strconv.ParseFloat: parsing "": invalid syntax)`,
		},
		{
			"a VolumeConfig for a volume Talos does not let you configure", "controlplane", keyAll, `{"apiVersion":"v1alpha1","kind":"VolumeConfig","name":"STATE","provisioning":{"maxSize":"1GiB"}}`,
			`invalid machine config (Talos: provisioning config is not allowed for the "STATE" volume)`,
		},
		{
			"a VolumeConfig with min size above max size", "controlplane", keyAll, `{"apiVersion":"v1alpha1","kind":"VolumeConfig","name":"EPHEMERAL","provisioning":{"minSize":"10GiB","maxSize":"1GiB"}}`,
			`invalid machine config (Talos: min size is greater than max size)`,
		},
		{
			"an invalid node label", "worker", keyOwn, `{"machine":{"nodeLabels":{"bad label!":"x"}}}`,
			`invalid machine config (Talos: invalid machine node labels: name "bad label!" is invalid)`,
		},
		{
			"a JSON patch whose path does not exist", "worker", keyAll, `[{"op":"add","path":"/machine/nope/x","value":1}]`,
			`the JSON patch does not apply (Talos: add operation does not apply: doc is missing path: "/machine/nope/x": missing value)`,
		},
		{
			"an empty patch", "controlplane", keyAll, `{}`,
			"the patch is empty: no machine, cluster or document kind (Talos: config not found)",
		},
		{
			"text that is not JSON", "worker", keyAll, `{"machine": `,
			"not valid YAML or JSON (Talos: decode error: yaml: line 2: did not find expected node content)",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c chain
			bad := []Patch{{Key: tc.key, Patch: tc.patch}}
			switch tc.key {
			case keyAll:
				c.all = bad
			case keyWorker, keyControlRole:
				c.role = bad
			default:
				c.own = bad
			}
			name := map[string]string{"controlplane": "cp-1", "worker": "w-1"}[tc.role]
			r := mustJudge(t, input(node(name, tc.role, c)))
			want := []Finding{{Key: tc.key, Node: name, Message: tc.message}}
			if !reflect.DeepEqual(r.Problems, want) {
				t.Errorf("problems:\n got %q\nwant %q", r.Problems, want)
			}
			if len(r.Warnings) != 0 {
				t.Errorf("warnings: %q", r.Warnings)
			}
		})
	}
}

func TestAcceptsValidPatches(t *testing.T) {
	for _, tc := range []struct {
		name  string
		nodes []Node
	}{
		{"the program's built-ins on both roles", []Node{node("cp-1", "controlplane", chain{}), node("w-1", "worker", chain{})}},
		{"a VIP found by MAC address over DHCP", []Node{node("cp-1", "controlplane", chain{role: []Patch{{Key: keyVIP + " by MAC", Patch: vipByMACPatch}}})}},
		{"scheduling on control planes without workers", []Node{node("cp-1", "controlplane", chain{role: []Patch{{Key: keyRole + " scheduling", Patch: allowSchedule}}})}},
		{"time servers", []Node{node("w-1", "worker", chain{all: []Patch{{Key: keyAll, Patch: timeServers}}})}},
		{"taints registered by a worker's kubelet", []Node{node("w-1", "worker", chain{own: []Patch{{Key: keyOwn, Patch: `{"machine":{"kubelet":{"extraConfig":{"registerWithTaints":[{"key":"a","effect":"NoExecute"}]}}}}`}}})}},
		{"an EPHEMERAL VolumeConfig", []Node{node("w-1", "worker", chain{own: []Patch{{Key: keyOwn, Patch: `{"apiVersion":"v1alpha1","kind":"VolumeConfig","name":"EPHEMERAL","provisioning":{"diskSelector":{"match":"disk.transport == \"nvme\""},"maxSize":"50GiB"}}`}}})}},
		{"a JSON patch", []Node{node("w-1", "worker", chain{all: []Patch{{Key: keyAll, Patch: `[{"op":"add","path":"/machine/sysctls","value":{"vm.max_map_count":"262144"}}]`}}})}},
		{"a YAML patch", []Node{node("w-1", "worker", chain{all: []Patch{{Key: keyAll, Patch: "machine:\n  sysctls:\n    net.core.somaxconn: \"65535\"\n"}}})}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustJudge(t, input(tc.nodes...))
			if len(r.Problems) != 0 || len(r.Warnings) != 0 {
				t.Errorf("want nothing to report, got problems %q, warnings %q", r.Problems, r.Warnings)
			}
		})
	}
}

func TestBlame(t *testing.T) {
	for _, tc := range []struct {
		name     string
		in       Input
		problems []Finding
		warnings []Finding
	}{
		{
			"an error of the generated config is the program's",
			func() Input {
				in := input(node("cp-1", "controlplane", chain{}))
				in.Endpoint = "https://10.0.0.10:99999"
				return in
			}(),
			[]Finding{{GeneratedKey, "cp-1", "invalid machine config (Talos: invalid controlplane endpoint: port number must be between 1 and 65535)"}},
			nil,
		},
		{
			"an error stays with the patch that caused it, whatever comes after",
			input(node("cp-1", "controlplane", chain{all: []Patch{
				{Key: "talos-cluster:patches.all[0]", Patch: `{"machine":{"kubelet":{"nodeIP":{"validSubnets":["10.0.0.0/33"]}}}}`},
				{Key: "talos-cluster:patches.all[1]", Patch: timeServers},
			}})),
			[]Finding{{"talos-cluster:patches.all[0]", "cp-1", `invalid machine config (Talos: kubelet nodeIP subnet is not valid: "10.0.0.0/33")`}},
			nil,
		},
		{
			"an error a later patch fixes is no problem",
			input(node("cp-1", "controlplane", chain{all: []Patch{
				{Key: "talos-cluster:patches.all[0]", Patch: `{"machine":{"network":{"interfaces":[{"interface":"eth1","vip":{"ip":"10.0.0.300"}}]}}}`},
				{Key: "talos-cluster:patches.all[1]", Patch: `{"machine":{"network":{"interfaces":[{"interface":"eth1","vip":{"ip":"10.0.0.11"}}]}}}`},
			}})),
			nil, nil,
		},
		{
			"a refused patch is left out and the later ones are still judged",
			input(node("w-1", "worker", chain{own: []Patch{
				{Key: "talos-cluster:nodes[1].patches[0]", Patch: `{"machine":{"kubelett":{}}}`},
				{Key: "talos-cluster:nodes[1].patches[1]", Patch: `{"machine":{"network":{"interfaces":[{"interface":"eth1","addresses":["x"]}]}}}`},
			}})),
			[]Finding{
				{"talos-cluster:nodes[1].patches[0]", "w-1", "unknown key machine.kubelett (Talos: unknown keys found during decoding)"},
				{"talos-cluster:nodes[1].patches[1]", "w-1", `machine.network.interfaces (interface eth1) addresses: not an IP address or CIDR (Talos: [networking.os.device.addresses] "eth1": failed to parse IP address "x")`},
			},
			nil,
		},
		{
			"each bad label is blamed on its own patch",
			input(node("w-1", "worker", chain{all: []Patch{
				{Key: "talos-cluster:patches.all[0]", Patch: `{"machine":{"nodeLabels":{"a b":"x"}}}`},
				{Key: "talos-cluster:patches.all[1]", Patch: `{"machine":{"nodeLabels":{"c d":"x"}}}`},
			}})),
			[]Finding{
				{"talos-cluster:patches.all[0]", "w-1", `invalid machine config (Talos: invalid machine node labels: name "a b" is invalid)`},
				{"talos-cluster:patches.all[1]", "w-1", `invalid machine config (Talos: invalid machine node labels: name "c d" is invalid)`},
			},
			nil,
		},
		{
			"a deprecated field warns with its key",
			input(node("w-1", "worker", chain{all: []Patch{{Key: keyAll, Patch: `{"machine":{"install":{"extensions":[{"image":"ghcr.io/siderolabs/gvisor:20231214.0-v1.9.2"}]}}}`}}})),
			nil,
			[]Finding{{keyAll, "w-1", "deprecated setting (Talos: .machine.install.extensions is deprecated, please see https://docs.siderolabs.com/talos/latest/platform-specific-installations/boot-assets)"}},
		},
		{
			"a warning Talos gives only control planes names only them",
			input(
				node("cp-1", "controlplane", chain{all: []Patch{{Key: keyAll, Patch: `{"cluster":{"network":{"cni":{"name":"custom"}}}}`}}}),
				node("w-1", "worker", chain{all: []Patch{{Key: keyAll, Patch: `{"cluster":{"network":{"cni":{"name":"custom"}}}}`}}}),
			),
			nil,
			[]Finding{{keyAll, "cp-1", `questionable setting (Talos: "urls" field should not be empty for "custom" CNI)`}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustJudge(t, tc.in)
			if !reflect.DeepEqual(r.Problems, nonNil(tc.problems)) {
				t.Errorf("problems:\n got %q\nwant %q", r.Problems, tc.problems)
			}
			if !reflect.DeepEqual(r.Warnings, nonNil(tc.warnings)) {
				t.Errorf("warnings:\n got %q\nwant %q", r.Warnings, tc.warnings)
			}
		})
	}
}

func nonNil(f []Finding) []Finding {
	if f == nil {
		return []Finding{}
	}
	return f
}

func TestMergesNodes(t *testing.T) {
	typo := Patch{Key: keyAll, Patch: `{"machine":{"tyme":{}}}`}
	own := Patch{Key: "talos-cluster:nodes[1].patches[0]", Patch: `{"machine":{"kubelett":{}}}`}
	in := input(
		node("cp-1", "controlplane", chain{all: []Patch{typo}}),
		node("cp-2", "controlplane", chain{all: []Patch{typo}, own: []Patch{own}}),
		node("cp-3", "controlplane", chain{all: []Patch{typo}}),
		node("w-1", "worker", chain{all: []Patch{typo}}),
	)
	want := []Finding{
		{keyAll, "cp-1, cp-2, cp-3, w-1", "unknown key machine.tyme (Talos: unknown keys found during decoding)"},
		{own.Key, "cp-2", "unknown key machine.kubelett (Talos: unknown keys found during decoding)"},
	}
	if r := mustJudge(t, in); !reflect.DeepEqual(r.Problems, want) {
		t.Errorf("problems:\n got %q\nwant %q", r.Problems, want)
	}
}

func TestRefusesInputItCannotJudge(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Input)
		want   string
	}{
		{"no nodes", func(in *Input) { in.Nodes = nil }, "nodes is empty"},
		{"an unknown role", func(in *Input) { in.Nodes[0].Role = "master" }, `nodes[0].role "master" is not one of controlplane, worker`},
		{"a node twice", func(in *Input) { in.Nodes = append(in.Nodes, in.Nodes[0]) }, `nodes[1].name "cp-1" is used twice`},
		{"a patch without a key", func(in *Input) { in.Nodes[0].Patches[0].Key = "" }, "nodes[0].patches[0].key is empty"},
		{"a Talos version that is none", func(in *Input) { in.TalosVersion = "latest" }, `talosVersion "latest" is not a Talos release like v1.11.5`},
		{"a contract that is none", func(in *Input) { in.Contract = "1.x" }, `contract "1.x" is not a Talos release like v1.11.5`},
		{"a Kubernetes version that is none", func(in *Input) { in.KubernetesVersion = "latest" }, `kubernetesVersion "latest" is not a Kubernetes release like 1.34.1`},
		{"no cluster name", func(in *Input) { in.ClusterName = "" }, "clusterName is empty"},
		{"no endpoint", func(in *Input) { in.Endpoint = "" }, "endpoint is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := input(node("cp-1", "controlplane", chain{}))
			tc.change(&in)
			_, err := Judge(in)
			var bad *InputError
			if !errors.As(err, &bad) {
				t.Fatalf("want an InputError, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %q, want it to say %q", err, tc.want)
			}
		})
	}
}

func TestGeneratesForTheContract(t *testing.T) {
	for _, tc := range []struct{ talos, contract, want string }{
		{"v1.11.5", "", "v1.11"},
		{"v1.11.5", "v1.7.4", "v1.7"},
		{"v1.12.0", "v1.11.5", "v1.11"},
	} {
		t.Run(fmt.Sprintf("release %s, contract %q", tc.talos, tc.contract), func(t *testing.T) {
			in := input(node("cp-1", "controlplane", chain{}), node("w-1", "worker", chain{}))
			in.TalosVersion, in.Contract = tc.talos, tc.contract
			g, err := newGenerator(in)
			if err != nil {
				t.Fatal(err)
			}
			if got := g.input.Options.VersionContract.String(); got != tc.want {
				t.Errorf("generates for contract %s, want %s", got, tc.want)
			}
			if r := mustJudge(t, in); len(r.Problems)+len(r.Warnings) != 0 {
				t.Errorf("the built-ins should pass, got %q %q", r.Problems, r.Warnings)
			}
		})
	}
}

func TestKnowsEveryConfigDocumentKindOfTheProgramsTable(t *testing.T) {
	text, err := os.ReadFile("../../lib/versions.ts")
	if err != nil {
		t.Fatalf("reading the program's pins: %v", err)
	}
	src := string(text)
	m := regexp.MustCompile(`CONFIG_LIBRARY = \{ version: "(v[0-9.]+)", minor: "1\.(\d+)"`).FindStringSubmatch(src)
	if m == nil {
		t.Fatal("lib/versions.ts: CONFIG_LIBRARY not found")
	}
	if m[1] != LibraryVersion {
		t.Errorf("lib/versions.ts CONFIG_LIBRARY says %s, this module judges with %s", m[1], LibraryVersion)
	}
	libraryMinor, _ := strconv.Atoi(m[2])
	begin, end := strings.Index(src, "config-document-kinds:begin"), strings.Index(src, "config-document-kinds:end")
	if begin < 0 || end < begin {
		t.Fatal("lib/versions.ts: config-document-kinds markers not found")
	}
	kinds := regexp.MustCompile(`(?m)^\s*(\w+): "1\.(\d+)",$`).FindAllStringSubmatch(src[begin:end], -1)
	if len(kinds) == 0 {
		t.Fatal("lib/versions.ts: no document kinds")
	}
	for _, k := range append(kinds, []string{"", "NoSuchConfig", "99"}) {
		minor, _ := strconv.Atoi(k[2])
		_, err := configloader.NewFromBytes([]byte("apiVersion: v1alpha1\nkind: " + k[1] + "\n"))
		// A known kind may still fail validation (missing fields); only "not registered" means unknown.
		decodes := err == nil || !strings.Contains(err.Error(), "not registered")
		if want := minor <= libraryMinor; decodes != want {
			t.Errorf("%s: the table says Talos 1.%d, and this library (1.%d) decodes it: %v (%v)", k[1], minor, libraryMinor, decodes, err)
		}
	}
}
