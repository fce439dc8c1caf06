package installmode

import (
	"context"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
	talos "github.com/siderolabs/terraform-provider-talos/pkg/talos"
)

func TestInstall(t *testing.T) {
	for _, tc := range []struct{ declared, want string }{
		{"auto", "auto"},
		{"reboot", "reboot"},
		{"try", "try"},
		{"no_reboot", "auto"},
		{"staged", "auto"},
		{"", ""},
	} {
		t.Run(tc.declared, func(t *testing.T) {
			if got := Install(tc.declared); got != tc.want {
				t.Errorf("Install(%q) = %q, want %q", tc.declared, got, tc.want)
			}
		})
	}
}

// fakeUpstream is the upstream resource with Create and Update replaced by ones that, like
// upstream's, read apply_mode from req.Plan and write the plan as the new state, but record the
// mode they would send instead of dialing a node.
type fakeUpstream struct {
	upstreamApply
	t    *testing.T
	sent string
	fail bool
}

func newFake(t *testing.T) *fakeUpstream {
	return &fakeUpstream{upstreamApply: talos.NewTalosMachineConfigurationApplyResource().(upstreamApply), t: t}
}

func (f *fakeUpstream) record(ctx context.Context, plan tfsdk.Plan) {
	var mode types.String
	if d := plan.GetAttribute(ctx, applyModePath, &mode); d.HasError() {
		f.t.Fatalf("read plan: %v", d)
	}
	f.sent = mode.ValueString()
}

func (f *fakeUpstream) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	f.record(ctx, req.Plan)
	if f.fail {
		resp.Diagnostics.AddError("Error applying configuration", "rpc error: code = Unimplemented")
		return
	}
	resp.State.Raw = req.Plan.Raw
}

func (f *fakeUpstream) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	f.record(ctx, req.Plan)
	resp.State.Raw = req.Plan.Raw
}

func applyPlan(ctx context.Context, t *testing.T, mode string) (tfsdk.Plan, tfsdk.State) {
	var s resource.SchemaResponse
	talos.NewTalosMachineConfigurationApplyResource().Schema(ctx, resource.SchemaRequest{}, &s)
	null := tftypes.NewValue(s.Schema.Type().TerraformType(ctx), nil)
	plan := tfsdk.Plan{Schema: s.Schema, Raw: null}
	if d := plan.SetAttribute(ctx, applyModePath, mode); d.HasError() {
		t.Fatalf("set plan: %v", d)
	}
	return plan, tfsdk.State{Schema: s.Schema, Raw: null}
}

func stateMode(ctx context.Context, t *testing.T, s tfsdk.State) string {
	var mode types.String
	if d := s.GetAttribute(ctx, applyModePath, &mode); d.HasError() {
		t.Fatalf("read state: %v", d)
	}
	return mode.ValueString()
}

func TestCreateAndUpdate(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ declared, create string }{
		{"auto", "auto"},
		{"reboot", "reboot"},
		{"no_reboot", "auto"},
		{"staged", "auto"},
	} {
		t.Run(tc.declared, func(t *testing.T) {
			rec := newFake(t)
			w := wrapApply(rec)

			plan, state := applyPlan(ctx, t, tc.declared)
			resp := resource.CreateResponse{State: state}
			w.Create(ctx, resource.CreateRequest{Plan: plan}, &resp)
			if resp.Diagnostics.HasError() {
				t.Fatalf("Create: %v", resp.Diagnostics)
			}
			if rec.sent != tc.create {
				t.Errorf("Create sent %q, want %q", rec.sent, tc.create)
			}
			if got := stateMode(ctx, t, resp.State); got != tc.declared {
				t.Errorf("state apply_mode after Create = %q, want the declared %q", got, tc.declared)
			}

			rec.sent = ""
			uresp := resource.UpdateResponse{State: state}
			w.Update(ctx, resource.UpdateRequest{Plan: plan}, &uresp)
			if rec.sent != tc.declared {
				t.Errorf("Update sent %q, want the declared %q", rec.sent, tc.declared)
			}
		})
	}
}

