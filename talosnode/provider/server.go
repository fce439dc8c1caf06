package provider

import (
	"context"
	"regexp"
	"slices"
	"strings"

	p "github.com/pulumi/pulumi-go-provider"
	pprovider "github.com/pulumi/pulumi/pkg/v3/resource/provider"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
	rpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// Serve runs the provider as a plugin: the gRPC server of pulumi-go-provider, with every Diff's
// answer shaped for reading (shapeDiff).
func Serve(ctx context.Context, prov p.Provider, version string) error {
	return pprovider.MainContext(ctx, Name, func(host *pprovider.HostClient) (rpc.ResourceProviderServer, error) {
		srv, err := p.RawServer(Name, version, prov)(host)
		if err != nil {
			return nil, err
		}
		return summaryServer{srv}, nil
	})
}

type summaryServer struct{ rpc.ResourceProviderServer }

func (s summaryServer) Diff(ctx context.Context, req *rpc.DiffRequest) (*rpc.DiffResponse, error) {
	resp, err := s.ResourceProviderServer.Diff(ctx, req)
	if err == nil && resp != nil {
		shapeDiff(resource.URN(req.GetUrn()).Type(), resp)
	}
	return resp, err
}

// shapeDiff makes a preview read like a plan. What --diff prints is the detailed diff; what the
// changed properties are (diffs, which `npm run drift` reports) stays as it was.
//
// NodeState: when keys of config change, they are the change, each with its path and both values
// (config["machine.sysctls[\"net.core.somaxconn\"]"]); configHash and the secret
// machineConfiguration ([secret] => [secret]) change with them and are not printed again. A change
// of a secret alone changes configHash only, which is then printed.
//
// Rollout: a node's secret machineConfiguration ([secret] => [secret], nothing to read) is left to
// the plan its preview logs, naming the node, the config keys and whether it reboots. Other
// changes (a release, a schematic, a setting) are printed as they were; when none is left, the one
// entry is PlanDiffKey, a path with no value: --diff prints nothing for it.
//
// Last, diffs gets the top-level property of every changed path: the CLI's one-line summary
// ([diff: ~config]) names only top-level properties that diffs lists itself.
func shapeDiff(typ tokens.Type, resp *rpc.DiffResponse) {
	d := resp.GetDetailedDiff()
	switch typ {
	case nodeStateType:
		for k := range d {
			if strings.HasPrefix(k, "config[") || strings.HasPrefix(k, "config.") {
				delete(d, "configHash")
				delete(d, "machineConfiguration")
				break
			}
		}
	case rolloutType:
		dropped := false
		for k, v := range d {
			if secretConfigPath.MatchString(k) && v.GetKind() == rpc.PropertyDiff_UPDATE {
				delete(d, k)
				dropped = true
			}
		}
		if dropped && len(d) == 0 {
			d[PlanDiffKey] = &rpc.PropertyDiff{Kind: rpc.PropertyDiff_UPDATE, InputDiff: true}
			resp.Diffs = append(resp.Diffs, PlanDiffKey)
		}
	}
	resp.Diffs = summaryDiffs(resp.Diffs)
}

// PlanDiffKey is the Rollout's diff entry when only nodes' secret configs change: no property
// has that name, so --diff prints nothing for it, and the one-line summary reads [diff: ~plan].
const PlanDiffKey = "plan"

var secretConfigPath = regexp.MustCompile(`^nodes\[\d+\]\.machineConfiguration$`)

// summaryDiffs adds, to the changed paths of a diff, the top-level property each one is in.
func summaryDiffs(diffs []string) []string {
	out := slices.Clone(diffs)
	for _, d := range diffs {
		path, err := resource.ParsePropertyPath(d)
		if err != nil || len(path) < 2 {
			continue
		}
		if top, ok := path[0].(string); ok && !slices.Contains(out, top) {
			out = append(out, top)
		}
	}
	return out
}
