package rollout

import (
	"fmt"
	"strings"

	"github.com/blang/semver/v4"
	"github.com/siderolabs/go-kubernetes/kubernetes/upgrade"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"

	"talos-cluster/talosnode/node"
)

// KubernetesVersionKey is the stack key a Kubernetes path refusal names.
const KubernetesVersionKey = "talos-cluster:kubernetesVersion"

// KubernetesPath judges a Kubernetes change from the version the cluster runs to the declared one
// the way `talosctl upgrade-k8s` does: go-kubernetes' upgrade.NewPath(from, to).IsSupported(),
// which allows the same minor (a patch either way) and the next one. path is "1.36.2 -> 1.37.0"
// ("" when nothing changes or a version is not known); problem is "" when the way is allowed, else
// the refusal naming KubernetesVersionKey and the step allowed next: a skipped minor, a downgrade
// across minors, or a step go-kubernetes' table does not know.
func KubernetesPath(from, to string) (path string, problem string) {
	from, to = strings.TrimPrefix(from, "v"), strings.TrimPrefix(to, "v")
	f, errFrom := semver.ParseTolerant(from)
	t, errTo := semver.ParseTolerant(to)
	if errFrom != nil || errTo != nil {
		return "", ""
	}
	if !f.Equals(t) {
		path = from + " -> " + to
	}
	p, err := upgrade.NewPath(from, to)
	if err != nil || p.IsSupported() {
		return path, ""
	}
	switch {
	case t.Major == f.Major && t.Minor > f.Minor+1:
		skipped := make([]string, 0, t.Minor-f.Minor-1)
		for m := f.Minor + 1; m < t.Minor; m++ {
			skipped = append(skipped, fmt.Sprintf("%d.%d", f.Major, m))
		}
		return path, fmt.Sprintf("%s: %s skips %s (the cluster runs %s); Kubernetes moves one minor at a time: declare a %d.%d release first",
			KubernetesVersionKey, to, strings.Join(skipped, ", "), from, f.Major, f.Minor+1)
	case t.Major < f.Major || (t.Major == f.Major && t.Minor < f.Minor):
		return path, fmt.Sprintf("%s: %s is older than the %s the cluster runs: Kubernetes is not downgraded across minors; declare %d.%d.x or later",
			KubernetesVersionKey, to, from, f.Major, f.Minor)
	default:
		return path, fmt.Sprintf("%s: %s -> %s is not an upgrade go-kubernetes' table knows (talosctl upgrade-k8s refuses it)",
			KubernetesVersionKey, from, to)
	}
}

// declaredKubernetes is the Kubernetes version a node's declared config runs (its kubelet image
// tag, without a leading v), "" when the config does not say.
func declaredKubernetes(n Node) string {
	if len(n.Config) == 0 {
		return ""
	}
	cfg, err := configloader.NewFromBytes(n.Config)
	if err != nil {
		return ""
	}
	return kubeletVersion(cfg)
}

func kubeletVersion(cfg config.Provider) string {
	if cfg == nil || cfg.Machine() == nil || cfg.K8sKubeletConfig() == nil {
		return ""
	}
	return strings.TrimPrefix(node.ImageTag(cfg.K8sKubeletConfig().Image()), "v")
}

// lowestVersion is the oldest of the versions, "" when none parses.
func lowestVersion(versions []string) string {
	lowest := ""
	var low semver.Version
	for _, v := range versions {
		parsed, err := semver.ParseTolerant(strings.TrimPrefix(v, "v"))
		if err != nil {
			continue
		}
		if lowest == "" || parsed.LT(low) {
			lowest, low = strings.TrimPrefix(v, "v"), parsed
		}
	}
	return lowest
}

// CompareKubernetes orders two Kubernetes versions (a leading v or not) as semver: -1, 0 or 1;
// a version that does not parse sorts before every one that does.
func CompareKubernetes(a, b string) int {
	va, errA := semver.ParseTolerant(strings.TrimPrefix(a, "v"))
	vb, errB := semver.ParseTolerant(strings.TrimPrefix(b, "v"))
	switch {
	case errA != nil && errB != nil:
		return 0
	case errA != nil:
		return -1
	case errB != nil:
		return 1
	}
	return va.Compare(vb)
}