func TestCreateFailureLeavesNoState(t *testing.T) {
	ctx := context.Background()
	rec := newFake(t)
	rec.fail = true
	w := wrapApply(rec)
	plan, state := applyPlan(ctx, t, "staged")
	resp := resource.CreateResponse{State: state}
	w.Create(ctx, resource.CreateRequest{Plan: plan}, &resp)
	if rec.sent != "auto" {
		t.Errorf("Create sent %q, want auto", rec.sent)
	}
	if !resp.State.Raw.IsNull() || len(resp.Diagnostics) != 1 {
		t.Errorf("want null state and the upstream error only, got %v, %v", resp.State.Raw, resp.Diagnostics)
	}
}

func TestProviderWrapsOnlyApply(t *testing.T) {
	ctx := context.Background()
	upstream, wrapped := talos.New().Resources(ctx), Provider(talos.New()).Resources(ctx)
	if len(wrapped) != len(upstream) {
		t.Fatalf("%d resources, upstream has %d", len(wrapped), len(upstream))
	}
	found := false
	for i := range upstream {
		u, w := upstream[i](), wrapped[i]()
		name := typeName(ctx, u)
		t.Run(name, func(t *testing.T) {
			if got := typeName(ctx, w); got != name {
				t.Fatalf("type %q, upstream %q", got, name)
			}
			_, isWrapped := w.(*applyResource)
			if isWrapped != (name == ApplyResourceType) {
				t.Errorf("wrapped = %v", isWrapped)
			}
			for iface, implements := range resourceInterfaces {
				if implements(w) != implements(u) {
					t.Errorf("%s: wrapper %v, upstream %v", iface, implements(w), implements(u))
				}
			}
		})
		found = found || name == ApplyResourceType
	}
	if !found {
		t.Errorf("upstream has no %s", ApplyResourceType)
	}
}

// TestProviderInterfaces fails when the upstream provider gains an optional interface that the
// wrapper, which embeds only provider.Provider, would hide.
func TestProviderInterfaces(t *testing.T) {
	u, w := talos.New(), Provider(talos.New())
	for iface, implements := range providerInterfaces {
		t.Run(iface, func(t *testing.T) {
			if implements(w) != implements(u) {
				t.Errorf("wrapper %v, upstream %v", implements(w), implements(u))
			}
		})
	}
}

func typeName(ctx context.Context, r resource.Resource) string {
	var m resource.MetadataResponse
	r.Metadata(ctx, resource.MetadataRequest{ProviderTypeName: "talos"}, &m)
	return m.TypeName
}

func implements[T any](v any) bool {
	_, ok := v.(T)
	return ok
}

// The optional interfaces of terraform-plugin-framework v1.15 (those its fwserver checks for).
var resourceInterfaces = map[string]func(any) bool{
	"Configure":        implements[resource.ResourceWithConfigure],
	"ConfigValidators": implements[resource.ResourceWithConfigValidators],
	"ImportState":      implements[resource.ResourceWithImportState],
	"ModifyPlan":       implements[resource.ResourceWithModifyPlan],
	"MoveState":        implements[resource.ResourceWithMoveState],
	"UpgradeState":     implements[resource.ResourceWithUpgradeState],
	"ValidateConfig":   implements[resource.ResourceWithValidateConfig],
	"Identity":         implements[resource.ResourceWithIdentity],
	"UpgradeIdentity":  implements[resource.ResourceWithUpgradeIdentity],
}

var providerInterfaces = map[string]func(any) bool{
	"ConfigValidators":   implements[provider.ProviderWithConfigValidators],
	"EphemeralResources": implements[provider.ProviderWithEphemeralResources],
	"Functions":          implements[provider.ProviderWithFunctions],
	"MetaSchema":         implements[provider.ProviderWithMetaSchema],
	"ValidateConfig":     implements[provider.ProviderWithValidateConfig],
}
