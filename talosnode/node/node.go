// Package node reads what one Talos node runs, over mutual TLS with the cluster's client
// configuration: its release (Version RPC), the schematic it booted (the `schematic`
// ExtensionStatus), the machine config it applied and the one it boots with next (MachineConfig
// v1alpha1 and persistent), its links (LinkStatus) and where the config's VIP lands on them, and
// its MachineStatus.
package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/cosi-project/runtime/pkg/state"
	"github.com/siderolabs/talos/pkg/machinery/client"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/constants"
	configres "github.com/siderolabs/talos/pkg/machinery/resources/config"
	"github.com/siderolabs/talos/pkg/machinery/resources/k8s"
	"github.com/siderolabs/talos/pkg/machinery/resources/network"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"talos-cluster/talosnode/redact"
	"talos-cluster/talosnode/wait"
)

// Credentials is the client configuration of a cluster: base64-encoded PEM, the shape of the
// talos provider's machine.Secrets clientConfiguration and of a talosconfig context.
type Credentials struct {
	CACertificate     string
	ClientCertificate string
	ClientKey         string
}

// Target names a node in messages: its name in the stack and the address it is reached at.
type Target struct {
	Name    string
	Address string
}

func (t Target) String() string {
	if t.Name == "" || t.Name == t.Address {
		return t.Address
	}
	return fmt.Sprintf("%s (%s)", t.Name, t.Address)
}

// Endpoint is where the node is asked: its address with the Talos API port (50000, apid) unless
// the address names one, as the Talos client dials it.
func (t Target) Endpoint() string {
	if _, _, err := net.SplitHostPort(t.Address); err == nil {
		return t.Address
	}
	return net.JoinHostPort(strings.Trim(t.Address, "[]"), strconv.Itoa(constants.ApidPort))
}

// Where names the node and the endpoint it is asked at, for lines about a wait:
// "cp-1 at 10.0.0.11:50000".
func (t Target) Where() string {
	if t.Name == "" || t.Name == t.Address {
		return t.Endpoint()
	}
	return t.Name + " at " + t.Endpoint()
}

// State is what a node reports about itself.
type State struct {
	// TalosVersion is the tag of the release it runs (Version RPC), e.g. v1.11.5.
	TalosVersion string
	// SchematicID is the Image Factory schematic of the image it booted; "" for an image the
	// factory did not build.
	SchematicID string
	// InstallerImage is machine.install.image of the applied config.
	InstallerImage string
	// KubernetesVersion is the tag of the kubelet image in the applied config, without a leading v.
	KubernetesVersion string
	// Config is the applied machine config: the active one (MachineConfig v1alpha1), what runs.
	Config config.Provider
	// Persisted is the config the node boots with next: MachineConfig `persistent`, which Talos
	// serves once a config was applied in this boot (ahead of the active one after a staged apply,
	// resources/config/machine_config.go), else the active one (a boot that loaded its config
	// from the STATE partition alone serves no `persistent`, controllers/config/acquire.go).
	Persisted config.Provider
	// Links are the names of the node's links (LinkStatus ids), sorted.
	Links []string
	// VIP is where the applied config's shared address lands on those links.
	VIP VIP
	// Stage is the MachineStatus stage (maintenance, running, upgrading, ...).
	Stage string
	// Ready is the MachineStatus readiness.
	Ready bool
	// ConfigDenied is set by ReadAvailable when the credential may not read the MachineConfig
	// (Talos serves the Sensitive type to os:admin only, internal/app/resources/access.go): then
	// Config, Persisted, InstallerImage and VIP are not known, and KubernetesVersion comes from
	// the non-sensitive KubeletConfig (its image tag; "" when the node has none).
	ConfigDenied bool
}

