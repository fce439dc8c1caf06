package node_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/role"

	simnode "talos-cluster/sim/node"
	"talos-cluster/sim/simtest"
	"talos-cluster/talosnode/node"
	"talos-cluster/talosnode/redact"
)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func hashOf(t *testing.T, data []byte) string {
	t.Helper()
	cfg, err := redact.FromYAML(data)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Hash
}

func TestReadReportsWhatTheNodeRuns(t *testing.T) {
	l := simtest.New(t)
	declared := l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, "")
	for _, tc := range []struct {
		name    string
		address string
		change  *simnode.Change
		want    node.State
		// patched is the declared config with the change's patch, for the expected hash.
		patched string
		// staged is a patch on the declared config applied in STAGED mode: the persisted config.
		staged string
	}{
		{
			name:    "as declared",
			address: "127.0.9.11",
			want:    node.State{TalosVersion: simtest.TalosVersion, SchematicID: simtest.Schematic, InstallerImage: simtest.Installer, KubernetesVersion: "1.34.1", Stage: "running", Ready: true},
		},
		{
			name:    "changed by hand",
			address: "127.0.9.12",
			change: &simnode.Change{
				TalosVersion: "v1.10.7",
				Schematic:    simtest.OtherSchematic,
				ConfigPatch:  "machine:\n  install:\n    image: ghcr.io/siderolabs/installer:v1.10.7\n  kubelet:\n    image: ghcr.io/siderolabs/kubelet:v1.33.6\n",
			},
			patched: "machine:\n  install:\n    image: ghcr.io/siderolabs/installer:v1.10.7\n  kubelet:\n    image: ghcr.io/siderolabs/kubelet:v1.33.6\n",
			want:    node.State{TalosVersion: "v1.10.7", SchematicID: simtest.OtherSchematic, InstallerImage: "ghcr.io/siderolabs/installer:v1.10.7", KubernetesVersion: "1.33.6", Stage: "running", Ready: true},
		},
		{
			name:    "config staged",
			address: "127.0.9.13",
			staged:  "machine:\n  kubelet:\n    image: ghcr.io/siderolabs/kubelet:v1.34.2\n",
			// What runs is still the declared config.
			want: node.State{TalosVersion: simtest.TalosVersion, SchematicID: simtest.Schematic, InstallerImage: simtest.Installer, KubernetesVersion: "1.34.1", Stage: "running", Ready: true},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := l.Configured(t, tc.address, declared)
			if tc.change != nil {
				if err := n.Set(testCtx(t), *tc.change); err != nil {
					t.Fatal(err)
				}
			}
			if tc.staged != "" {
				c, err := node.Dial(testCtx(t), node.Target{Address: tc.address}, node.Credentials(l.Credentials))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close() //nolint:errcheck
				staged := l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, tc.staged)
				if _, err := c.ApplyConfiguration(testCtx(t), &machine.ApplyConfigurationRequest{Data: staged, Mode: machine.ApplyConfigurationRequest_STAGED}); err != nil {
					t.Fatal(err)
				}
			}
			got, err := node.Read(testCtx(t), node.Target{Name: "cp-1", Address: tc.address}, node.Credentials(l.Credentials))
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			applied, err := redact.FromProvider(got.Config)
			if err != nil {
				t.Fatal(err)
			}
			wantHash := hashOf(t, declared)
			if tc.patched != "" {
				wantHash = hashOf(t, l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, tc.patched))
			}
			if applied.Hash != wantHash {
				t.Errorf("applied config hash %s, want %s", applied.Hash, wantHash)
			}
			if (tc.change != nil) == (applied.Hash == hashOf(t, declared)) {
				t.Errorf("applied hash equals the declared one: %t, want %t", applied.Hash == hashOf(t, declared), tc.change == nil)
			}
			// The config it boots with next: the staged one, else the applied one.
			persisted, err := redact.FromProvider(got.Persisted)
			if err != nil {
				t.Fatal(err)
			}
			wantPersisted := wantHash
			if tc.staged != "" {
				wantPersisted = hashOf(t, l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, tc.staged))
			}
			if persisted.Hash != wantPersisted || (tc.staged != "") == (persisted.Hash == applied.Hash) {
				t.Errorf("persisted config hash %s, want %s (applied %s)", persisted.Hash, wantPersisted, applied.Hash)
			}
			got.Config, got.Persisted = nil, nil
			// A node of the simulator has one link unless told otherwise.
			tc.want.Links = simnode.DefaultLinks
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestWaitReadsANodeOnceItAnswers(t *testing.T) {
	l := simtest.New(t)
	declared := l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, "")
	for _, tc := range []struct {
		name    string
		address string
		// arrive brings the node up late: installed from maintenance, or powered on.
		setup  func(t *testing.T, address string) (arrive func())
		phases []string
	}{
		{
			name:    "installing: maintenance mode until its config is applied",
			address: "127.0.9.21",
			setup: func(t *testing.T, address string) func() {
				n := l.Node(t, address, simtest.TalosVersion, simtest.Schematic)
				return func() {
					if err := simtest.Install(n, declared); err != nil {
						t.Error(err)
					}
				}
			},
		},
		{
			name:    "powered off, then on",
			address: "127.0.9.22",
			setup: func(t *testing.T, address string) func() {
				n := l.Configured(t, address, declared)
				n.Stop()
				return func() {
					if err := n.Start(); err != nil {
						t.Error(err)
					}
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			arrive := tc.setup(t, tc.address)
			var attempts atomic.Int32
			var seen atomic.Value
			// The node arrives after the second failed attempt, as an installing node does.
			second := make(chan struct{})
			go func() {
				<-second
				arrive()
			}()
			got, err := node.Wait(testCtx(t), node.Target{Name: "cp-1", Address: tc.address}, node.Credentials(l.Credentials), 20*time.Second, func(attempt int, s string) {
				attempts.Store(int32(attempt))
				seen.Store(s)
				if attempt == 2 {
					close(second)
				}
			})
			if err != nil {
				t.Fatalf("wait: %v", err)
			}
			if got.TalosVersion != simtest.TalosVersion || got.Stage != "running" {
				t.Fatalf("got %+v", got)
			}
			if attempts.Load() < 2 {
				t.Fatalf("progress called %d times, want at least 2", attempts.Load())
			}
			t.Logf("last progress: %v", seen.Load())
		})
	}
}

