package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
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
	srv := httptest.NewServer(control(map[string]*node.Node{"127.0.6.11": n}, []string{"127.0.6.11"}, factory.New(nil, nil)))
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
