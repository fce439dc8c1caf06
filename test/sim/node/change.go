package node

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"
	"google.golang.org/grpc/status"
)

// Change is what someone did to a machine by hand, outside the stack: upgraded or downgraded
// Talos, booted another image, or edited the config (talosctl edit/patch machineconfig). Empty
// fields are left as they are.
type Change struct {
	// TalosVersion is the release the node runs from now on (Version RPC), e.g. v1.10.7.
	TalosVersion string `json:"talosVersion,omitempty"`
	// Schematic is the Image Factory schematic id of the image it booted (the `schematic` extension).
	Schematic string `json:"schematic,omitempty"`
	// ConfigPatch is a strategic merge patch (YAML) on the node's active machine config.
	ConfigPatch string `json:"configPatch,omitempty"`
}

var (
	talosTag    = regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`)
	schematicID = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// ErrBadChange marks a Change the node refuses; nothing of it is made.
var ErrBadChange = errors.New("bad change")

// Set makes a hand change on the node. It is all or nothing: a bad field changes nothing. A
// config patch becomes the active config as an apply would (MachineConfig resource, TLS identity,
// install image, VIP and Node sync) and the persisted one (MachineConfig `persistent`, replacing a
// staged config), but is not counted as an apply. A stopped node takes the change too, as a disk
// edited offline would, and shows it when started.
func (n *Node) Set(ctx context.Context, c Change) error {
	if c == (Change{}) {
		return fmt.Errorf("%w: nothing to set: give talosVersion, schematic or configPatch", ErrBadChange)
	}
	if c.TalosVersion != "" && !talosTag.MatchString(c.TalosVersion) {
		return fmt.Errorf("%w: talosVersion %q is not a Talos release tag like v1.11.5", ErrBadChange, c.TalosVersion)
	}
	if c.Schematic != "" && !schematicID.MatchString(c.Schematic) {
		return fmt.Errorf("%w: schematic %q is not a schematic id (64 lower-case hex digits)", ErrBadChange, c.Schematic)
	}
	var act *activation
	if c.ConfigPatch != "" {
		a, err := n.patched(c.ConfigPatch)
		if err != nil {
			return err
		}
		act = &a
	}

	if c.Schematic != "" {
		if err := put(ctx, n.cosi, schematicExtension(c.Schematic)); err != nil {
			return fmt.Errorf("node %s: schematic extension: %w", n.address, err)
		}
		n.mu.Lock()
		n.state.Schematic = c.Schematic
		n.mu.Unlock()
	}
	if c.TalosVersion != "" {
		n.mu.Lock()
		n.state.TalosVersion = c.TalosVersion
		n.mu.Unlock()
	}
	if act != nil {
		// talosctl edit/patch go through ApplyConfiguration: persisted and active alike, and
		// whatever was staged is replaced.
		if err := n.persist(ctx, *act, nil); err != nil {
			return fmt.Errorf("node %s: storing patched config: %w", n.address, err)
		}
		n.mu.Lock()
		n.pending, n.state.Staged = nil, false
		n.mu.Unlock()
		// The change is done and settled, as long ago: its static pods and kubelet run it, Ready.
		n.mu.Lock()
		n.booting = true
		n.mu.Unlock()
		err := n.activate(ctx, *act, nil)
		n.mu.Lock()
		n.booting = false
		n.mu.Unlock()
		if err != nil {
			return fmt.Errorf("node %s: storing patched config: %w", n.address, err)
		}
		n.podsConfigured(ctx, act.cfg, true)
		n.refreshMachineStatus(ctx)
	}
	return nil
}

// patched is the node's active config with a strategic merge patch, validated as an apply is.
func (n *Node) patched(patch string) (activation, error) {
	n.mu.Lock()
	current := n.state.Config
	n.mu.Unlock()
	if current == "" {
		return activation{}, fmt.Errorf("%w: configPatch: node %s has no config to patch (maintenance mode)", ErrBadChange, n.address)
	}
	p, err := configpatcher.LoadPatch([]byte(patch))
	if err != nil {
		return activation{}, fmt.Errorf("%w: configPatch: %v", ErrBadChange, err)
	}
	out, err := configpatcher.Apply(configpatcher.WithBytes([]byte(current)), []configpatcher.Patch{p})
	if err != nil {
		return activation{}, fmt.Errorf("%w: configPatch: %v", ErrBadChange, err)
	}
	data, err := out.Bytes()
	if err != nil {
		return activation{}, fmt.Errorf("%w: configPatch: %v", ErrBadChange, err)
	}
	act, err := n.validate(data)
	if err != nil {
		return activation{}, fmt.Errorf("%w: configPatch: %s", ErrBadChange, status.Convert(err).Message())
	}
	return act, nil
}
