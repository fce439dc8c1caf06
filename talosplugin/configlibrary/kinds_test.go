// Package configlibrary checks the program's table of config document kinds
// (lib/versions.ts CONFIG_DOCUMENT_KINDS and PLUGIN_CONFIG_LIBRARY) against the Talos
// config library this plugin is built with: the stack config refuses a patch document by that
// table, so it must say exactly what the plugin's library decodes.
package configlibrary

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
)

const versionsFile = "../../lib/versions.ts"

type kind struct {
	name  string
	since int // Talos minor of the first config library that decodes it
}

// tableKinds reads the kinds and the library's minor from lib/versions.ts.
func tableKinds(t *testing.T) (kinds []kind, library string, libraryMinor int) {
	t.Helper()
	text, err := os.ReadFile(versionsFile)
	if err != nil {
		t.Fatalf("reading the program's table: %v", err)
	}
	src := string(text)
	lib := regexp.MustCompile(`PLUGIN_CONFIG_LIBRARY = \{ version: "(v[0-9.]+)", minor: "1\.(\d+)"`).FindStringSubmatch(src)
	if lib == nil {
		t.Fatalf("%s: PLUGIN_CONFIG_LIBRARY not found", versionsFile)
	}
	libraryMinor, _ = strconv.Atoi(lib[2])
	begin := strings.Index(src, "config-document-kinds:begin")
	end := strings.Index(src, "config-document-kinds:end")
	if begin < 0 || end < begin {
		t.Fatalf("%s: config-document-kinds markers not found", versionsFile)
	}
	for _, m := range regexp.MustCompile(`(?m)^\s*(\w+): "1\.(\d+)",$`).FindAllStringSubmatch(src[begin:end], -1) {
		minor, _ := strconv.Atoi(m[2])
		kinds = append(kinds, kind{name: m[1], since: minor})
	}
	if len(kinds) == 0 {
		t.Fatalf("%s: no kinds between the markers", versionsFile)
	}
	return kinds, lib[1], libraryMinor
}

func TestLibraryVersionIsThePlugins(t *testing.T) {
	_, library, _ := tableKinds(t)
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*github.com/siderolabs/talos/pkg/machinery (v\S+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod does not require github.com/siderolabs/talos/pkg/machinery")
	}
	if string(m[1]) != library {
		t.Fatalf("the plugin builds with machinery %s, lib/versions.ts says %s", m[1], library)
	}
}

func TestDocumentKindsMatchTheLibrary(t *testing.T) {
	kinds, _, libraryMinor := tableKinds(t)
	for _, k := range append(kinds, kind{name: "NoSuchConfig", since: 99}) {
		t.Run(k.name, func(t *testing.T) {
			_, err := configloader.NewFromBytes([]byte("apiVersion: v1alpha1\nkind: " + k.name + "\n"))
			// A known kind may still fail validation (missing fields); only "not registered" means unknown.
			decodes := err == nil || !strings.Contains(err.Error(), "not registered")
			if want := k.since <= libraryMinor; decodes != want {
				t.Fatalf("table says %s arrived in 1.%d (library 1.%d decodes it: %v), library says decodes=%v (%v)", k.name, k.since, libraryMinor, want, decodes, err)
			}
		})
	}
}
