// Package installmode wraps the upstream Talos provider so that a talos_machine_configuration_apply
// can install a new node when its apply_mode is no_reboot or staged.
//
// A machine in maintenance mode (waiting for its first config) accepts only the apply modes auto,
// reboot and try; it answers no_reboot and staged with gRPC Unimplemented (Talos
// internal/app/maintenance/server.go). The upstream resource sends apply_mode on Create too and
// retries every error but InvalidArgument until its timeout, so such a node is never installed.
// Here Create sends auto instead of those two modes and keeps the declared mode in the state, so
// there is no diff afterwards; Update, which talks to an installed node, sends the declared mode.
package installmode

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// ApplyResourceType is the type name of the wrapped resource.
const ApplyResourceType = "talos_machine_configuration_apply"

var applyModePath = path.Root("apply_mode")

// Install returns the apply mode to send on Create (a node's install) for the declared one.
func Install(declared string) string {
	switch declared {
	case "no_reboot", "staged":
		return "auto"
	}
	return declared
}

// Provider returns p with its talos_machine_configuration_apply resource wrapped. The upstream
// provider (v0.7.1) implements no optional provider interface (ProviderWithFunctions,
// ProviderWithEphemeralResources, ProviderWithMetaSchema, ProviderWithConfigValidators,
// ProviderWithValidateConfig), so embedding provider.Provider forwards all it has; the tests check
// that this stays so.
func Provider(p provider.Provider) provider.Provider {
	return &wrappedProvider{Provider: p}
}

type wrappedProvider struct {
	provider.Provider
}

func (p *wrappedProvider) Resources(ctx context.Context) []func() resource.Resource {
	var meta provider.MetadataResponse
	p.Provider.Metadata(ctx, provider.MetadataRequest{}, &meta)
	factories := p.Provider.Resources(ctx)
	out := make([]func() resource.Resource, len(factories))
	for i, f := range factories {
		var m resource.MetadataResponse
		f().Metadata(ctx, resource.MetadataRequest{ProviderTypeName: meta.TypeName}, &m)
		out[i] = f
		if m.TypeName == ApplyResourceType {
			out[i] = func() resource.Resource { return wrapApply(f()) }
		}
	}
	return out
}

// upstreamApply is the method set of the upstream resource: besides resource.Resource it
// implements exactly ModifyPlan and UpgradeState (no Configure, ConfigValidators, ValidateConfig,
// ImportState, MoveState, Identity or UpgradeIdentity). Embedding it forwards them all, and adds
// none the upstream lacks (an ImportState, say, would change what the framework allows).
type upstreamApply interface {
	resource.ResourceWithModifyPlan
	resource.ResourceWithUpgradeState
}

type applyResource struct {
	upstreamApply
}

func wrapApply(r resource.Resource) resource.Resource {
	u, ok := r.(upstreamApply)
	if !ok {
		panic(fmt.Sprintf("installmode: %T no longer implements ModifyPlan and UpgradeState", r))
	}
	return &applyResource{upstreamApply: u}
}

// Create installs the node with Install(apply_mode) and records the declared apply_mode.
func (r *applyResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var declared types.String
	resp.Diagnostics.Append(req.Plan.GetAttribute(ctx, applyModePath, &declared)...)
	if resp.Diagnostics.HasError() {
		return
	}
	send := Install(declared.ValueString())
	if declared.IsNull() || declared.IsUnknown() || send == declared.ValueString() {
		r.upstreamApply.Create(ctx, req, resp)
		return
	}
	resp.Diagnostics.Append(req.Plan.SetAttribute(ctx, applyModePath, send)...)
	if resp.Diagnostics.HasError() {
		return
	}
	r.upstreamApply.Create(ctx, req, resp)
	if !resp.State.Raw.IsNull() {
		resp.Diagnostics.Append(resp.State.SetAttribute(ctx, applyModePath, declared)...)
	}
}
