package node

import (
	"context"
	stdx509 "crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	configres "github.com/siderolabs/talos/pkg/machinery/resources/config"
	"github.com/siderolabs/talos/pkg/machinery/resources/k8s"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
	"github.com/siderolabs/talos/pkg/machinery/role"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
)

// withRoles is a client of n with a certificate from the cluster's machine CA whose
// organizations are the given roles, as `talosctl config new --roles` makes.
func withRoles(t *testing.T, n *Node, cl cluster, roles ...string) *client.Client {
	t.Helper()
	set, _ := role.Parse(roles)
	cert, err := clientCertificate(cl.bundle.Certs.OS, set, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return mutual(t, n, clientconfig.NewConfig("roles", nil, cl.bundle.Certs.OS.Crt, cert))
}

// drain reads a server stream to its end: a refused call fails at the first receive.
func drain[T any](stream grpc.ServerStreamingClient[T], err error) error {
	if err != nil {
		return err
	}
	for {
		if _, err := stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// refusal says whether err is Talos' role refusal.
func refusal(err error) bool {
	return status.Code(err) == codes.PermissionDenied && status.Convert(err).Message() == "not authorized"
}

// TestEachCallNeedsOneOfTheRolesTalosAllowsForIt calls a bootstrapped control plane with a
// certificate of each role: a call is served (its handler's answer, Unimplemented for the methods
// the simulator does not serve) for the roles machined's rules allow, and refused with
// PermissionDenied "not authorized" for the others, before the handler runs.
func TestEachCallNeedsOneOfTheRolesTalosAllowsForIt(t *testing.T) {
	n, cl := startNode(t), newCluster(t, "lab")
	if err := apply(t, insecure(t, n), n, cl.controlPlane); err != nil {
		t.Fatal(err)
	}
	bootstrap(t, n, cl)

	all := []role.Role{role.Admin, role.Operator, role.Reader, role.EtcdBackup}
	clients := map[role.Role]*client.Client{}
	for _, r := range all {
		clients[r] = withRoles(t, n, cl, string(r))
	}
	for _, tc := range []struct {
		name    string
		call    func(context.Context, *client.Client) error
		allowed []role.Role
		// served is what an allowed caller gets: OK, or Unimplemented from the handler.
		served codes.Code
	}{
		{"Version", func(ctx context.Context, c *client.Client) error {
			_, err := c.MachineClient.Version(ctx, &emptypb.Empty{})
			return err
		}, []role.Role{role.Admin, role.Operator, role.Reader}, codes.OK},
		{"ServiceList", func(ctx context.Context, c *client.Client) error {
			_, err := c.MachineClient.ServiceList(ctx, &emptypb.Empty{})
			return err
		}, []role.Role{role.Admin, role.Operator, role.Reader}, codes.OK},
		{"Disks", func(ctx context.Context, c *client.Client) error {
			_, err := c.StorageClient.Disks(ctx, &emptypb.Empty{})
			return err
		}, []role.Role{role.Admin, role.Operator, role.Reader}, codes.OK},
		{"Events", func(ctx context.Context, c *client.Client) error {
			stream, err := c.MachineClient.Events(ctx, &machine.EventsRequest{})
			if err != nil {
				return err
			}
			_, err = stream.Recv() // the hello event
			return err
		}, []role.Role{role.Admin, role.Operator, role.Reader}, codes.OK},
		{"EtcdMemberList", func(ctx context.Context, c *client.Client) error {
			_, err := c.MachineClient.EtcdMemberList(ctx, &machine.EtcdMemberListRequest{})
			return err
		}, all, codes.OK},
		{"EtcdStatus", func(ctx context.Context, c *client.Client) error {
			_, err := c.MachineClient.EtcdStatus(ctx, &emptypb.Empty{})
			return err
		}, all, codes.OK},
		{"EtcdSnapshot", func(ctx context.Context, c *client.Client) error {
			return drain(c.MachineClient.EtcdSnapshot(ctx, &machine.EtcdSnapshotRequest{}))
		}, []role.Role{role.Admin, role.Operator, role.EtcdBackup}, codes.OK},
		// Served to os:admin, which this one-member cluster refuses (Talos' ForfeitLeadership).
		{"EtcdForfeitLeadership", func(ctx context.Context, c *client.Client) error {
			_, err := c.MachineClient.EtcdForfeitLeadership(ctx, &machine.EtcdForfeitLeadershipRequest{})
			if err != nil && strings.Contains(err.Error(), "cannot forfeit leadership, only one member") {
				return nil
			}
			return err
		}, []role.Role{role.Admin}, codes.OK},
		{"EtcdDefragment", func(ctx context.Context, c *client.Client) error {
			_, err := c.MachineClient.EtcdDefragment(ctx, &emptypb.Empty{})
			return err
		}, []role.Role{role.Admin, role.Operator}, codes.Unimplemented},
		{"Reset", func(ctx context.Context, c *client.Client) error {
			// A disk the machine does not have: machined refuses it before anything is reset.
			_, err := c.MachineClient.Reset(ctx, &machine.ResetRequest{UserDisksToWipe: []string{"/dev/nvme9n1"}})
			return err
		}, []role.Role{role.Admin}, codes.Unknown},
		{"Read of the boot id", func(ctx context.Context, c *client.Client) error {
			return drain(c.MachineClient.Read(ctx, &machine.ReadRequest{Path: bootIDPath}))
		}, []role.Role{role.Admin}, codes.OK},
		{"Kubeconfig", func(ctx context.Context, c *client.Client) error {
			return drain(c.MachineClient.Kubeconfig(ctx, &emptypb.Empty{}))
		}, []role.Role{role.Admin}, codes.OK},
		{"ApplyConfiguration", func(ctx context.Context, c *client.Client) error {
			_, err := c.MachineClient.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: cl.controlPlane, DryRun: true})
			return err
		}, []role.Role{role.Admin}, codes.OK},
		{"GenerateClientConfiguration", func(ctx context.Context, c *client.Client) error {
			_, err := c.MachineClient.GenerateClientConfiguration(ctx, &machine.GenerateClientConfigurationRequest{
				Roles: []string{string(role.Reader)}, CrtTtl: durationpb.New(time.Hour),
			})
			return err
		}, []role.Role{role.Admin}, codes.OK},
		{"COSI get of MachineStatus", func(ctx context.Context, c *client.Client) error {
			_, err := safe.StateGetByID[*runtime.MachineStatus](ctx, c.COSI, runtime.MachineStatusID)
			return err
		}, []role.Role{role.Admin, role.Operator, role.Reader}, codes.OK},
		{"COSI list of ExtensionStatuses", func(ctx context.Context, c *client.Client) error {
			_, err := safe.StateListAll[*runtime.ExtensionStatus](ctx, c.COSI)
			return err
		}, []role.Role{role.Admin, role.Operator, role.Reader}, codes.OK},
		// MachineConfig is Sensitive: the access policy lets only os:admin read it.
		{"COSI get of MachineConfig", func(ctx context.Context, c *client.Client) error {
			_, err := safe.StateGetByID[*configres.MachineConfig](ctx, c.COSI, configres.ActiveID)
			return err
		}, []role.Role{role.Admin}, codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range all {
				err := tc.call(ctx(t, n), clients[r])
				if slices.Contains(tc.allowed, r) {
					if status.Code(err) != tc.served {
						t.Errorf("%s: got %v, want %s", r, err, tc.served)
					}
				} else if !refusal(err) {
					t.Errorf("%s: got %v, want PermissionDenied \"not authorized\"", r, err)
				}
			}
		})
	}
	// Refused calls changed nothing: the dry runs and reads aside, no apply reached the node.
	if s := n.State(); s.Applies != 1 || s.KubeconfigCalls != 1 {
		t.Errorf("after the calls: applies %d, kubeconfig calls %d; want 1 each (the admin's)", s.Applies, s.KubeconfigCalls)
	}
}

