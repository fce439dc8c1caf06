// Command sdkgen writes the TypeScript SDK of a provider from its Pulumi schema, with the same
// Node.js code generator `pulumi package gen-sdk` uses. It exists because the Node.js language host
// that can be built here predates the GeneratePackage call that gen-sdk makes.
//
// Usage: sdkgen SCHEMA.json OUT_DIR VERSION
//
// VERSION is the plugin version the SDK asks the engine for. The package.json points at the
// compiled bin/ folder, since the SDK is used from where it is generated rather than published.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/blang/semver"
	"github.com/pulumi/pulumi/pkg/v3/codegen/nodejs"
	"github.com/pulumi/pulumi/pkg/v3/codegen/schema"
)

// noLoader refuses every reference: the Talos schema refers to no other package.
type noLoader struct{}

var errNoRefs = errors.New("the schema refers to another package, which sdkgen does not load")

func (noLoader) LoadPackage(string, *semver.Version) (*schema.Package, error) { return nil, errNoRefs }
func (noLoader) LoadPackageV2(context.Context, *schema.PackageDescriptor) (*schema.Package, error) {
	return nil, errNoRefs
}
func (noLoader) LoadPackageReference(string, *semver.Version) (schema.PackageReference, error) {
	return nil, errNoRefs
}
func (noLoader) LoadPackageReferenceV2(context.Context, *schema.PackageDescriptor) (schema.PackageReference, error) {
	return nil, errNoRefs
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "sdkgen:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) != 3 {
		return errors.New("usage: sdkgen SCHEMA.json OUT_DIR VERSION")
	}
	raw, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	var spec schema.PackageSpec
	if err := json.Unmarshal(raw, &spec); err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	spec.Version = args[2]
	pkg, err := schema.ImportSpec(spec, map[string]schema.Language{"nodejs": nodejs.Importer}, noLoader{}, schema.ValidationOptions{})
	if err != nil {
		return fmt.Errorf("binding %s: %w", args[0], err)
	}
	files, err := nodejs.GeneratePackage("talos-cluster-sdkgen", pkg, nil, nil, false, noLoader{})
	if err != nil {
		return err
	}
	if files["package.json"], err = pointAtBin(files["package.json"], args[2]); err != nil {
		return err
	}
	// The compiled utilities read their version from the package.json beside them.
	files["bin/package.json"] = files["package.json"]
	for name, body := range files {
		path := filepath.Join(args[1], name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, body, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// pointAtBin makes the package loadable from its source folder once tsc has written bin/.
func pointAtBin(packageJSON []byte, version string) ([]byte, error) {
	var pkg map[string]any
	if err := json.Unmarshal(packageJSON, &pkg); err != nil {
		return nil, fmt.Errorf("generated package.json: %w", err)
	}
	pkg["version"] = version
	pkg["main"] = "bin/index.js"
	pkg["types"] = "bin/index.d.ts"
	out, err := json.MarshalIndent(pkg, "", "    ")
	return append(out, '\n'), err
}
