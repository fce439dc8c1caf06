package provider_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi-go-provider/integration"
	presource "github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/property"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"

	simnode "talos-cluster/sim/node"
	"talos-cluster/sim/simtest"
	"talos-cluster/talosnode/kube"
	"talos-cluster/talosnode/node"
)

func rolloutURN(name string) presource.URN {
	return presource.NewURN("test", "talos-cluster", "", "talosnode:index:Rollout", name)
}

// rolloutLab is a bootstrapped control plane and a worker, and the Rollout's inputs for them as
// TalosCluster declares them.
type rolloutLab struct {
	lab     *simtest.Cluster
	cp, w   *simnode.Node
	configs [][]byte
}

func newRolloutLab(t *testing.T, cpAddress, workerAddress string) *rolloutLab {
	t.Helper()
	l := simtest.New(t)
	l.Trust.SetInstallers(simtest.Factory{Versions: []string{simtest.TalosVersion}})
	rl := &rolloutLab{lab: l, configs: [][]byte{
		l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, ""),
		l.Worker(t, simtest.KubernetesVersion, simtest.Installer, ""),
	}}
	rl.cp = l.Configured(t, cpAddress, rl.configs[0], simnode.WithRebootTime(100*time.Millisecond))
	rl.w = l.Configured(t, workerAddress, rl.configs[1], simnode.WithRebootTime(100*time.Millisecond))
	l.Bootstrap(t, rl.cp)
	return rl
}

func (rl *rolloutLab) inputs(t *testing.T, applyMode string) property.Map {
	nodes := []property.Value{}
	for i, n := range []*simnode.Node{rl.cp, rl.w} {
		name, role := "cp-1", "controlplane"
		if i == 1 {
			name, role = "worker-1", "worker"
		}
		nodes = append(nodes, property.New(map[string]property.Value{
			"name":                 property.New(name),
			"address":              property.New(n.Addr()),
			"role":                 property.New(role),
			"talosVersion":         property.New(simtest.TalosVersion),
			"schematicId":          property.New(simtest.Schematic),
			"installerImage":       property.New(simtest.Installer),
			"machineConfiguration": property.New(string(rl.configs[i])).WithSecret(true),
		}))
	}
	return property.NewMap(map[string]property.Value{
		"clientConfiguration": property.New(map[string]property.Value{
			"caCertificate":     property.New(rl.lab.Credentials.CACertificate),
			"clientCertificate": property.New(rl.lab.Credentials.ClientCertificate),
			"clientKey":         property.New(rl.lab.Credentials.ClientKey).WithSecret(true),
		}),
		"nodes":         property.New(nodes),
		"applyMode":     property.New(applyMode),
		"healthTimeout": property.New("10s"),
		// The lab runs no API server: Talos' own gates only (the checks through Kubernetes are
		// tested with a real one in TestTheRolloutDrainsThroughKubernetesUnlessTheStackTurnsItOff).
		"kubernetesChecks": property.New(false),
		"snapshotDir":      property.New(t.TempDir()),
		"snapshotPrefix":   property.New("lab"),
	})
}

// rolloutLifecycle is one Rollout through the engine's calls: the program's checked inputs and
// the recorded state.
type rolloutLifecycle struct {
	s       integration.Server
	program property.Map
	state   property.Map
}

func createRollout(t *testing.T, inputs property.Map) *rolloutLifecycle {
	t.Helper()
	s := server(t)
	checked, err := s.Check(p.CheckRequest{Urn: rolloutURN("lab-rollout"), Inputs: inputs})
	if err != nil || len(checked.Failures) > 0 {
		t.Fatalf("check: %v %v", err, checked.Failures)
	}
	created, err := s.Create(p.CreateRequest{Urn: rolloutURN("lab-rollout"), Properties: checked.Inputs})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return &rolloutLifecycle{s: s, program: checked.Inputs, state: created.Properties}
}