func TestWaitForAStoppedNodeFailsNamingItWithinTheTimeout(t *testing.T) {
	l := simtest.New(t)
	n := l.Configured(t, "127.0.9.31", l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, ""))
	n.Stop()
	start := time.Now()
	_, err := node.Wait(testCtx(t), node.Target{Name: "cp-3", Address: "127.0.9.31"}, node.Credentials(l.Credentials), 2*time.Second, nil)
	elapsed := time.Since(start)
	if err == nil {
		t.Fatal("read of a stopped node succeeded")
	}
	want := "cp-3 (127.0.9.31): not answering over mutual TLS within 2s: version: Unavailable: "
	if !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("got  %q\nwant prefix %q", err, want)
	}
	if elapsed < 2*time.Second || elapsed > 5*time.Second {
		t.Fatalf("failed after %s, want about 2s", elapsed)
	}
}

func TestAnAnswerThatIsAnErrorEndsTheWaitAtOnce(t *testing.T) {
	l := simtest.New(t)
	l.Configured(t, "127.0.9.41", l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, ""))
	creds := l.Credentials
	creds.ClientKey = "bm90IGEga2V5" // "not a key"
	start := time.Now()
	_, err := node.Wait(testCtx(t), node.Target{Name: "cp-4", Address: "127.0.9.41"}, node.Credentials(creds), 20*time.Second, nil)
	var rerr *node.Error
	if !errors.As(err, &rerr) || rerr.Phase != "client configuration" || !strings.HasPrefix(err.Error(), "cp-4 (127.0.9.41): client configuration: ") {
		t.Fatalf("got %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("waited %s for an error that waiting does not change", time.Since(start))
	}
}

// TestReadNeedsOSAdminForTheMachineConfig: what a refresh reads and the role each read needs on
// Talos. Version, ExtensionStatus, LinkStatus and MachineStatus are open to os:reader; the
// MachineConfig is a Sensitive resource only os:admin may get, so a reader's read fails there,
// at once (an answer, not a node that is away), and os:etcd:backup may not even ask the version.
func TestReadNeedsOSAdminForTheMachineConfig(t *testing.T) {
	l := simtest.New(t)
	l.Configured(t, "127.0.9.51", l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, ""))
	target := node.Target{Name: "cp-5", Address: "127.0.9.51"}
	for _, tc := range []struct {
		role role.Role
		want string
	}{
		{role.Admin, ""},
		{role.Operator, "cp-5 (127.0.9.51): machine config: PermissionDenied: not authorized"},
		{role.Reader, "cp-5 (127.0.9.51): machine config: PermissionDenied: not authorized"},
		{role.EtcdBackup, "cp-5 (127.0.9.51): version: PermissionDenied: not authorized"},
	} {
		t.Run(string(tc.role), func(t *testing.T) {
			start := time.Now()
			_, err := node.Wait(testCtx(t), target, node.Credentials(l.CredentialsWith(t, tc.role)), 20*time.Second, nil)
			if got := fmt.Sprint(err); (tc.want == "" && err != nil) || (tc.want != "" && got != tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("waited %s for a refusal that waiting does not change", time.Since(start))
			}
		})
	}
}

