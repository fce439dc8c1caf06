package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

const good = `{"clusterName":"lab","endpoint":"https://10.0.0.10:6443","talosVersion":"v1.11.5","contract":"","kubernetesVersion":"1.34.1","nodes":[
 {"name":"cp-1","role":"controlplane","patches":[{"key":"talos-cluster:patches.all[0]","patch":"{\"machine\":{\"tyme\":{}}}"}]},
 {"name":"w-1","role":"worker","patches":[{"key":"talos-cluster:patches.all[0]","patch":"{\"machine\":{\"tyme\":{}}}"},
  {"key":"talos-cluster:nodes[1].patches[0]","patch":"{\"cluster\":{\"network\":{\"cni\":{\"name\":\"custom\",\"urls\":[\"https://example.com/cni.yaml?a=1&b=<2>\"]}}}}"}]}]}`

func TestContract(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stdin  string
		code   int
		stdout string
		stderr string
	}{
		{
			name:  "problems are judged, not failed",
			stdin: good,
			code:  0,
			stdout: `{"problems":[{"key":"talos-cluster:patches.all[0]","node":"cp-1, w-1",` +
				`"message":"unknown key machine.tyme (Talos: unknown keys found during decoding)"}],"warnings":[]}` + "\n",
		},
		{
			name:   "a clean cluster gives empty lists, not null",
			stdin:  strings.ReplaceAll(good, `{\"machine\":{\"tyme\":{}}}`, `{\"machine\":{\"sysctls\":{\"a\":\"1\"}}}`),
			code:   0,
			stdout: `{"problems":[],"warnings":[]}` + "\n",
		},
		{name: "no input", stdin: "", code: 2, stderr: "no input on stdin"},
		{name: "not JSON", stdin: "clusterName: lab", code: 2, stderr: "input is not the expected JSON"},
		{name: "a misspelt field", stdin: strings.Replace(good, `"clusterName"`, `"clusterNme"`, 1), code: 2, stderr: `unknown field "clusterNme"`},
		{name: "two objects", stdin: good + good, code: 2, stderr: "more than one JSON value"},
		{name: "input that cannot be judged", stdin: strings.Replace(good, `"worker"`, `"master"`, 1), code: 2, stderr: `nodes[1].role "master" is not one of controlplane, worker`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(strings.NewReader(tc.stdin), &stdout, &stderr)
			if code != tc.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.code, stderr.String())
			}
			if tc.stdout != "" && stdout.String() != tc.stdout {
				t.Errorf("stdout:\n got %s\nwant %s", stdout.String(), tc.stdout)
			}
			if tc.stderr != "" && !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr %q, want it to say %q", stderr.String(), tc.stderr)
			}
			if code != 0 && stdout.Len() != 0 {
				t.Errorf("a refused input wrote to stdout: %q", stdout.String())
			}
			if code == 0 && !json.Valid(stdout.Bytes()) {
				t.Errorf("stdout is not JSON: %q", stdout.String())
			}
		})
	}
}
