package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"talos-cluster/sim/factory"
	"talos-cluster/sim/node"
	"talos-cluster/sim/simtest"
)

func TestControlStopsStartsAndReportsNodes(t *testing.T) {
	n, err := node.New("127.0.36.11", node.APIPort, "v1.11.5", IntelUcodeSchematic, node.NewTrust())
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	srv := httptest.NewServer(control(map[string]*node.Node{"127.0.36.11": n}, []string{"127.0.36.11"}, factory.New(nil, nil), node.NewTrust()))
	t.Cleanup(srv.Close)

	post := func(path string) int {
		resp, err := http.Post(srv.URL+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	state := func() simState {
		resp, err := http.Get(srv.URL + "/state")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var s simState
		if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}

	if links := state().Nodes[0].Links; len(links) != 1 || links[0] != "enp1s0" {
		t.Fatalf("links: %v", links)
	}
	if code := post("/nodes/127.0.36.11/stop"); code != http.StatusNoContent || state().Nodes[0].Up {
		t.Fatalf("stop: %d %+v", code, state())
	}
	if code := post("/nodes/127.0.36.11/start"); code != http.StatusNoContent || !state().Nodes[0].Up {
		t.Fatalf("start: %d %+v", code, state())
	}
	if code := post("/nodes/127.0.36.99/stop"); code != http.StatusNotFound {
		t.Fatalf("unknown node: %d", code)
	}
	if code := post("/nodes/127.0.36.11/reboot"); code != http.StatusBadRequest {
		t.Fatalf("unknown action: %d", code)
	}
}

func TestListenersRefuseNonLoopbackAddresses(t *testing.T) {
	if _, err := loopbackListen("0.0.0.0:18080"); err == nil {
		t.Fatal("listened on a non-loopback address")
	}
}

func TestControlSetChangesANodeByHandAndRefusesBadInput(t *testing.T) {
	n, err := node.New("127.0.36.12", node.APIPort, "v1.11.5", IntelUcodeSchematic, node.NewTrust())
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	srv := httptest.NewServer(control(map[string]*node.Node{"127.0.36.12": n}, []string{"127.0.36.12"}, factory.New(nil, nil), node.NewTrust()))
	t.Cleanup(srv.Close)

	for _, tc := range []struct {
		name, body string
		code       int
		message    string
	}{
		{"version", `{"talosVersion": "v1.10.7"}`, http.StatusNoContent, ""},
		{"not JSON", `talosVersion=v1.10.7`, http.StatusBadRequest, "set: body must be JSON"},
		{"unknown field", `{"version": "v1.10.7"}`, http.StatusBadRequest, `unknown field "version"`},
		{"bad version", `{"talosVersion": "latest"}`, http.StatusBadRequest, `set: bad change: talosVersion "latest" is not a Talos release tag like v1.11.5`},
		{"patch in maintenance", `{"configPatch": "machine: {}"}`, http.StatusBadRequest, "has no config to patch (maintenance mode)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Post(srv.URL+"/nodes/127.0.36.12/set", "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.code || !strings.Contains(string(body), tc.message) {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, body, tc.code, tc.message)
			}
		})
	}
	if v := n.State().TalosVersion; v != "v1.10.7" {
		t.Fatalf("talosVersion = %s", v)
	}
}

