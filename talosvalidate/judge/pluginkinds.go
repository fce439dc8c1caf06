package judge

import (
	"fmt"

	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"
	"github.com/siderolabs/talos/pkg/machinery/config/types/v1alpha1"
)

// PluginLibraryVersion is the Talos config library inside the talos plugin
// (terraform-provider-talos v0.7.1 pins machinery v1.9.2; lib/versions.ts PLUGIN_CONFIG_LIBRARY).
// This tool judges with a newer library (LibraryVersion), which decodes document kinds the
// plugin's does not; a patch carrying one would fail in the plugin, so it is refused here as the
// plugin's library refuses it.
const PluginLibraryVersion = "v1.9.2"

// pluginKinds are the multi-document kinds (apiVersion v1alpha1) the plugin's library registers:
// those of lib/versions.ts CONFIG_DOCUMENT_KINDS up to Talos 1.9 (a test checks the two agree;
// talosplugin's test checks that table against the plugin's library itself).
var pluginKinds = map[string]bool{
	"SideroLinkConfig":           true,
	"EventSinkConfig":            true,
	"KmsgLogConfig":              true,
	"NetworkDefaultActionConfig": true,
	"NetworkRuleConfig":          true,
	"ExtensionServiceConfig":     true,
	"WatchdogTimerConfig":        true,
	"KubeSpanEndpointsConfig":    true,
	"TrustedRootsConfig":         true,
	"VolumeConfig":               true,
}

// pluginRefuses returns the error the plugin's library gives for a document kind it does not
// register, or nil. The words in brackets are that library's (configloader's decoder:
// `"<kind>" "<apiVersion>": not registered`), as describeLoad quotes them for any unknown kind.
func pluginRefuses(patch configpatcher.Patch) error {
	smp, ok := patch.(configpatcher.StrategicMergePatch)
	if !ok {
		return nil
	}
	for _, doc := range smp.Documents() {
		if doc.Kind() == v1alpha1.Version || pluginKinds[doc.Kind()] {
			continue
		}
		return describeLoad(fmt.Errorf("%q %q: not registered", doc.Kind(), doc.APIVersion()), "")
	}
	return nil
}
