package rollout

import (
	"errors"
	"fmt"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/compatibility"
	"github.com/siderolabs/talos/pkg/machinery/compatibility/talos110"
	"github.com/siderolabs/talos/pkg/machinery/compatibility/talos111"
	"github.com/siderolabs/talos/pkg/machinery/compatibility/talos112"
	"github.com/siderolabs/talos/pkg/machinery/compatibility/talos19"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/types/v1alpha1"
)

// kubernetesSupport is the Kubernetes range of each Talos minor, from machinery's compatibility
// tables (the ones the node itself checks against).
var kubernetesSupport = map[string][2]string{
	"1.9":  {talos19.MinimumKubernetesVersion.String(), talos19.MaximumKubernetesVersion.String()},
	"1.10": {talos110.MinimumKubernetesVersion.String(), talos110.MaximumKubernetesVersion.String()},
	"1.11": {talos111.MinimumKubernetesVersion.String(), talos111.MaximumKubernetesVersion.String()},
	"1.12": {talos112.MinimumKubernetesVersion.String(), talos112.MaximumKubernetesVersion.String()},
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
	out := [][2]string{{"kubelet", cfg.Machine().Kubelet().Image()}}
	if cfg.Cluster() != nil && cfg.Machine().Type().IsControlPlane() {
		out = append(out,
			[2]string{"kube-apiserver", cfg.Cluster().APIServer().Image()},
			[2]string{"kube-controller-manager", cfg.Cluster().ControllerManager().Image()},
			[2]string{"kube-scheduler", cfg.Cluster().Scheduler().Image()})
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
		k8s, err := v1alpha1.KubernetesVersionFromImageRef(img[1])
		if err != nil {
			return fmt.Errorf("%s image %q has no Kubernetes version tag", img[0], img[1])
		}
		if k8s.SupportedWith(talos) != nil {
			return fmt.Errorf("%s image %s is Kubernetes %s; Talos %s supports %s", img[0], img[1], k8s, release, supported)
		}
	}
	return nil
}