func TestControlFaultsAndTimeline(t *testing.T) {
	trust := node.NewTrust()
	n, err := node.New("127.0.36.201", node.APIPort, "v1.11.5", IntelUcodeSchematic, trust, node.WithRebootTime(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	srv := httptest.NewServer(control(map[string]*node.Node{"127.0.36.201": n}, []string{"127.0.36.201"}, factory.New(nil, nil), trust))
	t.Cleanup(srv.Close)
	post := func(path, body string) (int, string) {
		resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		path, body string
		code       int
	}{
		{"/nodes/127.0.36.201/fault", `{"bootFails": true}`, http.StatusNoContent},
		{"/nodes/127.0.36.201/fault", `{"bootFail": true}`, http.StatusBadRequest},
		{"/nodes/127.0.36.201/fault", `{}`, http.StatusBadRequest},
		{"/nodes/127.0.36.201/fault", `{"bootFails": "yes"}`, http.StatusBadRequest},
		{"/nodes/127.0.36.201/fault", `{"kubeletNeverReady": true}`, http.StatusNoContent},
		{"/nodes/127.0.36.201/fault", `{"staticPodFails": "kube-proxy"}`, http.StatusBadRequest},
		{"/nodes/127.0.36.201/fault", `{"staticPodFails": "kube-apiserver"}`, http.StatusNoContent},
		{"/nodes/127.0.36.201/etcd", `{"healthy": false}`, http.StatusNoContent},
		{"/nodes/127.0.36.201/etcd", `{"healthy": false, "x": 1}`, http.StatusBadRequest},
	} {
		code, body := post(tc.path, tc.body)
		if code != tc.code {
			t.Fatalf("%s %s: %d %s", tc.path, tc.body, code, body)
		}
		if code == http.StatusBadRequest && !strings.Contains(body, "body must be JSON") {
			t.Fatalf("%s %s: %s", tc.path, tc.body, body)
		}
	}
	post("/nodes/127.0.36.201/stop", "")
	post("/nodes/127.0.36.201/start", "")
	resp, err := http.Get(srv.URL + "/state")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw struct {
		Nodes    []map[string]any `json:"nodes"`
		Timeline []struct {
			At     time.Time `json:"at"`
			Node   string    `json:"node"`
			Event  string    `json:"event"`
			Detail string    `json:"detail"`
		} `json:"timeline"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	st := raw.Nodes[0]
	if fails, _ := st["staticPodFails"].([]any); st["kubeletNeverReady"] != true || len(fails) != 1 || fails[0] != "kube-apiserver" {
		t.Fatalf("faults in state %v", st)
	}
	if st["bootFails"] != true || st["etcdHealthy"] != false || st["stage"] != "maintenance" || st["bootId"] == "" || st["schematic"] != IntelUcodeSchematic {
		t.Fatalf("state %v", st)
	}
	var events []string
	for _, e := range raw.Timeline {
		events = append(events, e.Event+" "+e.Detail)
	}
	want := "up v1.11.5 " + IntelUcodeSchematic + "|down stop|up v1.11.5 " + IntelUcodeSchematic
	if got := strings.Join(events, "|"); got != want {
		t.Fatalf("timeline\n got %s\nwant %s", got, want)
	}
}

// /state lists each bootstrapped cluster's etcd members: a control plane that joined later is a
// learner until etcd promotes it.
func TestStateListsEachClustersEtcdMembers(t *testing.T) {
	l := simtest.New(t)
	cp1 := l.Configured(t, "127.0.36.21", l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, "machine:\n  network:\n    hostname: cp-1\n"))
	srv := httptest.NewServer(control(map[string]*node.Node{"127.0.36.21": cp1}, []string{"127.0.36.21"}, factory.New(nil, nil), l.Trust))
	t.Cleanup(srv.Close)
	etcd := func() string {
		t.Helper()
		resp, err := http.Get(srv.URL + "/state")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var s struct {
			Etcd json.RawMessage `json:"etcd"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
			t.Fatal(err)
		}
		return string(s.Etcd)
	}
	if got := etcd(); got != "[]" {
		t.Fatalf("etcd before the bootstrap: %s, want []", got)
	}
	l.Bootstrap(t, cp1)
	l.Configured(t, "127.0.36.22", l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, "machine:\n  network:\n    hostname: cp-2\n"), node.WithEtcdPromoteTime(time.Hour))
	var clusters []node.EtcdCluster
	if err := json.Unmarshal([]byte(etcd()), &clusters); err != nil {
		t.Fatal(err)
	}
	if len(clusters) != 1 || !strings.HasPrefix(clusters[0].Cluster, "lab/") {
		t.Fatalf("clusters %+v, want lab's", clusters)
	}
	var got []string
	for _, m := range clusters[0].Members {
		if len(m.ID) != 16 {
			t.Errorf("member id %q, want 16 hex digits", m.ID)
		}
		got = append(got, fmt.Sprintf("%s %s learner=%t", m.Name, m.Address, m.Learner))
	}
	if want := []string{"cp-1 127.0.36.21 learner=false", "cp-2 127.0.36.22 learner=true"}; !slices.Equal(got, want) {
		t.Errorf("members %v, want %v", got, want)
	}
}
