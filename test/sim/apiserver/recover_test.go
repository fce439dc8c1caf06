package apiserver

import (
	"bytes"
	"context"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	talosmachine "github.com/siderolabs/talos/pkg/machinery/config/machine"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"talos-cluster/sim/internal/toolbin"
	"talos-cluster/sim/node"
	"talos-cluster/sim/simtest"
)

// poll waits up to a minute for cond, failing with what it last saw.
func poll(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ok, seen := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within a minute: %s (last seen: %s)", what, seen)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestRecoveryRestoresTheRealEtcdFromItsSnapshot: Talos v1.11.5's disaster recovery against the
// real control plane. A ConfigMap is created, a snapshot taken through the Talos API (the real
// etcd's), a second ConfigMap created; every control plane is reset with EPHEMERAL wiped, which
// stops the real etcd and kube-apiserver; EtcdRecover and Bootstrap{recover_etcd} on one control
// plane restore the real etcd from the upload, and the first ConfigMap is back, the second not;
// the other control planes join the restored member. Nodes: 127.0.18.3x.
func TestRecoveryRestoresTheRealEtcdFromItsSnapshot(t *testing.T) {
	cluster := simtest.NewCluster(t, "sim-recover", "https://127.0.18.31:6443")
	cluster.RealControlPlane(t, -1)
	var cps []*node.Node
	for i, address := range []string{"127.0.18.31", "127.0.18.32", "127.0.18.33"} {
		n := cluster.NodeOn(t, address, toolbin.FreePort(t, address), "v1.11.5", intelUcodeSchematic)
		data := cluster.Config(t, talosmachine.TypeControlPlane, kubernetesVersion, "")
		simtest.Apply(t, n, simtest.Patched(t, data, "machine:\n  network:\n    hostname: cp-"+strconv.Itoa(i+1)+"\n"))
		cps = append(cps, n)
	}
	cp1 := cps[0]
	talos := cluster.Client(t, cp1)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	if err := talos.Bootstrap(ctx, &machine.BootstrapRequest{}); err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := talos.Kubeconfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	restConfig, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	restConfig.Timeout = 5 * time.Second
	admin := kubernetes.NewForConfigOrDie(restConfig)
	configMap := func(name string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Data: map[string]string{"made": name}}
	}
	poll(t, "the ConfigMap is created", func() (bool, string) {
		_, err := admin.CoreV1().ConfigMaps("default").Create(ctx, configMap("before-snapshot"), metav1.CreateOptions{})
		return err == nil, errString(err)
	})

	r, err := talos.EtcdSnapshot(ctx, &machine.EtcdSnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading the snapshot: %v", err)
	}
	if _, err := admin.CoreV1().ConfigMaps("default").Create(ctx, configMap("after-snapshot"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	mark := len(cluster.Trust.Timeline())
	for _, n := range cps {
		if _, err := cluster.Client(t, n).MachineClient.Reset(ctx, &machine.ResetRequest{
			Reboot: true, SystemPartitionsToWipe: []*machine.ResetPartitionSpec{{Label: "EPHEMERAL", Wipe: true}},
		}); err != nil {
			t.Fatalf("reset %s: %v", n.Addr(), err)
		}
	}
	poll(t, "every control plane is back with its etcd waiting for a bootstrap", func() (bool, string) {
		lost := slices.ContainsFunc(cluster.Trust.Timeline()[mark:], func(e node.TimelineEntry) bool { return e.Event == node.TimelineEtcdLost })
		for _, n := range cps {
			if st := n.State(); !st.Up || st.Stage != "running" {
				return false, n.Addr() + " " + st.Stage
			}
		}
		return lost, "no etcd-lost entry"
	})
	if _, err := admin.CoreV1().ConfigMaps("default").Get(ctx, "before-snapshot", metav1.GetOptions{}); err == nil {
		t.Fatal("the API server still answers after every control plane's etcd was wiped")
	}

	if _, err := talos.EtcdRecover(ctx, bytes.NewReader(snap)); err != nil {
		t.Fatalf("EtcdRecover: %v", err)
	}
	if err := talos.Bootstrap(ctx, &machine.BootstrapRequest{RecoverEtcd: true}); err != nil {
		t.Fatalf("Bootstrap{recover_etcd}: %v", err)
	}
	poll(t, "the ConfigMap from before the snapshot is back", func() (bool, string) {
		cm, err := admin.CoreV1().ConfigMaps("default").Get(ctx, "before-snapshot", metav1.GetOptions{})
		return err == nil && cm.Data["made"] == "before-snapshot", errString(err)
	})
	if _, err := admin.CoreV1().ConfigMaps("default").Get(ctx, "after-snapshot", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the ConfigMap made after the snapshot: %v, want NotFound", err)
	}
	poll(t, "the other control planes join the restored member", func() (bool, string) {
		resp, err := talos.EtcdMemberList(ctx, &machine.EtcdMemberListRequest{})
		if err != nil {
			return false, err.Error()
		}
		var names []string
		for _, m := range resp.GetMessages()[0].GetMembers() {
			if !m.GetIsLearner() {
				names = append(names, m.GetHostname())
			}
		}
		slices.Sort(names)
		return slices.Equal(names, []string{"cp-1", "cp-2", "cp-3"}), strings.Join(names, ",")
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
