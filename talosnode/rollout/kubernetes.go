package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/compatibility"
	"github.com/siderolabs/talos/pkg/machinery/compatibility/talos110"
	"github.com/siderolabs/talos/pkg/machinery/compatibility/talos111"
	"github.com/siderolabs/talos/pkg/machinery/compatibility/talos112"
	"github.com/siderolabs/talos/pkg/machinery/compatibility/talos113"
	"github.com/siderolabs/talos/pkg/machinery/compatibility/talos114"
	"github.com/siderolabs/talos/pkg/machinery/compatibility/talos19"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"

	"talos-cluster/talosnode/node"
)

// kubernetesSupport is the Kubernetes range of each Talos minor, from machinery's compatibility
// tables (the ones the node itself checks against).
var kubernetesSupport = map[string][2]string{
	"1.9":  {talos19.MinimumKubernetesVersion.String(), talos19.MaximumKubernetesVersion.String()},
	"1.10": {talos110.MinimumKubernetesVersion.String(), talos110.MaximumKubernetesVersion.String()},
	"1.11": {talos111.MinimumKubernetesVersion.String(), talos111.MaximumKubernetesVersion.String()},
	"1.12": {talos112.MinimumKubernetesVersion.String(), talos112.MaximumKubernetesVersion.String()},
	"1.13": {talos113.MinimumKubernetesVersion.String(), talos113.MaximumKubernetesVersion.String()},
	"1.14": {talos114.MinimumKubernetesVersion.String(), talos114.MaximumKubernetesVersion.String()},
}

// errUnknownRelease: the release is newer than this provider's tables; the node decides.
var errUnknownRelease = errors.New("release not in this provider's compatibility tables")

// SupportedKubernetes is the range of Kubernetes versions a Talos release supports, as
// "1.29.0 to 1.34.99", or "" for a release this provider does not know.
func SupportedKubernetes(release string) string {
	var major, minor int
	if _, err := fmt.Sscanf(strings.TrimPrefix(release, "v"), "%d.%d", &major, &minor); err != nil {
		return ""
	}
	r, ok := kubernetesSupport[fmt.Sprintf("%d.%d", major, minor)]
	if !ok {
		return ""
	}
	return r[0] + " to " + r[1]
}

// kubernetesImages are the images of a machine config whose Kubernetes version a running Talos
// checks before it accepts the config (RuntimeValidate, Talos 1.10+,
// pkg/machinery/config/types/v1alpha1/v1alpha1_validation.go ValidateKubernetesImageTag).
func kubernetesImages(cfg config.Provider) [][2]string {
	if cfg == nil || cfg.Machine() == nil {
		return nil
	}
	kubelet := cfg.K8sKubeletConfig()
	if kubelet == nil {
		return nil
	}
	out := [][2]string{{"kubelet", kubelet.Image()}}
	if cfg.Cluster() != nil && cfg.Machine().Type().IsControlPlane() {
		out = append(out,
			[2]string{"kube-apiserver", cfg.K8sAPIServerConfig().Image()},
			[2]string{"kube-controller-manager", cfg.K8sControllerManagerConfig().Image()},
			[2]string{"kube-scheduler", cfg.K8sSchedulerConfig().Image()})
	}
	return out
}

// CheckKubernetes says whether Talos `release` accepts the Kubernetes images of cfg; the error
// names the first image it refuses, its version and the range the release supports.
// errUnknownRelease (wrapped) when the release is not in the tables.
func CheckKubernetes(cfg config.Provider, release string) error {
	talos, err := compatibility.ParseTalosVersion(&machine.VersionInfo{Tag: release})
	if err != nil {
		return fmt.Errorf("Talos release %q: %w", release, err)
	}
	supported := SupportedKubernetes(release)
	if supported == "" {
		return fmt.Errorf("Talos %s: %w", release, errUnknownRelease)
	}
	for _, img := range kubernetesImages(cfg) {
		k8s, err := compatibility.KubernetesVersionFromImageRef(img[1])
		if err != nil {
			return fmt.Errorf("%s image %q has no Kubernetes version tag", img[0], img[1])
		}
		if k8s.SupportedWith(talos) != nil {
			return fmt.Errorf("%s image %s is Kubernetes %s; Talos %s supports %s", img[0], img[1], k8s, release, supported)
		}
	}
	return nil
}

