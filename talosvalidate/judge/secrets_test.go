package judge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
)

// Patches that make Talos quote a generated secret: JSON patches copying each one into fields
// Talos checks (labels, a VIP, a duration), whole or shortened ("`abcdefg...`").
func leakingPatches() []Patch {
	var out []Patch
	for _, from := range []string{
		"/cluster/token", "/cluster/secretboxEncryptionSecret", "/cluster/id", "/cluster/secret",
		"/machine/token", "/cluster/ca/key", "/cluster/ca/crt", "/machine/ca/key",
		"/cluster/serviceAccount/key", "/cluster/etcd/ca/key", "/cluster/aggregatorCA/key",
	} {
		for _, to := range []string{"/machine/nodeLabels/x", "/machine/network/interfaces/0/vip/ip", "/machine/time/bootTimeout", "/machine/nodeAnnotations/x"} {
			out = append(out, Patch{
				Key: fmt.Sprintf("copy %s to %s", from, to),
				Patch: fmt.Sprintf(`[{"op":"add","path":"/machine/network/interfaces","value":[{"interface":"eth1","vip":{"ip":"10.0.0.11"}}]},`+
					`{"op":"add","path":"/machine/time","value":{}},{"op":"copy","from":%q,"path":%q}]`, from, to),
			})
		}
	}
	return out
}

func TestThrowawaySecretsNeverAppear(t *testing.T) {
	var nodes []Node
	for i, p := range leakingPatches() {
		nodes = append(nodes, Node{Name: fmt.Sprintf("cp-%d", i), Role: "controlplane", Patches: []Patch{p}})
	}
	in := input(nodes...)
	g, err := newGenerator(in)
	if err != nil {
		t.Fatal(err)
	}
	r, err := judgeWith(g, in)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if len(r.Problems) < 10 {
		t.Fatalf("the patches should make Talos quote secrets in many problems, got %d: %s", len(r.Problems), out)
	}
	if !strings.Contains(out, "<redacted>") {
		t.Errorf("nothing was redacted; the test no longer provokes a quote of a secret: %s", out)
	}
	for _, s := range g.secrets {
		if strings.Contains(out, s) {
			t.Errorf("the output carries a throwaway secret")
		}
	}
	// Talos shortens what it quotes to 7 characters ("`abcdefg...`"): no 7 random characters
	// of a secret either (windows inside it: a PEM header's base64 starts every key alike).
	for _, s := range g.opaque {
		for _, at := range []int{len(s) / 4, len(s) / 2} {
			if part := s[at:min(len(s), at+7)]; strings.Contains(out, part) {
				t.Errorf("the output carries 7 characters of a throwaway secret: %q", part)
			}
		}
	}
}

// The throwaway secrets are made as for contract 1.6 (an ECDSA service-account key, not RSA):
// Talos' verdict on the same patches must not change.
func TestServiceAccountKeyTypeDoesNotChangeTheVerdict(t *testing.T) {
	in := input(node("cp-1", "controlplane", chain{}))
	contract, err := parseContract(in.TalosVersion)
	if err != nil {
		t.Fatal(err)
	}
	rsa, err := secrets.NewBundle(secrets.NewFixedClock(time.Now()), contract)
	if err != nil {
		t.Fatal(err)
	}
	g, err := newGenerator(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(rsa.Certs.K8sServiceAccount.Key) == string(g.input.Options.SecretsBundle.Certs.K8sServiceAccount.Key) {
		t.Fatal("the bundles should differ")
	}
	patches := append(leakingPatches(), in.Nodes[0].Patches...)
	for _, role := range []machine.Type{machine.TypeControlPlane, machine.TypeWorker} {
		ecdsaCfg, err := g.input.Config(role)
		if err != nil {
			t.Fatal(err)
		}
		ecdsa := g.input.Options.SecretsBundle
		g.input.Options.SecretsBundle = rsa
		rsaCfg, err := g.input.Config(role)
		g.input.Options.SecretsBundle = ecdsa
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range patches {
			_, a, _ := judgeNode(&roleBase{cfg: ecdsaCfg, verdict: validate(ecdsaCfg)}, []Patch{p})
			_, b, _ := judgeNode(&roleBase{cfg: rsaCfg, verdict: validate(rsaCfg)}, []Patch{p})
			if len(a) != len(b) {
				t.Errorf("%s, %s: %d problems with an ECDSA key, %d with RSA", role, p.Key, len(a), len(b))
			}
		}
	}
}
