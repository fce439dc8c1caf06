package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"talos-cluster/sim/factory"
	"talos-cluster/sim/node"
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
		{"/nodes/127.0.36.201/etcd", `{"healthy": false}`, http.StatusNoContent},
		{"/nodes/127.0.36.201/etcd", `{"healthy": false, "x": 1}`, http.StatusBadRequest},
	} {
		code, body := post(tc.path, tc.body)
		if code != tc.code {
			t.Fatalf("%s %s: %d %s", tc.path, tc.body, code, body)
		}
		if code == http.StatusBadRequest && !strings.Contains(body, "true|false}") {
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
