package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"talos-cluster/sim/factory"
)

const (
	factoryHost     = "127.0.0.1:18082"
	emptySchematic  = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
	testRebootTime  = 300 * time.Millisecond
	upgradedVersion = "v1.12.0"
)

// unreachableVersion cannot be installed over v1.11.5: Talos 1.14 upgrades only from 1.12.0
// (machinery compatibility/talos114 MinimumHostUpgradeVersion).
const unreachableVersion = "v1.14.1"

var goodImage = factoryHost + "/installer/" + emptySchematic + ":" + upgradedVersion

// sim is one simulation for a test: its own trust, a factory, nodes on 127.0.<net>.11 and up.
type sim struct {
	trust *Trust
	nodes []*Node
	cl    cluster
}

func newSim(t *testing.T, subnet, controlPlanes, workers int) sim {
	t.Helper()
	return newSimWith(t, subnet, controlPlanes, workers)
}

// newSimWith is newSim with further node options.
func newSimWith(t *testing.T, subnet, controlPlanes, workers int, opts ...Option) sim {
	t.Helper()
	trust := NewTrust()
	f := factory.New([]string{"v1.11.5", upgradedVersion, unreachableVersion}, nil)
	f.Host = factoryHost
	trust.SetInstallers(f)
	s := sim{trust: trust, cl: newCluster(t, "up"+strconv.Itoa(subnet))}
	for i := range controlPlanes + workers {
		n, err := New("127.0."+strconv.Itoa(subnet)+"."+strconv.Itoa(11+i), APIPort, "v1.11.5", bootedSchematic, trust, append([]Option{WithRebootTime(testRebootTime)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Stop)
		data := s.cl.controlPlane
		if i >= controlPlanes {
			data = s.cl.worker
		}
		if err := apply(t, insecure(t, n), n, data); err != nil {
			t.Fatal(err)
		}
		s.nodes = append(s.nodes, n)
	}
	if controlPlanes > 0 {
		bootstrap(t, s.nodes[0], s.cl)
	}
	return s
}

func (s sim) client(t *testing.T, n *Node) *client.Client { return mutual(t, n, s.cl.talosconfig) }

func bootID(t *testing.T, c *client.Client, n *Node) string {
	t.Helper()
	r, err := c.Read(ctx(t, n), bootIDPath)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read boot id: %v", err)
	}
	if !strings.HasSuffix(string(b), "\n") || len(b) != 37 {
		t.Fatalf("boot id %q", b)
	}
	return string(b)
}

// waitBoot waits until the node went down and is up again after its current boot.
func waitBoot(t *testing.T, n *Node, before string) State {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		s := n.State()
		if s.Up && s.BootID != before && s.Stage == "running" {
			return s
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("node %s did not reboot: %+v", n.address, n.State())
	return State{}
}

func kinds(s sim, node string) []string {
	var out []string
	for _, e := range s.trust.Timeline() {
		if e.Node == node && e.Event != TimelineApply && e.Event != TimelineEtcdLeader && e.Event != TimelineEtcdLeaderLost {
			out = append(out, e.Event+" "+e.Detail)
		}
	}
	return out
}

func TestUpgradeBootsTheNewVersionAndSchematicWithANewBootID(t *testing.T) {
	s := newSim(t, 11, 1, 0)
	n := s.nodes[0]
	c := s.client(t, n)
	before := bootID(t, c, n)
	installImage := n.State().InstallImage
	resp, err := c.UpgradeWithOptions(ctx(t, n), client.WithUpgradeImage(goodImage), client.WithUpgradeRebootMode(machine.UpgradeRequest_POWERCYCLE))
	if err != nil {
		t.Fatal(err)
	}
	if m := resp.GetMessages()[0]; m.GetAck() != "Upgrade request received" || m.GetActorId() == "" {
		t.Fatalf("reply %+v", m)
	}
	st := waitBoot(t, n, strings.TrimSpace(before))
	if st.TalosVersion != upgradedVersion || st.Schematic != emptySchematic || st.InstallImage != installImage {
		t.Fatalf("after upgrade: %+v", st)
	}
	c = s.client(t, n)
	if after := bootID(t, c, n); after == before || strings.TrimSpace(after) != st.BootID {
		t.Fatal("boot id unchanged")
	}
	v, err := c.Version(ctx(t, n))
	if err != nil || v.GetMessages()[0].GetVersion().GetTag() != upgradedVersion {
		t.Fatalf("version %v %v", v, err)
	}
	got := strings.Join(kinds(s, n.address.String()), "|")
	want := "up v1.11.5 " + bootedSchematic + "|upgrade " + goodImage + " POWERCYCLE|down upgrade|up " + upgradedVersion + " " + emptySchematic
	if got != want {
		t.Fatalf("timeline\n got %s\nwant %s", got, want)
	}
}

func TestUpgradeOutsideTalosUpgradePathFailsInTheInstallerAndBootsTheOldImage(t *testing.T) {
	s := newSim(t, 11, 1, 0)
	n := s.nodes[0]
	c := s.client(t, n)
	before := bootID(t, c, n)
	image := factoryHost + "/installer/" + emptySchematic + ":" + unreachableVersion
	// Machined accepts the request: the check is the installer's, inside the upgrade sequence.
	if _, err := c.UpgradeWithOptions(ctx(t, n), client.WithUpgradeImage(image)); err != nil {
		t.Fatal(err)
	}
	st := waitBoot(t, n, strings.TrimSpace(before))
	if st.TalosVersion != "v1.11.5" || st.Schematic != bootedSchematic {
		t.Fatalf("after a refused upgrade the node runs %s %s; want its old image", st.TalosVersion, st.Schematic)
	}
	got := strings.Join(kinds(s, n.address.String()), "|")
	want := "up v1.11.5 " + bootedSchematic + "|upgrade " + image + " DEFAULT" +
		"|upgrade-refused pre-flight checks failed: host version 1.11.5 is too old to upgrade to Talos 1.14.1" +
		"|down upgrade failed|up v1.11.5 " + bootedSchematic
	if got != want {
		t.Fatalf("timeline\n got %s\nwant %s", got, want)
	}
}

func TestUpgradeRefusesAnImageTheFactoryDoesNotServe(t *testing.T) {
	s := newSim(t, 11, 1, 0)
	n := s.nodes[1-1]
	c := s.client(t, n)
	for _, image := range []string{
		factoryHost + "/installer/" + strings.Repeat("ab", 32) + ":" + upgradedVersion,
		factoryHost + "/installer/" + emptySchematic + ":v1.9.0",
		"registry.invalid/installer:v1.12.0",
	} {
		_, err := c.UpgradeWithOptions(ctx(t, n), client.WithUpgradeImage(image))
		if err == nil || !strings.Contains(err.Error(), `error validating installer image "`+image+`": failed to pull image`) {
			t.Fatalf("%s: %v", image, err)
		}
	}
	time.Sleep(testRebootTime)
	if st := n.State(); !st.Up || st.TalosVersion != "v1.11.5" {
		t.Fatalf("state %+v", st)
	}
	for _, k := range kinds(s, n.address.String())[1:] {
		if !strings.HasPrefix(k, "upgrade-refused error validating installer image") {
			t.Fatalf("timeline: %v", kinds(s, n.address.String()))
		}
	}
}

func TestUpgradeOfAControlPlaneChecksEtcdAsTalos(t *testing.T) {
	upgrade := func(t *testing.T, s sim, n *Node, opts ...client.UpgradeOption) error {
		_, err := s.client(t, n).UpgradeWithOptions(ctx(t, n), append(opts, client.WithUpgradeImage(goodImage))...)
		return err
	}
	t.Run("two members", func(t *testing.T) {
		s := newSim(t, 12, 2, 1)
		err := upgrade(t, s, s.nodes[1])
		if err == nil || !strings.Contains(err.Error(), "error validating etcd for upgrade: etcd member count(2) is insufficient to maintain quorum if upgrade commences") {
			t.Fatal(err)
		}
		// A worker skips the etcd checks.
		if err := upgrade(t, s, s.nodes[2]); err != nil {
			t.Fatalf("worker: %v", err)
		}
		waitBoot(t, s.nodes[2], s.nodes[2].State().BootID)
		// So does force.
		if err := upgrade(t, s, s.nodes[1], client.WithUpgradeForce(true)); err != nil {
			t.Fatalf("forced: %v", err)
		}
	})
	t.Run("unhealthy member", func(t *testing.T) {
		s := newSim(t, 12, 3, 0)
		s.nodes[2].SetEtcdHealthy(false)
		err := upgrade(t, s, s.nodes[0])
		want := "etcd member " + formatID(s.nodes[2]) + " is not healthy; all members must be healthy to perform an upgrade"
		if err == nil || !strings.Contains(err.Error(), "error validating etcd for upgrade: "+want) {
			t.Fatal(err)
		}
		st, err := s.client(t, s.nodes[2]).EtcdStatus(ctx(t, s.nodes[2]))
		if err != nil || len(st.GetMessages()[0].GetMemberStatus().GetErrors()) == 0 {
			t.Fatalf("status of the unhealthy member: %v %v", st, err)
		}
		s.nodes[2].SetEtcdHealthy(true)
		if err := upgrade(t, s, s.nodes[0]); err != nil {
			t.Fatalf("healthy again: %v", err)
		}
	})
	t.Run("stopped member", func(t *testing.T) {
		s := newSim(t, 12, 3, 0)
		s.nodes[1].Stop()
		err := upgrade(t, s, s.nodes[0])
		if err == nil || !strings.Contains(err.Error(), "etcd member "+formatID(s.nodes[1])+" is not healthy") {
			t.Fatal(err)
		}
	})
	t.Run("member never joined", func(t *testing.T) {
		trust := NewTrust()
		cl := newCluster(t, "late")
		var nodes []*Node
		for i := range 3 {
			n, err := New("127.0.13."+strconv.Itoa(21+i), APIPort, "v1.11.5", bootedSchematic, trust)
			if err != nil {
				t.Fatal(err)
			}
			if err := n.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(n.Stop)
			if err := apply(t, insecure(t, n), n, cl.controlPlane); err != nil {
				t.Fatal(err)
			}
			nodes = append(nodes, n)
		}
		// Down before the cluster existed: its etcd never added itself (members.go), so etcd has
		// two members, which Talos refuses to upgrade.
		nodes[2].Stop()
		bootstrap(t, nodes[0], cl)
		_, err := mutual(t, nodes[0], cl.talosconfig).UpgradeWithOptions(ctx(t, nodes[0]), client.WithUpgradeImage("x/y:z"))
		if err == nil || !strings.Contains(err.Error(), "error validating installer image") {
			t.Fatalf("no installers: %v", err)
		}
		trust.SetInstallers(factoryFor())
		_, err = mutual(t, nodes[0], cl.talosconfig).UpgradeWithOptions(ctx(t, nodes[0]), client.WithUpgradeImage(goodImage))
		if err == nil || !strings.Contains(err.Error(), "etcd member count(2) is insufficient to maintain quorum if upgrade commences") {
			t.Fatal(err)
		}
	})
}

func factoryFor() *factory.Server {
	f := factory.New([]string{upgradedVersion}, nil)
	f.Host = factoryHost
	return f
}

func formatID(n *Node) string {
	return fmt.Sprintf("%016x", memberID(n.address.String()))
}

func TestABootFailureRollsBackToTheOldImage(t *testing.T) {
	// A worker needs a control plane to sign its certificate: one CP, upgrade the worker.
	s := newSim(t, 14, 1, 1)
	w := s.nodes[1]
	w.SetBootFails(true)
	before := w.State().BootID
	start := time.Now()
	if _, err := s.client(t, w).UpgradeWithOptions(ctx(t, w), client.WithUpgradeImage(goodImage)); err != nil {
		t.Fatal(err)
	}
	st := waitBoot(t, w, before)
	if st.TalosVersion != "v1.11.5" || st.Schematic != bootedSchematic {
		t.Fatalf("rolled back to %+v", st)
	}
	if d := time.Since(start); d < 2*testRebootTime {
		t.Fatalf("down only %s", d)
	}
	k := kinds(s, w.address.String())
	if last := k[len(k)-1]; last != "up v1.11.5 "+bootedSchematic+" rolled back" {
		t.Fatalf("timeline %v", k)
	}
}

func TestAutoAppliesInPlaceWhatTalosCanAndRebootsForTheRest(t *testing.T) {
	s := newSim(t, 13, 1, 0)
	n := s.nodes[0]
	c := s.client(t, n)
	apply := func(mode machine.ApplyConfigurationRequest_Mode, patch string) (*machine.ApplyConfigurationResponse, error) {
		return c.ApplyConfiguration(ctx(t, n), &machine.ApplyConfigurationRequest{Data: patched(t, []byte(n.State().Config), patch), Mode: mode})
	}
	boot := n.State().BootID
	resp, err := apply(machine.ApplyConfigurationRequest_AUTO, "machine:\n  sysctls:\n    net.core.somaxconn: \"65535\"\n  kubelet:\n    extraArgs:\n      max-pods: \"150\"\n")
	if err != nil || resp.GetMessages()[0].GetMode() != machine.ApplyConfigurationRequest_NO_REBOOT {
		t.Fatalf("in place: %v %v", resp, err)
	}
	if st := n.State(); st.BootID != boot || !strings.Contains(st.Config, "somaxconn") {
		t.Fatalf("sysctl apply rebooted or did not apply: %+v", st)
	}

	envPatch := "machine:\n  env:\n    HTTP_PROXY: http://proxy.invalid:3128\n"
	_, err = apply(machine.ApplyConfigurationRequest_NO_REBOOT, envPatch)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "this config change can't be applied in immediate mode\ndiff:\n") {
		t.Fatalf("no-reboot env: %v", err)
	}
	if strings.Contains(n.State().Config, "HTTP_PROXY") {
		t.Fatal("refused apply changed the config")
	}

	resp, err = apply(machine.ApplyConfigurationRequest_STAGED, envPatch)
	if err != nil || resp.GetMessages()[0].GetMode() != machine.ApplyConfigurationRequest_STAGED {
		t.Fatalf("staged: %v %v", resp, err)
	}
	if st := n.State(); strings.Contains(st.Config, "HTTP_PROXY") || !st.Staged {
		t.Fatal("staged config active before a reboot")
	}
	if _, err := c.RebootWithResponse(ctx(t, n)); err != nil {
		t.Fatal(err)
	}
	st := waitBoot(t, n, boot)
	if !strings.Contains(st.Config, "HTTP_PROXY") || st.Staged {
		t.Fatalf("staged config not active after the reboot: staged %t", st.Staged)
	}

	c = s.client(t, n)
	boot = st.BootID
	resp, err = apply(machine.ApplyConfigurationRequest_AUTO, "machine:\n  files:\n    - content: hi\n      path: /var/etc/hi\n      permissions: 0o644\n      op: create\n")
	if err != nil || resp.GetMessages()[0].GetMode() != machine.ApplyConfigurationRequest_REBOOT {
		t.Fatalf("auto with files: %v %v", resp, err)
	}
	st = waitBoot(t, n, boot)
	if !strings.Contains(st.Config, "/var/etc/hi") {
		t.Fatal("config applied with a reboot is not active after it")
	}
	var modes []string
	for _, e := range s.trust.Timeline() {
		if e.Event == TimelineApply || e.Event == TimelineDown {
			modes = append(modes, e.Event+" "+e.Detail)
		}
	}
	want := "apply NO_REBOOT changed|apply STAGED changed|down reboot|apply REBOOT changed|down apply"
	if got := strings.Join(modes, "|"); got != want {
		t.Fatalf("timeline\n got %s\nwant %s", got, want)
	}
}

func TestEventsStreamHelloThenTheUpgradeSequence(t *testing.T) {
	s := newSim(t, 13, 1, 1)
	w := s.nodes[1]
	c := s.client(t, w)
	stream, err := c.MachineClient.Events(ctx(t, w), &machine.EventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	hello, err := stream.Recv()
	if err != nil || hello.GetData().GetTypeUrl() != "" || len(hello.GetData().GetValue()) != 0 || hello.GetId() == "" {
		t.Fatalf("hello %v %v", hello, err)
	}
	resp, err := c.UpgradeWithOptions(ctx(t, w), client.WithUpgradeImage(goodImage))
	if err != nil {
		t.Fatal(err)
	}
	actor := resp.GetMessages()[0].GetActorId()
	var seen []string
	for {
		ev, err := stream.Recv()
		if err != nil {
			break // the node went down
		}
		seen = append(seen, ev.GetData().GetTypeUrl())
		if ev.GetData().GetTypeUrl() == "talos/runtime/machine.SequenceEvent" && ev.GetActorId() != actor {
			t.Fatalf("sequence event of actor %q", ev.GetActorId())
		}
	}
	joined := strings.Join(seen, " ")
	for _, want := range []string{"machine.SequenceEvent", "machine.PhaseEvent", "machine.TaskEvent", "machine.MachineStatusEvent"} {
		if !strings.Contains(joined, want) {
			t.Fatalf("no %s in %v", want, seen)
		}
	}
	waitBoot(t, w, "")
	// After the boot, a replay of everything shows the boot sequence and RUNNING + ready.
	c = s.client(t, w)
	ch := make(chan client.EventResult)
	wctx, cancel := context.WithCancel(ctx(t, w))
	defer cancel()
	if err := c.EventsWatchV2(wctx, ch, client.WithTailEvents(-1)); err != nil {
		t.Fatal(err)
	}
	var stages []string
	for res := range ch {
		if res.Error != nil {
			t.Fatal(res.Error)
		}
		switch ev := res.Event.Payload.(type) {
		case *machine.SequenceEvent:
			stages = append(stages, ev.GetSequence()+" "+ev.GetAction().String())
		case *machine.MachineStatusEvent:
			stages = append(stages, ev.GetStage().String())
			if ev.GetStage() == machine.MachineStatusEvent_RUNNING && ev.GetStatus().GetReady() {
				cancel()
			}
		}
		if wctx.Err() != nil {
			break
		}
	}
	if got := strings.Join(stages, ","); got != "boot START,BOOTING,boot STOP,RUNNING" {
		t.Fatalf("replayed %s", got)
	}
}

func TestEtcdAPIsOnControlPlanesOnly(t *testing.T) {
	s := newSim(t, 14, 3, 1)
	cp, w := s.nodes[1], s.nodes[3]
	c := s.client(t, cp)
	members, err := c.EtcdMemberList(ctx(t, cp), &machine.EtcdMemberListRequest{QueryLocal: true})
	if err != nil {
		t.Fatal(err)
	}
	ms := members.GetMessages()[0].GetMembers()
	if len(ms) != 3 || ms[0].GetHostname() != s.nodes[0].State().Hostname || ms[1].GetPeerUrls()[0] != "https://"+cp.address.String()+":2380" {
		t.Fatalf("members %v", ms)
	}
	st, err := c.EtcdStatus(ctx(t, cp))
	if err != nil {
		t.Fatal(err)
	}
	ms0 := st.GetMessages()[0].GetMemberStatus()
	if ms0.GetMemberId() != memberID(cp.address.String()) || ms0.GetLeader() == 0 || len(ms0.GetErrors()) != 0 {
		t.Fatalf("status %v", ms0)
	}
	wc := s.client(t, w)
	for name, call := range map[string]func() error{
		"member list":     func() error { _, err := wc.EtcdMemberList(ctx(t, w), &machine.EtcdMemberListRequest{}); return err },
		"etcd status":     func() error { _, err := wc.EtcdStatus(ctx(t, w)); return err },
		"etcd alarm list": func() error { _, err := wc.EtcdAlarmList(ctx(t, w)); return err },
	} {
		err := call()
		if status.Code(err) != codes.Unimplemented || status.Convert(err).Message() != name+" is only available on control plane nodes" {
			t.Fatalf("%s on a worker: %v", name, err)
		}
	}
	// Two of three down: no leader.
	s.nodes[0].Stop()
	s.nodes[2].Stop()
	if _, err := c.EtcdMemberList(ctx(t, cp), &machine.EtcdMemberListRequest{}); err == nil || !strings.Contains(err.Error(), "etcdserver: no leader") {
		t.Fatalf("without quorum: %v", err)
	}
	services, err := c.ServiceList(ctx(t, cp))
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range services.GetMessages()[0].GetServices() {
		events := svc.GetEvents().GetEvents()
		if events[len(events)-1].GetState() != "Running" {
			t.Fatalf("service %s last event %v", svc.GetId(), events)
		}
	}
}

func TestEtcdSnapshotIsABoltDatabaseWithItsHash(t *testing.T) {
	s := newSim(t, 14, 1, 0)
	n := s.nodes[0]
	r, err := s.client(t, n).EtcdSnapshot(ctx(t, n), &machine.EtcdSnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(data)%512 != 32 {
		t.Fatalf("size %d %% 512 != 32", len(data))
	}
	db, sum := data[:len(data)-32], data[len(data)-32:]
	if h := sha256.Sum256(db); !bytes.Equal(h[:], sum) {
		t.Fatal("trailer is not the sha256 of the database")
	}
	path := filepath.Join(t.TempDir(), "snap.db")
	if err := os.WriteFile(path, db, 0o600); err != nil {
		t.Fatal(err)
	}
	bdb, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	if err := bdb.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		if tx.Bucket([]byte("key")).Stats().KeyN == 0 || string(tx.Bucket([]byte("meta")).Get([]byte("storageVersion"))) != "3.6.0" {
			t.Fatal("missing keys or meta")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if k := kinds(s, n.address.String()); !strings.HasPrefix(k[len(k)-1], "snapshot ") {
		t.Fatalf("timeline %v", k)
	}
}