func TestImageTag(t *testing.T) {
	for image, tag := range map[string]string{
		"ghcr.io/siderolabs/kubelet:v1.34.1":                "v1.34.1",
		"registry.local:5000/kubelet:v1.33.6":               "v1.33.6",
		"registry.local:5000/kubelet":                       "",
		"ghcr.io/siderolabs/kubelet:v1.34.1@sha256:0123abc": "v1.34.1",
	} {
		if got := node.ImageTag(image); got != tag {
			t.Errorf("ImageTag(%q) = %q, want %q", image, got, tag)
		}
	}
}

// TestReadAvailableReadsWhatAReaderMayAndSaysTheConfigWasNotRead: with an os:reader certificate
// the release, schematic, links, stage and the Kubernetes version (from the KubeletConfig) are
// read; the MachineConfig Talos refuses is ConfigDenied, not an error. With os:admin nothing is
// denied and the Kubernetes version is the applied config's.
func TestReadAvailableReadsWhatAReaderMayAndSaysTheConfigWasNotRead(t *testing.T) {
	l := simtest.New(t)
	sim := l.Configured(t, "127.0.9.52", l.ControlPlane(t, simtest.KubernetesVersion, simtest.Installer, ""))
	if err := sim.Set(context.Background(), simnode.Change{
		TalosVersion: "v1.11.4", Schematic: simtest.OtherSchematic,
		ConfigPatch: "machine:\n  kubelet:\n    image: ghcr.io/siderolabs/kubelet:v1.34.2\n",
	}); err != nil {
		t.Fatal(err)
	}
	target := node.Target{Name: "cp-6", Address: "127.0.9.52"}
	for _, tc := range []struct {
		role   role.Role
		denied bool
	}{{role.Reader, true}, {role.Admin, false}} {
		t.Run(string(tc.role), func(t *testing.T) {
			s, err := node.ReadAvailable(testCtx(t), target, node.Credentials(l.CredentialsWith(t, tc.role)))
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if s.TalosVersion != "v1.11.4" || s.SchematicID != simtest.OtherSchematic || s.KubernetesVersion != "1.34.2" ||
				s.Stage != "running" || !s.Ready || len(s.Links) == 0 {
				t.Errorf("read %+v", s)
			}
			if s.ConfigDenied != tc.denied || (s.Config == nil) != tc.denied || (s.InstallerImage == "") != tc.denied {
				t.Errorf("ConfigDenied %t, config read %t, installer %q; want denied %t", s.ConfigDenied, s.Config != nil, s.InstallerImage, tc.denied)
			}
		})
	}
}

func TestEndpointIsTheAddressWithTheTalosAPIPortUnlessItNamesOne(t *testing.T) {
	for _, c := range []struct{ address, endpoint, where string }{
		{"10.0.0.11", "10.0.0.11:50000", "cp-1 at 10.0.0.11:50000"},
		{"127.0.9.1:50123", "127.0.9.1:50123", "cp-1 at 127.0.9.1:50123"},
		{"fd00::11", "[fd00::11]:50000", "cp-1 at [fd00::11]:50000"},
		{"[fd00::11]:50001", "[fd00::11]:50001", "cp-1 at [fd00::11]:50001"},
		{"node-1.lan", "node-1.lan:50000", "cp-1 at node-1.lan:50000"},
	} {
		tg := node.Target{Name: "cp-1", Address: c.address}
		if got := tg.Endpoint(); got != c.endpoint {
			t.Errorf("Endpoint(%q) = %q, want %q", c.address, got, c.endpoint)
		}
		if got := tg.Where(); got != c.where {
			t.Errorf("Where(%q) = %q, want %q", c.address, got, c.where)
		}
	}
	if got := (node.Target{Address: "10.0.0.11"}).Where(); got != "10.0.0.11:50000" {
		t.Errorf("Where without a name = %q", got)
	}
}