// Error is a failed read of one node: which node, in which phase, what was seen.
type Error struct {
	Target Target
	Phase  string
	Err    error
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s: %s", e.Target, e.Phase, Describe(e.Err)) }

func (e *Error) Unwrap() error { return e.Err }

// NotAnswering is true for what a node that is down, rebooting or still installing shows: no
// connection, a handshake its maintenance certificate (or a worker's missing API certificate)
// fails, a call cut off. Anything else is an answer, and waiting does not change it.
func (e *Error) NotAnswering() bool {
	// The node refused the client certificate at the handshake (outside its validity at the
	// node's clock: Go's alert "expired certificate"), which gRPC reports as Unavailable. An
	// answer: asking again with the same certificate gets the same refusal.
	if strings.Contains(status.Convert(e.Err).Message(), "tls: expired certificate") {
		return false
	}
	switch status.Code(e.Err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return true
	}
	return errors.Is(e.Err, context.DeadlineExceeded)
}

// Describe is a gRPC error's message without the "rpc error: code = ... desc =" wrapping, which
// says nothing a reader needs and doubles the length of every line.
func Describe(err error) string {
	if s, ok := status.FromError(err); ok {
		return s.Code().String() + ": " + s.Message()
	}
	return err.Error()
}

// Dial makes a client of the node itself (its address is the only endpoint, so calls are served
// by that node, not proxied). Close it after use.
// A stored certificate outside its validity is refused here (*CertificateExpiredError), as the
// node would refuse the handshake, and not asked again by a wait.
func Dial(ctx context.Context, t Target, creds Credentials) (*client.Client, error) {
	if err := checkValidity(creds.ClientCertificate, time.Now()); err != nil {
		return nil, &Error{Target: t, Phase: "client certificate", Err: err}
	}
	c, err := client.New(ctx, client.WithConfigContext(&clientconfig.Context{
		Endpoints: []string{t.Address},
		CA:        creds.CACertificate,
		Crt:       creds.ClientCertificate,
		Key:       creds.ClientKey,
	}))
	if err != nil {
		return nil, &Error{Target: t, Phase: "client configuration", Err: err}
	}
	return c, nil
}

// Read asks the node once. Its errors are *Error; a credential that may not read the
// MachineConfig (not os:admin) is one.
func Read(ctx context.Context, t Target, creds Credentials) (State, error) {
	return read(ctx, t, creds, false)
}

// ReadAvailable is Read with what the credential may read: a MachineConfig Talos refuses it
// (PermissionDenied, an os:reader or os:operator certificate) is no error but State.ConfigDenied.
func ReadAvailable(ctx context.Context, t Target, creds Credentials) (State, error) {
	return read(ctx, t, creds, true)
}

func read(ctx context.Context, t Target, creds Credentials, configOptional bool) (State, error) {
	c, err := Dial(ctx, t, creds)
	if err != nil {
		return State{}, err
	}
	defer c.Close() //nolint:errcheck
	return readWith(ctx, c, t, configOptional)
}

// ReadWith is Read on a client of the node (Dial). Its errors are *Error.
func ReadWith(ctx context.Context, c *client.Client, t Target) (State, error) {
	return readWith(ctx, c, t, false)
}

func readWith(ctx context.Context, c *client.Client, t Target, configOptional bool) (State, error) {
	fail := func(phase string, err error) (State, error) {
		return State{}, &Error{Target: t, Phase: phase, Err: err}
	}
	var s State
	version, err := c.Version(ctx)
	if err != nil {
		return fail("version", err)
	}
	if msgs := version.GetMessages(); len(msgs) > 0 {
		s.TalosVersion = msgs[0].GetVersion().GetTag()
	}

	// The Image Factory adds a virtual extension named "schematic" whose version is the id. Its
	// resource id is the layer's index like any extension's, never "schematic": find it by name.
	exts, err := safe.StateListAll[*runtime.ExtensionStatus](ctx, c.COSI)
	if err != nil {
		return fail("extensions", err)
	}
	for ext := range exts.All() {
		if ext.TypedSpec().Metadata.Name == "schematic" {
			s.SchematicID = ext.TypedSpec().Metadata.Version
		}
	}

	mc, err := safe.StateGetByID[*configres.MachineConfig](ctx, c.COSI, configres.ActiveID)
	if configOptional && status.Code(err) == codes.PermissionDenied {
		s.ConfigDenied = true
		return readWithoutConfig(ctx, c, t, s)
	}
	if err != nil {
		if _, isStatus := status.FromError(err); !isStatus {
			// A config the client cannot decode: machinery's message quotes it, secrets and all.
			err = errors.New(redact.ErrorText(err))
		}
		return fail("machine config", err)
	}
	s.Config = mc.Provider()
	if s.Config.Machine() == nil {
		return fail("machine config", errors.New("the applied config has no v1alpha1 machine section"))
	}
	s.Persisted = s.Config
	persisted, err := safe.StateGetByID[*configres.MachineConfig](ctx, c.COSI, configres.PersistentID)
	switch {
	case err == nil:
		s.Persisted = persisted.Provider()
	case !state.IsNotFoundError(err):
		if _, isStatus := status.FromError(err); !isStatus {
			err = errors.New(redact.ErrorText(err))
		}
		return fail("persisted machine config", err)
	}
	s.InstallerImage = s.Config.Machine().Install().Image()
	// machine.kubelet.image (machinery 1.14 reads it through the K8sKubeletConfig document, nil
	// for a config without a machine section).
	if kubelet := s.Config.K8sKubeletConfig(); kubelet != nil {
		s.KubernetesVersion = strings.TrimPrefix(ImageTag(kubelet.Image()), "v")
	}

	linkList, perr := readStatus(ctx, c, &s)
	if perr != nil {
		return State{}, &Error{Target: t, Phase: perr.phase, Err: perr.err}
	}
	s.VIP = ResolveVIP(s.Config, linkList)
	return s, nil
}

// readWithoutConfig reads what an os:reader may after the MachineConfig was refused: the
// Kubernetes version from the KubeletConfig (Talos' KubeletConfigController copies
// machine.kubelet.image of the active config into it), the links and the MachineStatus.
func readWithoutConfig(ctx context.Context, c *client.Client, t Target, s State) (State, error) {
	kc, err := safe.StateGetByID[*k8s.KubeletConfig](ctx, c.COSI, k8s.KubeletID)
	switch {
	case err == nil:
		s.KubernetesVersion = strings.TrimPrefix(ImageTag(kc.TypedSpec().Image), "v")
	case !state.IsNotFoundError(err):
		return State{}, &Error{Target: t, Phase: "kubelet config", Err: err}
	}
	if _, perr := readStatus(ctx, c, &s); perr != nil {
		return State{}, &Error{Target: t, Phase: perr.phase, Err: perr.err}
	}
	return s, nil
}

type phaseError struct {
	phase string
	err   error
}

// readStatus reads the links and the MachineStatus into s; it returns the links.
func readStatus(ctx context.Context, c *client.Client, s *State) ([]*network.LinkStatus, *phaseError) {
	links, err := safe.StateListAll[*network.LinkStatus](ctx, c.COSI)
	if err != nil {
		return nil, &phaseError{"links", err}
	}
	linkList := slices.Collect(links.All())
	s.Links = LinkNames(linkList)

	ms, err := safe.StateGetByID[*runtime.MachineStatus](ctx, c.COSI, runtime.MachineStatusID)
	if err != nil {
		return nil, &phaseError{"machine status", err}
	}
	s.Stage = ms.TypedSpec().Stage.String()
	s.Ready = ms.TypedSpec().Status.Ready
	return linkList, nil
}

// ImageTag is the tag of an image reference: ghcr.io/siderolabs/kubelet:v1.34.1 gives v1.34.1.
func ImageTag(image string) string {
	image, _, _ = strings.Cut(image, "@")
	if i := strings.LastIndex(image, ":"); i >= 0 && !strings.Contains(image[i:], "/") {
		return image[i+1:]
	}
	return ""
}

// Wait reads the node, asking again while it does not answer over mutual TLS (it is down,
// rebooting or still installing) until timeout. Each failed attempt is passed to progress (which
// may be nil) with what was seen, e.g. "version: unavailable: connection refused". An answer that
// is an error (a refused credential, a config that does not decode) ends the wait at once.
func Wait(ctx context.Context, t Target, creds Credentials, timeout time.Duration, progress func(attempt int, seen string)) (State, error) {
	return waitFor(ctx, t, creds, timeout, progress, Read)
}

// WaitAvailable is Wait with ReadAvailable: a MachineConfig the credential may not read is
// State.ConfigDenied, not an error.
func WaitAvailable(ctx context.Context, t Target, creds Credentials, timeout time.Duration, progress func(attempt int, seen string)) (State, error) {
	return waitFor(ctx, t, creds, timeout, progress, ReadAvailable)
}

func waitFor(ctx context.Context, t Target, creds Credentials, timeout time.Duration, progress func(attempt int, seen string),
	read func(context.Context, Target, Credentials) (State, error),
) (State, error) {
	var state State
	attempt := 0
	poll := wait.Poll{Timeout: timeout, Interval: 500 * time.Millisecond, MaxInterval: 5 * time.Second}
	if progress != nil {
		poll.Progress = func(seen string) { progress(attempt, seen) }
	}
	_, err := poll.Until(ctx, func(ctx context.Context) (bool, string, error) {
		attempt++
		s, err := read(ctx, t, creds)
		if err == nil {
			state = s
			return true, "", nil
		}
		var rerr *Error
		if !errors.As(err, &rerr) || !rerr.NotAnswering() {
			return false, "", err
		}
		return false, rerr.Phase + ": " + Describe(rerr.Err), nil
	})
	var expired *wait.Expired
	if errors.As(err, &expired) {
		return State{}, fmt.Errorf("%s: not answering over mutual TLS %w", t, err)
	}
	return state, err
}
