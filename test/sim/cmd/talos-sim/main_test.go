package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"talos-cluster/sim/factory"
	"talos-cluster/sim/node"
)

func TestControlStopsStartsAndReportsNodes(t *testing.T) {
	n, err := node.New("127.0.6.11", node.APIPort, "v1.11.5", IntelUcodeSchematic, node.NewTrust())
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	srv := httptest.NewServer(control(map[string]*node.Node{"127.0.6.11": n}, []string{"127.0.6.11"}, factory.New(nil, nil), node.NewTrust()))
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
	if code := post("/nodes/127.0.6.11/stop"); code != http.StatusNoContent || state().Nodes[0].Up {
		t.Fatalf("stop: %d %+v", code, state())
	}
	if code := post("/nodes/127.0.6.11/start"); code != http.StatusNoContent || !state().Nodes[0].Up {
		t.Fatalf("start: %d %+v", code, state())
	}
	if code := post("/nodes/127.0.6.99/stop"); code != http.StatusNotFound {
		t.Fatalf("unknown node: %d", code)
	}
	if code := post("/nodes/127.0.6.11/reboot"); code != http.StatusBadRequest {
		t.Fatalf("unknown action: %d", code)
	}
}

func TestListenersRefuseNonLoopbackAddresses(t *testing.T) {
	if _, err := loopbackListen("0.0.0.0:18080"); err == nil {
		t.Fatal("listened on a non-loopback address")
	}
}

func TestControlSetChangesANodeByHandAndRefusesBadInput(t *testing.T) {
	n, err := node.New("127.0.6.12", node.APIPort, "v1.11.5", IntelUcodeSchematic, node.NewTrust())
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	srv := httptest.NewServer(control(map[string]*node.Node{"127.0.6.12": n}, []string{"127.0.6.12"}, factory.New(nil, nil), node.NewTrust()))
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
			resp, err := http.Post(srv.URL+"/nodes/127.0.6.12/set", "application/json", strings.NewReader(tc.body))
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
