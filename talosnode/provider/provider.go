// Package provider is the talosnode Pulumi provider: getMachineConfiguration renders and validates
// each node's machine config; ConfigurationApply installs a new node's first config; NodeState
// records what a Talos node runs next to what the stack declares, so a refresh shows drift made on
// the node; Rollout changes a running cluster's nodes one at a time; EtcdRecovery brings a wiped
// cluster's etcd back from a snapshot.
package provider

import (
	"context"

	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi-go-provider/infer"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
	"github.com/pulumi/pulumi/sdk/v3/go/property"

	"talos-cluster/talosnode/redact"
)

// Name is the plugin's name: pulumi-resource-talosnode, tokens talosnode:index:*.
const Name = "talosnode"

// New builds the provider.
func New() (p.Provider, error) {
	prov, err := infer.NewProviderBuilder().
		WithDisplayName("talosnode").
		WithDescription("Installs new Talos nodes' first machine config; reads what Talos nodes run (release, booted schematic, applied config, machine status, where the config's VIP lands) over mutual TLS, so drift made on a node shows in a refresh; and rolls config changes and upgrades through a running cluster one node at a time, behind health gates.").
		// The Node.js SDK's package is @talos-cluster/talosnode.
		WithNamespace("talos-cluster").
		WithGoImportPath("talos-cluster/talosnode/sdk/go/talosnode").
		WithResources(infer.Resource(&NodeState{}), infer.Resource(&Rollout{}), infer.Resource(&KubernetesReady{}), infer.Resource(&Reachable{}),
			infer.Resource(&ConfigurationApply{}), infer.Resource(&EtcdRecovery{}), infer.Resource(&Credentials{})).
		// Machine configs are rendered and validated here, with this provider's Talos library.
		WithFunctions(infer.Function(&GetMachineConfiguration{})).
		// Types live in this Go package; their tokens are talosnode:index:*.
		WithModuleMap(map[tokens.ModuleName]tokens.ModuleName{"provider": "index"}).
		Build()
	if err != nil {
		return p.Provider{}, err
	}
	check := prov.Check
	prov.Check = func(ctx context.Context, req p.CheckRequest) (p.CheckResponse, error) {
		resp, err := check(ctx, req)
		if err == nil {
			resp.Inputs = keepUnknowns(req.Inputs, resp.Inputs)
		}
		return resp, err
	}
	diff, read, update, del := prov.Diff, prov.Read, prov.Update, prov.Delete
	prov.Diff = func(ctx context.Context, req p.DiffRequest) (p.DiffResponse, error) {
		if req.Urn.Type() == configurationApplyType {
			return installDiff(req), nil
		}
		if req.Urn.Type() == nodeStateType {
			req.State = configKeysState(req.State)
		}
		if t := req.Urn.Type(); t == nodeStateType || t == rolloutType {
			req.State, req.Inputs = withoutMachineSecrets(req.State), withoutMachineSecrets(req.Inputs)
		}
		resp, err := diff(ctx, req)
		if err == nil && req.Urn.Type() == credentialsType {
			resp = credentialsRenewal(resp, req, clock())
		}
		return resp, err
	}
	prov.Read = func(ctx context.Context, req p.ReadRequest) (p.ReadResponse, error) {
		if req.Urn.Type() == nodeStateType {
			req.Properties, req.Inputs = configKeysState(req.Properties), configKeysState(req.Inputs)
		}
		return read(ctx, req)
	}
	prov.Update = func(ctx context.Context, req p.UpdateRequest) (p.UpdateResponse, error) {
		if req.Urn.Type() == nodeStateType {
			req.State = configKeysState(req.State)
		}
		resp, err := update(ctx, req)
		if err == nil && req.DryRun && req.Urn.Type() == credentialsType {
			resp.Properties = unknownMinted(resp.Properties)
		}
		return resp, err
	}
	prov.Delete = func(ctx context.Context, req p.DeleteRequest) error {
		if req.Urn.Type() == nodeStateType {
			req.Properties = configKeysState(req.Properties)
		}
		return del(ctx, req)
	}
	return prov, nil
}

// The resources' type tokens.
const (
	nodeStateType          tokens.Type = "talosnode:index:NodeState"
	rolloutType            tokens.Type = "talosnode:index:Rollout"
	configurationApplyType tokens.Type = "talosnode:index:ConfigurationApply"
)

// configKeysState reads a NodeState recorded before config held keys: its config, the redacted
// YAML text, becomes the keys of that text (redact.Keys), so the state decodes and the next diff
// names the keys that change. A text that does not parse is dropped: the next update records it.
func configKeysState(m property.Map) property.Map {
	v, ok := m.GetOk("config")
	if !ok || !v.IsString() {
		return m
	}
	keys, err := redact.Keys(v.AsString())
	if err != nil {
		return m.Delete("config")
	}
	entries := make(map[string]property.Value, len(keys))
	for k, val := range keys {
		entries[k] = property.New(val)
	}
	return m.Set("config", property.New(entries))
}

// keepUnknowns makes every value that was unknown in the program's inputs unknown in the checked
// ones. infer v1.1.2's secret tagging turns an unknown secret into a known empty one (its
// deferred MakeSecret wraps the value from before MakeComputed), so a preview of a new stack
// would show the client configuration and machine config as empty instead of unknown.
func keepUnknowns(in, out property.Map) property.Map {
	for key, v := range in.All {
		got, ok := out.GetOk(key)
		switch {
		case !ok:
		case v.IsComputed() && !got.IsComputed():
			out = out.Set(key, property.New(property.Computed).WithSecret(v.Secret() || got.Secret()))
		case v.IsMap() && got.IsMap():
			out = out.Set(key, property.WithGoValue(got, keepUnknowns(v.AsMap(), got.AsMap())))
		case v.IsArray() && got.IsArray() && v.AsArray().Len() == got.AsArray().Len():
			items := got.AsArray().AsSlice()
			for i, item := range v.AsArray().All {
				if item.IsMap() && items[i].IsMap() {
					items[i] = property.WithGoValue(items[i], keepUnknowns(item.AsMap(), items[i].AsMap()))
				}
			}
			out = out.Set(key, property.WithGoValue(got, property.NewArray(items)))
		}
	}
	return out
}
