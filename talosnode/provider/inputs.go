package provider

import (
	"context"
	"fmt"
	"time"

	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi/sdk/v3/go/property"

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

// progressSink is where a wait of this request shows where it stands: the resource's row in
// `pulumi up` (InfoStatus, shown without -v, every few seconds) and its diagnostics (Info, the
// first line and then now and then). Info, not Warning: waiting for a node that is installing or
// rebooting is expected, and a warning count on every first up would cry wolf.
func progressSink(ctx context.Context) progress.Sink {
	logger := p.GetLogger(ctx)
	return progress.Sink{Status: logger.InfoStatus, Log: logger.Info}
}
