package node

import (
	"fmt"

	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/resource/protobuf"
	"github.com/siderolabs/talos/pkg/machinery/config"
	configres "github.com/siderolabs/talos/pkg/machinery/resources/config"
	"go.yaml.in/yaml/v4"
)

// yamlSpecAnnotation marks, from machinery 1.13 on, a MachineConfig whose YAML spec is the config
// as a YAML string (resources/config/machine_config.go); clients then decode the string.
const yamlSpecAnnotation = "talos.dev/yaml-spec"

// machineConfig is a MachineConfig resource as Talos 1.11 serves it. Its protobuf spec is the
// same in every release (the config's bytes), but 1.11's YAML spec, what `talosctl get
// machineconfig -o yaml` prints under spec, is the config document itself, with no annotation;
// machinery 1.14's is the config as one YAML string, marked by yamlSpecAnnotation, which a 1.11
// talosctl prints as a string of a string.
type machineConfig struct{ *configres.MachineConfig }

func newMachineConfig(cfg config.Provider, id resource.ID) machineConfig {
	r := configres.NewMachineConfigWithID(cfg, id)
	r.Metadata().Annotations().Delete(yamlSpecAnnotation)
	return machineConfig{r}
}

// Spec is the config document as YAML, and its bytes as protobuf.
func (r machineConfig) Spec() any { return configDocument{r.MachineConfig} }

// DeepCopy keeps the Talos 1.11 form.
func (r machineConfig) DeepCopy() resource.Resource {
	return machineConfig{r.MachineConfig.DeepCopy().(*configres.MachineConfig)}
}

type configDocument struct{ r *configres.MachineConfig }

// MarshalYAML is the config's documents as YAML nodes, comments kept, so the YAML spec reads as
// the config's text.
func (d configDocument) MarshalYAML() (any, error) {
	data, err := d.r.Provider().Bytes()
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("machine config as YAML: %w", err)
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

// MarshalProto is machinery's protobuf spec (the config's bytes), unchanged.
func (d configDocument) MarshalProto() ([]byte, error) {
	m, ok := d.r.Spec().(protobuf.ProtoMarshaler)
	if !ok {
		return nil, fmt.Errorf("MachineConfig spec %T has no protobuf form", d.r.Spec())
	}
	return m.MarshalProto()
}
