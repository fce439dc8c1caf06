package provider

import (
	"context"
	"fmt"
	"time"

	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi/sdk/v3/go/property"
	"github.com/siderolabs/talos/pkg/machinery/role"

	"talos-cluster/talosnode/node"
	"talos-cluster/talosnode/progress"
)

// The inputs every resource shares, read one way: durations, the client configuration, Check
// failures, and where a wait shows where it stands.

// positiveDuration reads an input that must be a positive Go duration (10m, 90s); the error
// names the input: `timeout "0s" is not a positive Go duration`.
func positiveDuration(name, value string) (time.Duration, error) {
	d, err := time.ParseDuration(value)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s %q is not a positive Go duration", name, value)
	}
	return d, nil
}

// checkDuration is positiveDuration in a Check: a failure of key that says what would do
// ("such as " + example). An unknown value (an output of the program, in a preview) is judged
// once it is known, at the latest when the resource is created.
func checkDuration(inputs property.Map, key, value, example string, fail func(property, reason string)) {
	if v, ok := inputs.GetOk(key); ok && v.IsComputed() {
		return
	}
	if _, err := positiveDuration(key, value); err != nil {
		fail(key, fmt.Sprintf("%q is not a positive Go duration such as %s", value, example))
	}
}

// failWith is how a Check records a failure in failures: each is kept, so the stack's author
// reads every problem at once.
func failWith(failures *[]p.CheckFailure) func(property, reason string) {
	return func(property, reason string) {
		*failures = append(*failures, p.CheckFailure{Property: property, Reason: reason})
	}
}

// credentials is the stack's client configuration as the node package dials with it.
func credentials(c ClientConfiguration) node.Credentials {
	return node.Credentials{CACertificate: c.CACertificate, ClientCertificate: c.ClientCertificate, ClientKey: c.ClientKey}
}

// issuerOf is the process's os:admin issuer for the machine secrets' Talos CA (certs.os), or nil
// when the resource is given no machine secrets (or, in a preview, not yet known ones): then the
// stack's clientConfiguration is used. The error names the input and what is wrong with it.
func issuerOf(s *MachineSecrets) (*node.Issuer, error) {
	if s == nil || (s.Certs.Os.Cert == "" && s.Certs.Os.Key == "") {
		return nil, nil
	}
	issuer, err := node.NewIssuer(s.Certs.Os.Cert, s.Certs.Os.Key, role.MakeSet(role.Admin))
	if err != nil {
		return nil, fmt.Errorf("machineSecrets.certs.os (the Talos CA): %w; pass the talos plugin's machine.Secrets machineSecrets unchanged", err)
	}
	return issuer, nil
}

// dialCredentials are what the provider dials the nodes with for one operation that may last up
// to lasting: an os:admin certificate it mints from the machine secrets' Talos CA when the
// resource is given them (the stored client certificate lives a year; this one an hour, or as long
// as the operation, and never leaves the process), else the stack's clientConfiguration.
func dialCredentials(c ClientConfiguration, s *MachineSecrets, lasting time.Duration) (node.Credentials, error) {
	issuer, err := issuerOf(s)
	if err != nil || issuer == nil {
		return credentials(c), err
	}
	return issuer.Credentials(lasting), nil
}

// checkMachineSecrets is a Check's judgement of the machineSecrets input: when given and known,
// its Talos CA must be one a certificate can be minted from.
func checkMachineSecrets(inputs property.Map, s *MachineSecrets, fail func(property, reason string)) {
	if v, ok := inputs.GetOk("machineSecrets"); !ok || v.HasComputed() {
		return
	}
	if _, err := issuerOf(s); err != nil {
		fail("machineSecrets", err.Error())
	}
}

// withoutMachineSecrets drops the machineSecrets input from a diff's two sides: it is only the
// credential the provider mints its own certificates with, so adding it to a stack, or the
// secrets' renewal, changes nothing on a node.
func withoutMachineSecrets(m property.Map) property.Map {
	return m.Delete("machineSecrets")
}

// progressSink is where a wait of this request shows where it stands: the resource's row in
// `pulumi up` (InfoStatus, shown without -v, every few seconds) and its diagnostics (Info, the
// first line and then now and then). Info, not Warning: waiting for a node that is installing or
// rebooting is expected, and a warning count on every first up would cry wolf.
func progressSink(ctx context.Context) progress.Sink {
	logger := p.GetLogger(ctx)
	return progress.Sink{Status: logger.InfoStatus, Log: logger.Info}
}
