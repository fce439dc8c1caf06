package node

import (
	"fmt"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/compatibility"
	"github.com/siderolabs/talos/pkg/machinery/config"
)

// runtimeValidate is the part of Talos' RuntimeValidate (1.10 and later) that a machine config
// meets on a configured node before any apply mode is looked at, staged and dry runs included
// (T11: internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go:198-206): the kubelet
// image and, on a control plane, the API server, controller manager and scheduler images must
// carry a Kubernetes version the RUNNING release supports
// (pkg/machinery/config/types/v1alpha1/v1alpha1_validation.go ValidateKubernetesImageTag, the
// ranges in pkg/machinery/compatibility). A release before 1.10 does not check.
func runtimeValidate(running string, cfg config.Provider) error {
	talos, err := compatibility.ParseTalosVersion(&machine.VersionInfo{Tag: running})
	if err != nil {
		return fmt.Errorf("failed to parse Talos version: %w", err)
	}
	var major, minor int
	if _, err := fmt.Sscanf(strings.TrimPrefix(running, "v"), "%d.%d", &major, &minor); err == nil && major == 1 && minor < 10 {
		return nil
	}
	var problems []string
	check := func(name, ref string) {
		k8s, err := compatibility.KubernetesVersionFromImageRef(ref)
		if err == nil {
			err = k8s.SupportedWith(talos)
		} else {
			err = fmt.Errorf("failed to parse Kubernetes version from image reference %q: %w", ref, err)
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s image is not valid: %s", name, err))
		}
	}
	if cfg.Machine() != nil {
		check("kubelet", kubeletImage(cfg))
	}
	if cfg.Machine() != nil && cfg.Cluster() != nil && cfg.Machine().Type().IsControlPlane() {
		for _, c := range components {
			if image, ok := componentImage(cfg, c); ok {
				check(c, image)
			}
		}
	}
	if len(problems) == 0 {
		return nil
	}
	// hashicorp/go-multierror's format, as Talos returns it.
	noun := "errors"
	if len(problems) == 1 {
		noun = "error"
	}
	return fmt.Errorf("%d %s occurred:\n\t* %s\n\n", len(problems), noun, strings.Join(problems, "\n\t* "))
}