// Preflight reads each existing node's running release and refuses, before anything changes, a
// declaration no order of the node's changes can reach: a running Talos (1.10+) refuses a config
// whose Kubernetes version it does not support, and after an upgrade the target release runs the
// config the node carries now until the new one is applied. It also refuses a Kubernetes change
// `talosctl upgrade-k8s` refuses: a skipped minor or a downgrade across minors from the oldest
// Kubernetes the nodes run (k8spath.go). A node that does not answer is left
// to the rollout's own gates, which wait for it and name it.
func Preflight(ctx context.Context, nodes []Node, opts Options) error {
	var problems, running []string
	for _, n := range nodes {
		if n.New || n.Leaving || len(n.Config) == 0 {
			continue
		}
		declared, err := configloader.NewFromBytes(n.Config)
		if err != nil {
			continue // the node's turn reports it
		}
		callCtx, cancel := context.WithTimeout(ctx, attempt)
		// What the credential may read: a preview's os:reader gets the release, not the config.
		live, err := node.ReadAvailable(callCtx, n.Target, opts.Creds())
		cancel()
		var expired *node.CertificateExpiredError
		if errors.As(err, &expired) {
			// No node answers this credential: nothing is tried.
			return err
		}
		if err != nil {
			if opts.Log != nil {
				opts.Log(fmt.Sprintf("%s: pre-flight could not read the node (%s); the rollout waits for it", n.Target, node.Describe(err)))
			}
			continue
		}
		if live.KubernetesVersion != "" {
			running = append(running, live.KubernetesVersion)
		}
		if n.ControlPlane {
			callCtx, cancel := context.WithTimeout(ctx, attempt)
			running = append(running, controlPlaneVersions(callCtx, n.Target, opts.Creds())...)
			cancel()
		}
		if p := downgradeProblem(n, live); p != "" {
			problems = append(problems, p)
		} else if p := pathProblem(n, live, opts.UpgradePath); p != "" {
			problems = append(problems, p)
		} else if p := orderProblem(n, declared, live); p != "" {
			problems = append(problems, p)
		}
	}
	paths := kubernetesPathProblems(nodes, running)
	problems = append(problems, paths...)
	if len(paths) == 0 && opts.Kubernetes {
		removed, err := liveKubernetesChecks(ctx, nodes, running, opts)
		if err != nil && opts.Log != nil {
			opts.Log(fmt.Sprintf("pre-flight could not run the removed-item checks against the cluster (%s); the rollout goes on without them", node.Describe(err)))
		}
		problems = append(problems, removed...)
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	return nil
}

// liveKubernetesChecks runs go-kubernetes' removed-item checks against the running cluster when
// the declared Kubernetes is a minor ahead of the oldest the nodes run (k8slive.go), with an
// admin kubeconfig from the first control plane that gives one (as talosctl upgrade-k8s gets it).
func liveKubernetesChecks(ctx context.Context, nodes []Node, running []string, opts Options) ([]string, error) {
	from, to := lowestVersion(running), ""
	var cps []Node
	for _, n := range nodes {
		if n.Leaving {
			continue
		}
		if v := declaredKubernetes(n); v != "" && (to == "" || CompareKubernetes(v, to) > 0) {
			to = v
		}
		if n.ControlPlane && !n.New {
			cps = append(cps, n)
		}
	}
	if from == "" || to == "" || sameMinor(from, to) {
		return nil, nil
	}
	var kubeconfig []byte
	for _, n := range cps {
		callCtx, cancel := context.WithTimeout(ctx, attempt)
		c, err := node.Dial(callCtx, n.Target, opts.Creds())
		if err == nil {
			kubeconfig, err = c.Kubeconfig(callCtx)
			c.Close() //nolint:errcheck
		}
		cancel()
		if err == nil {
			break
		}
	}
	// Without a kubeconfig the nodes' flags are still checked; the API resources are not. One
	// attempt's time per node bounds the whole run, as a node that hangs would hold it.
	checkCtx, cancel := context.WithTimeout(ctx, attempt*time.Duration(len(nodes)+1))
	defer cancel()
	return liveRemovedItems(checkCtx, nodes, from, to, opts, kubeconfig)
}

// sameMinor says whether two Kubernetes versions share major and minor.
func sameMinor(a, b string) bool {
	pa := strings.SplitN(strings.TrimPrefix(a, "v"), ".", 3)
	pb := strings.SplitN(strings.TrimPrefix(b, "v"), ".", 3)
	return len(pa) >= 2 && len(pb) >= 2 && pa[0] == pb[0] && pa[1] == pb[1]
}

// kubernetesPathProblems judges the way from the oldest Kubernetes the nodes run (their kubelets)
// to each version the declared configs run, as `talosctl upgrade-k8s` would (KubernetesPath).
func kubernetesPathProblems(nodes []Node, running []string) []string {
	from := lowestVersion(running)
	var out []string
	for _, n := range nodes {
		if n.Leaving {
			continue
		}
		if _, p := KubernetesPath(from, declaredKubernetes(n)); p != "" && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// downgradeProblem refuses a Talos release a minor below the one the node runs. Each minor moves
// etcd forward (Talos 1.11 runs etcd 3.6, 1.10 ran 3.5: constants.DefaultEtcdVersion), and an
// older etcd does not start on the newer one's data, so a control plane would not come back and a
// worker would run an unsupported kubelet skew. Within a minor, going back is a patch rollback.
func downgradeProblem(n Node, live node.State) string {
	running, okRunning := minorOf(live.TalosVersion)
	declared, okDeclared := minorOf(n.TalosVersion)
	if !okRunning || !okDeclared || declared >= running {
		return ""
	}
	return fmt.Sprintf("%s runs Talos %s and the stack declares %s, an older minor: a Talos downgrade across minors is refused "+
		"(the older release's etcd does not start on the newer one's data); declare %s or a later release",
		n.Target.Name, live.TalosVersion, n.TalosVersion, live.TalosVersion)
}

// pathProblem refuses an upgrade Talos' installer would refuse on the node, before any node is
// touched: each release the node goes through (the upgrade path's steps newer than what it runs,
// then the declared release) must be upgradeable from the one before (the installer's pre-flight,
// cmd/installer/pkg/install/preflight.go, with machinery's compatibility data), and must support
// the Kubernetes of the config the node carries until the declared one is applied.
func pathProblem(n Node, live node.State, path []string) string {
	from := live.TalosVersion
	var way []string
	for _, release := range append(slices.Clone(path), n.TalosVersion) {
		if !Older(from, release) {
			continue
		}
		way = append(way, release)
		if err := upgradeable(from, release); err != nil {
			advice := "declare the releases to go through, oldest first, in talos-cluster:upgrade.path"
			if s := suggestPath(from, release); s != "" {
				advice += " (for example a release of each of: " + s + ")"
			}
			return fmt.Sprintf("%s runs Talos %s, and Talos %s cannot be installed over %s (%v): %s",
				n.Target.Name, live.TalosVersion, release, from, err, advice)
		}
		if release != n.TalosVersion && live.Config != nil {
			if err := CheckKubernetes(live.Config, release); err != nil && !errors.Is(err, errUnknownRelease) {
				return fmt.Sprintf("%s runs the config it carries on each release of its way (%s) until the declared config is applied, and Talos %s refuses it: %s",
					n.Target.Name, strings.Join(way, " -> "), release, err)
			}
		}
		from = release
	}
	return ""
}

// upgradeable is nil when Talos release `to` installs over `from` (machinery's compatibility).
func upgradeable(from, to string) error {
	host, err := compatibility.ParseTalosVersion(&machine.VersionInfo{Tag: from})
	if err != nil {
		return err
	}
	target, err := compatibility.ParseTalosVersion(&machine.VersionInfo{Tag: to})
	if err != nil {
		return err
	}
	return target.UpgradeableFrom(host)
}

// suggestPath is the fewest minors ("1.13") between from and to that make each step
// upgradeable, taking the newest minor the current one allows each time; "" when none does.
func suggestPath(from, to string) string {
	target, ok := minorOf(to)
	var minors []string
	for cur := from; upgradeable(cur, to) != nil; {
		start, ok2 := minorOf(cur)
		if !ok || !ok2 {
			return ""
		}
		next := ""
		for m := target - 1; m > start; m-- {
			candidate := fmt.Sprintf("v%d.%d.0", m/1000, m%1000)
			if upgradeable(cur, candidate) == nil {
				next = candidate
				break
			}
		}
		if next == "" {
			return ""
		}
		minors = append(minors, strings.TrimSuffix(strings.TrimPrefix(next, "v"), ".0"))
		cur = next
	}
	return strings.Join(minors, ", ")
}

// minorOf is major*1000+minor of a release tag such as v1.11.5.
func minorOf(version string) (int, bool) {
	var major, minor, patch int
	if _, err := fmt.Sscanf(strings.TrimPrefix(version, "v"), "%d.%d.%d", &major, &minor, &patch); err != nil {
		return 0, false
	}
	return major*1000 + minor, true
}

func orderProblem(n Node, declared config.Provider, live node.State) string {
	running := CheckKubernetes(declared, live.TalosVersion)
	if running == nil || errors.Is(running, errUnknownRelease) {
		return "" // applied (or staged) on the running release
	}
	if live.TalosVersion == n.TalosVersion {
		return fmt.Sprintf("%s runs Talos %s, which refuses the declared config: %s; declare a Kubernetes version in that range or a Talos release that supports it",
			n.Target.Name, live.TalosVersion, running)
	}
	if live.ConfigDenied {
		// The config the node carries was not read (os:reader): the update's own pre-flight,
		// with os:admin, judges the order.
		return ""
	}
	after := CheckKubernetes(live.Config, n.TalosVersion)
	if after == nil || errors.Is(after, errUnknownRelease) {
		return "" // upgraded first, then applied
	}
	return fmt.Sprintf("%s runs Talos %s, which refuses the declared config (%s), and Talos %s refuses the config the node carries now (%s): "+
		"no order of upgrade and config apply works; change Kubernetes and Talos in two updates, each within both releases' ranges",
		n.Target.Name, live.TalosVersion, running, n.TalosVersion, after)
}
