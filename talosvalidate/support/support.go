// Package support reports what Talos' config library (pkg/machinery/compatibility) says each
// Talos minor supports: the Kubernetes releases it runs, the releases a node may upgrade from,
// how far back it may go. lib/versions.ts's hand-written table is checked against it
// (test/versions-compat.test.ts), so that table cannot go stale silently.
package support

import (
	"fmt"
	"strings"

	"github.com/blang/semver/v4"
	"github.com/siderolabs/talos/pkg/machinery/compatibility/talos110"
	"github.com/siderolabs/talos/pkg/machinery/compatibility/talos111"
	"github.com/siderolabs/talos/pkg/machinery/compatibility/talos112"
	"github.com/siderolabs/talos/pkg/machinery/compatibility/talos113"
	"github.com/siderolabs/talos/pkg/machinery/compatibility/talos114"
	"github.com/siderolabs/talos/pkg/machinery/compatibility/talos17"
	"github.com/siderolabs/talos/pkg/machinery/compatibility/talos18"
	"github.com/siderolabs/talos/pkg/machinery/compatibility/talos19"
	"github.com/siderolabs/talos/pkg/machinery/gendata"
)

// Report is the library's support data, one entry per Talos minor, oldest first.
type Report struct {
	// Library is the machinery release the data comes from.
	Library  string    `json:"library"`
	Releases []Release `json:"releases"`
}

// Release is one Talos minor's row. Versions are machinery's own, as it states them.
type Release struct {
	// Talos is the minor, like "1.11".
	Talos string `json:"talos"`
	// Kubernetes: machinery accepts min <= version <= max; max is stated as "1.34.99", the
	// highest patch of the newest minor. MinMinor/MaxMinor are the minors ("1.29", "1.34").
	Kubernetes Kubernetes `json:"kubernetes"`
	// UpgradeFrom is the oldest Talos release a node may upgrade from to this minor.
	UpgradeFrom string `json:"upgradeFrom"`
	// DowngradeFromBelow: a node running a release below it may move to this minor; a node at
	// or above it may not (machinery's MaximumHostDowngradeVersion, exclusive). The project's
	// own rule is stricter: no downgrade across minors at all (lib/versions.ts talosDowngrade).
	DowngradeFromBelow string `json:"downgradeFromBelow"`
	// DeniedUpgradeFrom are releases a node may not upgrade from, whatever the range says.
	DeniedUpgradeFrom []string `json:"deniedUpgradeFrom"`
}

// Kubernetes is the range of Kubernetes releases a Talos minor supports.
type Kubernetes struct {
	Min      string `json:"min"`
	Max      string `json:"max"`
	MinMinor string `json:"minMinor"`
	MaxMinor string `json:"maxMinor"`
}

// row is one compatibility/talos1NN package's exported data.
type row struct {
	majorMinor                         [2]uint64
	minUpgrade, maxDowngrade, k8s, k8x semver.Version
	denied                             []semver.Version
}

// rows names the packages: machinery has no list of them. A new minor is a new line here.
var rows = []row{
	{talos17.MajorMinor, talos17.MinimumHostUpgradeVersion, talos17.MaximumHostDowngradeVersion, talos17.MinimumKubernetesVersion, talos17.MaximumKubernetesVersion, talos17.DeniedHostUpgradeVersions},
	{talos18.MajorMinor, talos18.MinimumHostUpgradeVersion, talos18.MaximumHostDowngradeVersion, talos18.MinimumKubernetesVersion, talos18.MaximumKubernetesVersion, talos18.DeniedHostUpgradeVersions},
	{talos19.MajorMinor, talos19.MinimumHostUpgradeVersion, talos19.MaximumHostDowngradeVersion, talos19.MinimumKubernetesVersion, talos19.MaximumKubernetesVersion, talos19.DeniedHostUpgradeVersions},
	{talos110.MajorMinor, talos110.MinimumHostUpgradeVersion, talos110.MaximumHostDowngradeVersion, talos110.MinimumKubernetesVersion, talos110.MaximumKubernetesVersion, talos110.DeniedHostUpgradeVersions},
	{talos111.MajorMinor, talos111.MinimumHostUpgradeVersion, talos111.MaximumHostDowngradeVersion, talos111.MinimumKubernetesVersion, talos111.MaximumKubernetesVersion, talos111.DeniedHostUpgradeVersions},
	{talos112.MajorMinor, talos112.MinimumHostUpgradeVersion, talos112.MaximumHostDowngradeVersion, talos112.MinimumKubernetesVersion, talos112.MaximumKubernetesVersion, talos112.DeniedHostUpgradeVersions},
	{talos113.MajorMinor, talos113.MinimumHostUpgradeVersion, talos113.MaximumHostDowngradeVersion, talos113.MinimumKubernetesVersion, talos113.MaximumKubernetesVersion, talos113.DeniedHostUpgradeVersions},
	{talos114.MajorMinor, talos114.MinimumHostUpgradeVersion, talos114.MaximumHostDowngradeVersion, talos114.MinimumKubernetesVersion, talos114.MaximumKubernetesVersion, talos114.DeniedHostUpgradeVersions},
}

// Data returns the report.
func Data() Report {
	out := Report{Library: strings.TrimSpace(gendata.VersionTag)}
	minor := func(v semver.Version) string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }
	for _, r := range rows {
		denied := make([]string, 0, len(r.denied))
		for _, d := range r.denied {
			denied = append(denied, d.String())
		}
		out.Releases = append(out.Releases, Release{
			Talos: fmt.Sprintf("%d.%d", r.majorMinor[0], r.majorMinor[1]),
			Kubernetes: Kubernetes{
				Min: r.k8s.String(), Max: r.k8x.String(),
				MinMinor: minor(r.k8s), MaxMinor: minor(r.k8x),
			},
			UpgradeFrom:        r.minUpgrade.String(),
			DowngradeFromBelow: r.maxDowngrade.String(),
			DeniedUpgradeFrom:  denied,
		})
	}
	return out
}