// refreshDiff is `up --refresh` up to the plan: Read, then the diff of the refreshed state
// against the program; the detailed diff's keys, sorted.
func (lc *rolloutLifecycle) refreshDiff(t *testing.T) (bool, []string) {
	t.Helper()
	read, err := lc.s.Read(p.ReadRequest{ID: "lab-rollout", Urn: rolloutURN("lab-rollout"), Properties: lc.state, Inputs: lc.program})
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	lc.state = read.Properties
	nodes := lc.state.Get("nodes").AsArray()
	for i := range nodes.Len() {
		if mc := nodes.Get(i).AsMap().Get("machineConfiguration"); !mc.Secret() {
			t.Errorf("refresh made nodes[%d].machineConfiguration plain", i)
		}
	}
	d, err := lc.s.Diff(p.DiffRequest{ID: "lab-rollout", Urn: rolloutURN("lab-rollout"), State: lc.state, Inputs: lc.program})
	if err != nil {
		t.Fatalf("diff: %v", err)
	}
	var keys []string
	for k, v := range d.DetailedDiff {
		if v.Kind != p.Update {
			t.Errorf("%s: %s, want an update (never a replace)", k, v.Kind)
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return d.HasChanges, keys
}

// update is the engine's update of the refreshed state to the program; it returns `changes`.
func (lc *rolloutLifecycle) update(t *testing.T) []string {
	t.Helper()
	resp, err := lc.s.Update(p.UpdateRequest{ID: "lab-rollout", Urn: rolloutURN("lab-rollout"), State: lc.state, Inputs: lc.program})
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	lc.state = resp.Properties
	var changes []string
	if c, ok := lc.state.GetOk("changes"); ok && c.IsArray() {
		for _, v := range c.AsArray().All {
			changes = append(changes, v.AsString())
		}
	}
	return changes
}

func TestRefreshShowsANodeChangedBehindTheStacksBackAndTheUpdateBringsItBack(t *testing.T) {
	rl := newRolloutLab(t, "127.0.10.61", "127.0.10.62")
	lc := createRollout(t, rl.inputs(t, "auto"))
	if changed, keys := lc.refreshDiff(t); changed {
		t.Fatalf("a refresh of a cluster as declared shows changes: %v", keys)
	}

	// By hand: the worker downgraded, the control plane's config edited.
	if err := rl.w.Set(context.Background(), simnode.Change{TalosVersion: "v1.11.4"}); err != nil {
		t.Fatal(err)
	}
	if err := rl.cp.Set(context.Background(), simnode.Change{ConfigPatch: "machine:\n  sysctls:\n    vm.max_map_count: \"262144\"\n"}); err != nil {
		t.Fatal(err)
	}
	changed, keys := lc.refreshDiff(t)
	if want := []string{"nodes[0].machineConfiguration", "nodes[1].talosVersion"}; !changed || !slices.Equal(keys, want) {
		t.Fatalf("diff after the hand changes: changes %t, %v; want %v", changed, keys, want)
	}
	if got := lc.state.Get("nodes").AsArray().Get(1).AsMap().Get("talosVersion").AsString(); got != "v1.11.4" {
		t.Errorf("refreshed worker-1 talosVersion %q, want the running v1.11.4", got)
	}

	mark := len(rl.lab.Trust.Timeline())
	changes := lc.update(t)
	if strings.Join(changes, "; ") != "cp-1: config; worker-1: v1.11.4 with schematic "+simtest.Schematic+" -> v1.11.5 with schematic "+simtest.Schematic {
		t.Errorf("changes %q", changes)
	}
	if s := rl.w.State(); s.TalosVersion != simtest.TalosVersion {
		t.Errorf("worker-1 runs %s after the update", s.TalosVersion)
	}
	if s := rl.cp.State(); s.Config != string(rl.configs[0]) {
		t.Errorf("cp-1 does not carry the declared config after the update")
	}
	var kinds []string
	for _, e := range rl.lab.Trust.Timeline()[mark:] {
		kinds = append(kinds, e.Event)
	}
	if !slices.Contains(kinds, simnode.TimelineSnapshot) || !slices.Contains(kinds, simnode.TimelineUpgrade) {
		t.Errorf("the update went around the gates: %v", kinds)
	}

	// A second up: nothing.
	mark = len(rl.lab.Trust.Timeline())
	if changed, keys := lc.refreshDiff(t); changed {
		t.Errorf("a refresh after the update shows changes: %v", keys)
	}
	if got := rl.lab.Trust.Timeline()[mark:]; len(got) != 0 {
		t.Errorf("a refresh changed the nodes: %v", got)
	}
}

func TestRefreshOfAStagedRolloutShowsNothingBeforeTheReboot(t *testing.T) {
	rl := newRolloutLab(t, "127.0.10.63", "127.0.10.64")
	lc := createRollout(t, rl.inputs(t, "staged"))
	rl.configs[1] = rl.lab.Worker(t, simtest.KubernetesVersion, simtest.Installer, "machine:\n  env:\n    HTTPS_PROXY: http://proxy:3128\n")
	lc.program = rl.inputs(t, "staged")
	checked, err := lc.s.Check(p.CheckRequest{Urn: rolloutURN("lab-rollout"), Inputs: lc.program})
	if err != nil {
		t.Fatal(err)
	}
	lc.program = checked.Inputs
	if changes := lc.update(t); strings.Join(changes, "; ") != "worker-1: config staged, active after the next reboot" {
		t.Errorf("changes %q", changes)
	}
	if changed, keys := lc.refreshDiff(t); changed {
		t.Errorf("a refresh after the staged rollout shows changes: %v", keys)
	}
}

func TestRefreshRecordsANodeThatDoesNotAnswerAsItWasAndReadsTheOthers(t *testing.T) {
	rl := newRolloutLab(t, "127.0.10.65", "127.0.10.66")
	lc := createRollout(t, rl.inputs(t, "auto"))
	rl.w.Stop()
	if err := rl.cp.Set(context.Background(), simnode.Change{TalosVersion: "v1.11.4"}); err != nil {
		t.Fatal(err)
	}
	// Its NodeState waits for it and fails the refresh naming it; the Rollout does not wait too.
	changed, keys := lc.refreshDiff(t)
	if want := []string{"nodes[0].talosVersion"}; !changed || !slices.Equal(keys, want) {
		t.Fatalf("diff: changes %t, %v; want %v", changed, keys, want)
	}
	if got := lc.state.Get("nodes").AsArray().Get(1).AsMap().Get("talosVersion").AsString(); got != simtest.TalosVersion {
		t.Errorf("the stopped worker is recorded as running %q", got)
	}
}

// rolloutInputs is a Rollout of the given nodes (name, address, role, release, config).
func rolloutInputs(l *simtest.Cluster, nodes ...[5]string) property.Map {
	list := make([]property.Value, len(nodes))
	for i, n := range nodes {
		list[i] = property.New(map[string]property.Value{
			"name": property.New(n[0]), "address": property.New(n[1]), "role": property.New(n[2]),
			"talosVersion": property.New(n[3]), "schematicId": property.New(simtest.Schematic),
			"installerImage":       property.New(simtest.InstallerOf(simtest.Schematic, n[3])),
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
	l := simtest.New(t)
	running := l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, "")
	n := l.Configured(t, "127.0.10.61", running)
	s := server(t)
	old := rolloutInputs(l, [5]string{"cp-1", n.Addr(), "controlplane", simtest.TalosVersion, string(running)})
	checked, err := s.Check(p.CheckRequest{Urn: rolloutURN("rollout"), Inputs: old})
	if err != nil || len(checked.Failures) > 0 {
		t.Fatalf("check: %v %v", checked.Failures, err)
	}
	created, err := s.Create(p.CreateRequest{Urn: rolloutURN("rollout"), Properties: checked.Inputs})
	if err != nil {
		t.Fatal(err)
	}
	// Kubernetes 1.35 on the Talos 1.11.5 the node runs: refused at preview, naming the node,
	// its release and the range it supports.
	next := rolloutInputs(l, [5]string{"cp-1", n.Addr(), "controlplane", simtest.TalosVersion,
		string(l.ControlPlane(t, "1.35.0", simtest.Installer, ""))})
	checked, err = s.Check(p.CheckRequest{Urn: rolloutURN("rollout"), Inputs: next, State: old})
	if err != nil || len(checked.Failures) > 0 {
		t.Fatalf("check: %v %v", checked.Failures, err)
	}
	_, err = s.Update(p.UpdateRequest{ID: created.ID, Urn: rolloutURN("rollout"), State: created.Properties, Inputs: checked.Inputs, DryRun: true})
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
	l := simtest.New(t)
	s := server(t)
	nodes := func(version string, controlPlanes int) property.Map {
		var list [][5]string
		for i := range controlPlanes {
			list = append(list, [5]string{"cp-" + string(rune('1'+i)), "127.0.10.7" + string(rune('1'+i)), "controlplane", version, "config"})
		}
		return rolloutInputs(l, append(list, [5]string{"worker-1", "127.0.10.79", "worker", version, "config"})...)
	}
	resp, err := s.Check(p.CheckRequest{Urn: rolloutURN("rollout"), State: nodes("v1.11.5", 2), Inputs: nodes("v1.11.6", 2)})
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
		resp, err := s.Check(p.CheckRequest{Urn: rolloutURN("rollout"), State: tc.old, Inputs: tc.next})
		if err != nil || len(resp.Failures) > 0 {
			t.Errorf("check: %v %v", resp.Failures, err)
		}
	}
}

func TestTheRolloutDrainsThroughKubernetesUnlessTheStackTurnsItOff(t *testing.T) {
	l := simtest.New(t)
	l.RealControlPlane(t, -1)
	l.Trust.SetInstallers(simtest.Factory{Versions: []string{simtest.TalosVersion}})
	hostname := func(name string) string {
		return "apiVersion: v1alpha1\nkind: HostnameConfig\nauto: off\nhostname: " + name + "\n"
	}
	cpConfig := l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, hostname("cp-1"))
	cp := l.Configured(t, "127.0.47.11", cpConfig, simnode.WithRebootTime(100*time.Millisecond))
	w := l.Configured(t, "127.0.47.21", l.Worker(t, simtest.KubernetesVersion, simtest.Installer, hostname("worker-1")), simnode.WithRebootTime(100*time.Millisecond))
	l.Bootstrap(t, cp)
	deadline := time.Now().Add(time.Minute)
	for cp.State().KubernetesNode == nil || w.State().KubernetesNode == nil {
		if time.Now().After(deadline) {
			t.Fatal("no Nodes a minute after the bootstrap")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// machine.env cannot change in place: Talos reboots the worker to apply it.
	workerWith := func(proxy string) string {
		return string(addPatch(t, l.Worker(t, simtest.KubernetesVersion, simtest.Installer, hostname("worker-1")), "machine:\n  env:\n    HTTPS_PROXY: "+proxy+"\n"))
	}
	inputs := func(workerConfig string, checks *bool) property.Map {
		m := rolloutInputs(l,
			[5]string{"cp-1", cp.Addr(), "controlplane", simtest.TalosVersion, string(cpConfig)},
			[5]string{"worker-1", w.Addr(), "worker", simtest.TalosVersion, workerConfig}).AsMap()
		m["healthTimeout"] = property.New("30s")
		m["snapshotDir"] = property.New(t.TempDir())
		if checks != nil {
			m["kubernetesChecks"] = property.New(*checks)
		}
		return property.NewMap(m)
	}
	lc := createRollout(t, inputs(string(l.Worker(t, simtest.KubernetesVersion, simtest.Installer, hostname("worker-1"))), nil))
	if got := lc.program.Get("kubernetesChecks"); !got.IsBool() || !got.AsBool() {
		t.Fatalf("kubernetesChecks after check: %v, want the default true", got)
	}
	// at updates the Rollout to the program and returns the worker's Node at each config apply.
	at := func(program property.Map) []simnode.KubeAtApply {
		t.Helper()
		checked, err := lc.s.Check(p.CheckRequest{Urn: rolloutURN("lab-rollout"), Inputs: program, State: lc.state})
		if err != nil || len(checked.Failures) > 0 {
			t.Fatalf("check: %v %v", err, checked.Failures)
		}
		lc.program = checked.Inputs
		applies := len(w.State().KubeAtApply)
		changes := lc.update(t)
		if !slices.Equal(changes, []string{"worker-1: config"}) {
			t.Errorf("changes %q, want the worker's config", changes)
		}
		return w.State().KubeAtApply[applies:]
	}

	off := false
	got := at(inputs(workerWith("http://proxy-a:3128"), &off))
	if len(got) != 1 || got[0].Unschedulable {
		t.Errorf("with kubernetesChecks false, worker-1 at its applies: %+v; want one apply, its Node left schedulable", got)
	}

	// The default: the Node is cordoned and drained before the apply that reboots it, then uncordoned.
	got = at(inputs(workerWith("http://proxy-b:3128"), nil))
	if len(got) != 1 || !got[0].Unschedulable || len(got[0].Pods) != 0 {
		t.Errorf("by default, worker-1 at its applies: %+v; want one apply with its Node cordoned and drained", got)
	}
	tc, err := node.Dial(t.Context(), node.Target{Name: "cp-1", Address: cp.Addr()}, node.Credentials(l.Credentials))
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close() //nolint:errcheck
	kubeconfig, err := tc.Kubeconfig(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	k, err := kube.New(string(kubeconfig))
	if err != nil {
		t.Fatal(err)
	}
	if info, err := k.Node(t.Context(), []string{"https://127.0.47.11:6443"}, "worker-1"); err != nil || info.Unschedulable {
		t.Errorf("worker-1's Node after its turn: %+v %v, want it uncordoned", info, err)
	}
}

func addPatch(t *testing.T, data []byte, patch string) []byte {
	t.Helper()
	p, err := configpatcher.LoadPatch([]byte(patch))
	if err != nil {
		t.Fatal(err)
	}
	out, err := configpatcher.Apply(configpatcher.WithBytes(data), []configpatcher.Patch{p})
	if err != nil {
		t.Fatal(err)
	}
	if data, err = out.Bytes(); err != nil {
		t.Fatal(err)
	}
	return data
}

func TestADrainTimeoutThatIsNoDurationIsRefusedAtCheck(t *testing.T) {
	l := simtest.New(t)
	inputs := rolloutInputs(l, [5]string{"cp-1", "127.0.10.71", "controlplane", simtest.TalosVersion, "config"}).AsMap()
	inputs["drainTimeout"] = property.New("soon")
	resp, err := server(t).Check(p.CheckRequest{Urn: rolloutURN("rollout"), Inputs: property.NewMap(inputs)})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Failures) != 1 || resp.Failures[0].Property != "drainTimeout" || !strings.Contains(resp.Failures[0].Reason, `"soon" is not a positive Go duration`) {
		t.Fatalf("failures %v, want drainTimeout named", resp.Failures)
	}
}

func TestAnUpgradePathOutOfOrderIsRefusedAtCheck(t *testing.T) {
	l := simtest.New(t)
	inputs := rolloutInputs(l, [5]string{"cp-1", "127.0.10.71", "controlplane", simtest.TalosVersion, "config"}).AsMap()
	inputs["upgradePath"] = property.New([]property.Value{property.New("v1.13.9"), property.New("v1.12.6"), property.New("1.14")})
	resp, err := server(t).Check(p.CheckRequest{Urn: rolloutURN("rollout"), Inputs: property.NewMap(inputs)})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range resp.Failures {
		got = append(got, f.Property+": "+f.Reason)
	}
	want := []string{"upgradePath: [1] v1.12.6 does not come after v1.13.9: list the releases oldest first", `upgradePath: [2] "1.14" is not a Talos release such as v1.13.9`}
	if !slices.Equal(got, want) {
		t.Fatalf("failures %q, want %q", got, want)
	}
}

func TestMembershipChangesTheRolloutCannotMakeSafelyAreRefusedAtCheck(t *testing.T) {
	l := simtest.New(t)
	s := server(t)
	stack := func(nodes ...[3]string) property.Map {
		var list [][5]string
		for _, n := range nodes {
			list = append(list, [5]string{n[0], n[1], n[2], simtest.TalosVersion, "config"})
		}
		return rolloutInputs(l, list...)
	}
	cp := func(name, address string) [3]string { return [3]string{name, address, "controlplane"} }
	worker := func(name, address string) [3]string { return [3]string{name, address, "worker"} }
	recorded := stack(cp("cp-1", "127.0.10.81"), cp("cp-2", "127.0.10.82"), cp("cp-3", "127.0.10.83"), worker("worker-1", "127.0.10.84"))
	for _, tc := range []struct {
		name string
		next property.Map
		want []string
	}{
		{"every control plane", stack(worker("worker-1", "127.0.10.84")), []string{"nodes: removes every control plane (cp-1, cp-2, cp-3)"}},
		{"two of three at once", stack(cp("cp-1", "127.0.10.81"), worker("worker-1", "127.0.10.84")),
			[]string{"nodes: takes 2 of the 3 control planes out of etcd at once (cp-2, cp-3)"}},
		{"a removed address declared again", stack(cp("cp-1", "127.0.10.81"), cp("cp-2", "127.0.10.82"), cp("cp-3", "127.0.10.83"), worker("worker-2", "127.0.10.84")),
			[]string{"nodes[3].address: worker-2 is declared at 127.0.10.84, the address of worker-1, which this update takes out of the cluster and resets"}},
	} {
		resp, err := s.Check(p.CheckRequest{Urn: rolloutURN("rollout"), State: recorded, Inputs: tc.next})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, f := range resp.Failures {
			got = append(got, f.Property+": "+f.Reason)
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s: failures %q, want %d", tc.name, got, len(tc.want))
			continue
		}
		for i, want := range tc.want {
			if !strings.HasPrefix(got[i], want) {
				t.Errorf("%s: failure %q, want %q", tc.name, got[i], want)
			}
		}
	}
	// One control plane, the bootstrap node, removed with a worker added: allowed.
	next := stack(cp("cp-2", "127.0.10.82"), cp("cp-3", "127.0.10.83"), worker("worker-1", "127.0.10.84"), worker("worker-2", "127.0.10.85"))
	if resp, err := s.Check(p.CheckRequest{Urn: rolloutURN("rollout"), State: recorded, Inputs: next}); err != nil || len(resp.Failures) > 0 {
		t.Errorf("check: %v %v", resp.Failures, err)
	}
}

// An etcd member no declared control plane accounts for (a control plane installed by hand) is
// drift: the refresh records it as a control plane the stack no longer declares, the diff names
// it, and the update takes it out of etcd; the next refresh is clean.
func TestRefreshShowsAnEtcdMemberNoDeclaredControlPlaneAccountsForAndTheUpdateRemovesIt(t *testing.T) {
	rl := newRolloutLab(t, "127.0.10.67", "127.0.10.68")
	lc := createRollout(t, rl.inputs(t, "auto"))
	if changed, keys := lc.refreshDiff(t); changed {
		t.Fatalf("a refresh of a cluster as declared shows changes: %v", keys)
	}
	stray := rl.lab.Configured(t, "127.0.10.69", rl.lab.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, "machine:\n  network:\n    hostname: cp-stray\n"),
		simnode.WithRebootTime(100*time.Millisecond))

	read, err := lc.s.Read(p.ReadRequest{ID: "lab-rollout", Urn: rolloutURN("lab-rollout"), Properties: lc.state, Inputs: lc.program})
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	lc.state = read.Properties
	nodes := lc.state.Get("nodes").AsArray()
	if nodes.Len() != 3 {
		t.Fatalf("refreshed nodes: %d, want the stray member recorded as a third", nodes.Len())
	}
	got := nodes.Get(2).AsMap()
	if got.Get("name").AsString() != "cp-stray" || got.Get("address").AsString() != "127.0.10.69" || got.Get("role").AsString() != "controlplane" {
		t.Errorf("the stray member recorded as %v", got)
	}
	d, err := lc.s.Diff(p.DiffRequest{ID: "lab-rollout", Urn: rolloutURN("lab-rollout"), State: lc.state, Inputs: lc.program})
	if err != nil {
		t.Fatal(err)
	}
	if _, named := d.DetailedDiff["nodes[2]"]; !d.HasChanges || !named || len(d.DetailedDiff) != 1 {
		t.Errorf("diff: changes %t, %v; want nodes[2] alone", d.HasChanges, d.DetailedDiff)
	}
	// A second refresh finds it again, the same.
	again, err := lc.s.Read(p.ReadRequest{ID: "lab-rollout", Urn: rolloutURN("lab-rollout"), Properties: lc.state, Inputs: lc.program})
	if err != nil || again.Properties.Get("nodes").AsArray().Len() != 3 {
		t.Fatalf("second refresh: %v, %v", err, again.Properties.Get("nodes"))
	}

	changes := lc.update(t)
	if len(changes) != 1 || !strings.HasPrefix(changes[0], "cp-stray: removed (health and etcd gates") {
		t.Errorf("changes %q", changes)
	}
	list, err := rl.lab.Client(t, rl.cp).EtcdMemberList(context.Background(), &machine.EtcdMemberListRequest{QueryLocal: true})
	if err != nil {
		t.Fatal(err)
	}
	if members := list.GetMessages()[0].GetMembers(); len(members) != 1 || members[0].GetHostname() == "cp-stray" {
		t.Errorf("etcd members after the update: %v", members)
	}
	deadline := time.Now().Add(20 * time.Second)
	for s := stray.State(); !s.Up || s.Configured; s = stray.State() {
		if time.Now().After(deadline) {
			t.Fatalf("the stray control plane after the update: up %t, configured %t; want maintenance mode", s.Up, s.Configured)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if changed, keys := lc.refreshDiff(t); changed {
		t.Errorf("a refresh after the update shows changes: %v", keys)
	}
}