// TestAnOperatorRebootsButAReaderCannot: Reboot is for os:admin and os:operator.
func TestAnOperatorRebootsButAReaderCannot(t *testing.T) {
	n, cl := startNode(t), newCluster(t, "lab")
	if err := apply(t, insecure(t, n), n, cl.controlPlane); err != nil {
		t.Fatal(err)
	}
	before := n.State().BootID
	if _, err := withRoles(t, n, cl, string(role.Reader)).MachineClient.Reboot(ctx(t, n), &machine.RebootRequest{}); !refusal(err) {
		t.Fatalf("reader: got %v, want PermissionDenied \"not authorized\"", err)
	}
	if _, err := withRoles(t, n, cl, string(role.Operator)).MachineClient.Reboot(ctx(t, n), &machine.RebootRequest{}); err != nil {
		t.Fatalf("operator: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for n.State().BootID == before {
		if time.Now().After(deadline) {
			t.Fatal("the operator's reboot did not boot the node again within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRolesComeFromTheCertificateOnly: a certificate without a known role may call nothing; the
// talos-role metadata counts only for a certificate with os:impersonator, whose roles it replaces.
func TestRolesComeFromTheCertificateOnly(t *testing.T) {
	n, cl := startNode(t), newCluster(t, "lab")
	if err := apply(t, insecure(t, n), n, cl.controlPlane); err != nil {
		t.Fatal(err)
	}
	asAdmin := func(ctx context.Context) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "talos-role", string(role.Admin))
	}
	version := func(c *client.Client, ctx context.Context) error {
		_, err := c.MachineClient.Version(ctx, &emptypb.Empty{})
		return err
	}
	machineConfig := func(c *client.Client, ctx context.Context) error {
		_, err := safe.StateGetByID[*configres.MachineConfig](ctx, c.COSI, configres.ActiveID)
		return err
	}
	for _, tc := range []struct {
		name    string
		roles   []string
		call    func(*client.Client, context.Context) error
		md      func(context.Context) context.Context
		refused bool
	}{
		{"no organization", nil, version, nil, true},
		{"an unknown role", []string{"os:auditor"}, version, nil, true},
		{"a reader asking for admin in metadata", []string{string(role.Reader)}, machineConfig, asAdmin, true},
		{"an impersonator without metadata", []string{string(role.Impersonator)}, version, nil, true},
		{"an impersonator asking for reader", []string{string(role.Impersonator)}, version, func(ctx context.Context) context.Context {
			return metadata.AppendToOutgoingContext(ctx, "talos-role", string(role.Reader))
		}, false},
		{"an impersonator asking for admin", []string{string(role.Impersonator)}, machineConfig, asAdmin, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ctx(t, n)
			if tc.md != nil {
				c = tc.md(c)
			}
			err := tc.call(withRoles(t, n, cl, tc.roles...), c)
			if tc.refused != refusal(err) || (!tc.refused && err != nil) {
				t.Fatalf("got %v, want refused %t", err, tc.refused)
			}
		})
	}
}

// TestGenerateClientConfigurationIssuesATalosconfigWithTheRolesAsked is `talosctl config new
// --roles os:reader`: a talosconfig whose certificate carries the role, and works as that role.
func TestGenerateClientConfigurationIssuesATalosconfigWithTheRolesAsked(t *testing.T) {
	n, worker, cl := startNode(t), startNode(t), newCluster(t, "lab")
	if err := apply(t, insecure(t, n), n, cl.controlPlane); err != nil {
		t.Fatal(err)
	}
	if err := apply(t, insecure(t, worker), worker, cl.worker); err != nil {
		t.Fatal(err)
	}
	admin := mutual(t, n, cl.talosconfig)
	req := &machine.GenerateClientConfigurationRequest{Roles: []string{string(role.Reader)}, CrtTtl: durationpb.New(2 * time.Hour)}
	resp, err := admin.MachineClient.GenerateClientConfiguration(ctx(t, n), req)
	if err != nil {
		t.Fatal(err)
	}
	msg := resp.GetMessages()[0]
	tc, err := clientconfig.FromBytes(msg.GetTalosconfig())
	if err != nil {
		t.Fatal(err)
	}
	if tc.Context != "reader@lab" {
		t.Errorf("context %q, want reader@lab", tc.Context)
	}
	block, _ := pem.Decode(msg.GetCrt())
	if block == nil {
		t.Fatalf("crt is no PEM: %q", msg.GetCrt())
	}
	crt, err := stdx509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(crt.Subject.Organization, []string{string(role.Reader)}) {
		t.Errorf("organizations %v, want [os:reader]", crt.Subject.Organization)
	}
	if left := time.Until(crt.NotAfter); left > 2*time.Hour || left < time.Hour {
		t.Errorf("certificate valid for %s more, asked 2h", left)
	}
	if string(msg.GetCa()) != string(cl.bundle.Certs.OS.Crt) {
		t.Error("the CA is not the cluster's machine CA")
	}
	reader := mutual(t, n, tc)
	if _, err := reader.MachineClient.Version(ctx(t, n), &emptypb.Empty{}); err != nil {
		t.Errorf("the new talosconfig's Version: %v", err)
	}
	if _, err := safe.StateGetByID[*configres.MachineConfig](ctx(t, n), reader.COSI, configres.ActiveID); !refusal(err) {
		t.Errorf("the new talosconfig reads the MachineConfig: %v", err)
	}

	if _, err := admin.MachineClient.GenerateClientConfiguration(ctx(t, n), &machine.GenerateClientConfigurationRequest{Roles: req.Roles}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("no crt_ttl: got %v, want InvalidArgument", err)
	}
	_, err = mutual(t, worker, cl.talosconfig).MachineClient.GenerateClientConfiguration(ctx(t, worker), req)
	if status.Code(err) != codes.FailedPrecondition || status.Convert(err).Message() != "client configuration (talosconfig) can't be generated on worker nodes" {
		t.Errorf("on a worker: got %v, want FailedPrecondition", err)
	}
}

// TestMethodRolesNameServedMethods: every method the role table names exists in a service the
// node serves, so a misspelt entry cannot silently leave a method admin-only.
func TestMethodRolesNameServedMethods(t *testing.T) {
	n := startNode(t)
	n.mu.Lock()
	srv := n.srv
	n.mu.Unlock()
	served := map[string]bool{}
	services := srv.machined.GetServiceInfo()
	for name, info := range services {
		for _, m := range info.Methods {
			served["/"+name+"/"+m.Name] = true
		}
	}
	for method := range methodRoles {
		service := strings.Split(method, "/")[1]
		if _, ok := services[service]; ok && !served[method] {
			t.Errorf("%s: the service serves no such method", method)
		}
	}
}

// TestAReaderGetsTheKubeletImageFromKubeletConfig: the KubeletConfig (not Sensitive, Talos'
// controllers/k8s/kubelet_config.go) carries machine.kubelet.image of the active config, so an
// os:reader learns the Kubernetes version a node runs although the MachineConfig is refused.
func TestAReaderGetsTheKubeletImageFromKubeletConfig(t *testing.T) {
	n, cl := startNode(t), newCluster(t, "lab")
	if err := apply(t, insecure(t, n), n, cl.controlPlane); err != nil {
		t.Fatal(err)
	}
	reader := withRoles(t, n, cl, string(role.Reader))
	image := func() string {
		t.Helper()
		kc, err := safe.StateGetByID[*k8s.KubeletConfig](ctx(t, n), reader.COSI, k8s.KubeletID)
		if err != nil {
			t.Fatalf("reader: get KubeletConfig: %v", err)
		}
		return kc.TypedSpec().Image
	}
	if got, want := image(), "ghcr.io/siderolabs/kubelet:v1.34.1"; got != want {
		t.Errorf("after the apply: image %q, want %q", got, want)
	}
	if _, err := safe.StateGetByID[*configres.MachineConfig](ctx(t, n), reader.COSI, configres.ActiveID); !refusal(err) {
		t.Errorf("reader: MachineConfig: got %v, want PermissionDenied \"not authorized\"", err)
	}
	if err := n.Set(ctx(t, n), Change{ConfigPatch: "machine:\n  kubelet:\n    image: ghcr.io/siderolabs/kubelet:v1.34.2\n"}); err != nil {
		t.Fatal(err)
	}
	if got := image(); got != "ghcr.io/siderolabs/kubelet:v1.34.2" {
		t.Errorf("after a change by hand: image %q, want ghcr.io/siderolabs/kubelet:v1.34.2", got)
	}
}
