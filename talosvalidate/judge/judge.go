// Package judge builds each node's machine configuration the way the talos plugin does, applies
// the stack's patches one at a time with Talos' own config patcher, validates the result with
// Talos' own validator, and ties every problem and warning to the patch that caused it.
package judge

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/hashicorp/go-multierror"
)

// GeneratedKey blames what no patch caused: the config Talos generates before any patch.
const GeneratedKey = "(generated config)"

// Input is what the program will generate for each node.
type Input struct {
	ClusterName string `json:"clusterName"`
	Endpoint    string `json:"endpoint"`
	// TalosVersion is the installer release; it stands in for Contract when that is empty.
	TalosVersion string `json:"talosVersion"`
	// Contract is the config contract: the Talos release the cluster was created with.
	Contract          string `json:"contract"`
	KubernetesVersion string `json:"kubernetesVersion"`
	Nodes             []Node `json:"nodes"`
}

// Node is one node and its patches, in the order the program applies them.
type Node struct {
	Name    string  `json:"name"`
	Role    string  `json:"role"`
	Patches []Patch `json:"patches"`
}

// Patch is one strategic-merge (or JSON 6902) patch and the stack key it comes from.
type Patch struct {
	Key   string `json:"key"`
	Patch string `json:"patch"`
}

// Finding is one problem or warning: which stack key, on which nodes, and what Talos said.
type Finding struct {
	Key string `json:"key"`
	// Node lists every node the finding holds for, comma-separated in the input's order.
	Node    string `json:"node"`
	Message string `json:"message"`
}

// Report lists every problem (the config would be refused) and every warning.
type Report struct {
	Problems []Finding `json:"problems"`
	Warnings []Finding `json:"warnings"`
}

// InputError is input this tool cannot judge (as opposed to a patch it refuses).
type InputError struct{ Problems []string }

func (e *InputError) Error() string { return strings.Join(e.Problems, "; ") }

// Roles are the node roles the program declares, as Talos names the machine types.
var Roles = []string{"controlplane", "worker"}

var kubernetesVersion = regexp.MustCompile(`^v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`)

// Check refuses input the tool cannot judge, listing every problem at once.
func (in Input) Check() error {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	if in.ClusterName == "" {
		add("clusterName is empty")
	}
	// Any other endpoint is Talos' to judge: its refusal is a problem of the generated config.
	if in.Endpoint == "" {
		add("endpoint is empty")
	}
	if _, err := parseContract(in.TalosVersion); err != nil {
		add("talosVersion %q is not a Talos release like v1.11.5", in.TalosVersion)
	}
	if in.Contract != "" {
		if _, err := parseContract(in.Contract); err != nil {
			add("contract %q is not a Talos release like v1.11.5", in.Contract)
		}
	}
	if !kubernetesVersion.MatchString(in.KubernetesVersion) {
		add("kubernetesVersion %q is not a Kubernetes release like 1.34.1", in.KubernetesVersion)
	}
	if len(in.Nodes) == 0 {
		add("nodes is empty")
	}
	seen := map[string]bool{}
	for i, n := range in.Nodes {
		switch {
		case n.Name == "":
			add("nodes[%d].name is empty", i)
		case seen[n.Name]:
			add("nodes[%d].name %q is used twice", i, n.Name)
		}
		seen[n.Name] = true
		if !slices.Contains(Roles, n.Role) {
			add("nodes[%d].role %q is not one of %s", i, n.Role, strings.Join(Roles, ", "))
		}
		for j, p := range n.Patches {
			if p.Key == "" {
				add("nodes[%d].patches[%d].key is empty", i, j)
			}
		}
	}
	if len(problems) > 0 {
		return &InputError{Problems: problems}
	}
	return nil
}

// Judge builds, patches and validates every node's config and reports what Talos refuses or
// warns about. An error means the input could not be judged (see InputError), never a bad patch.
func Judge(in Input) (Report, error) {
	if err := in.Check(); err != nil {
		return Report{}, err
	}
	gen, err := newGenerator(in)
	if err != nil {
		return Report{}, err
	}
	return judgeWith(gen, in)
}

func judgeWith(gen *generator, in Input) (Report, error) {
	var problems, warnings collector
	for _, n := range in.Nodes {
		base, err := gen.base(n.Role)
		if err != nil {
			return Report{}, fmt.Errorf("generating the %s config: %w", n.Role, err)
		}
		_, p, w := judgeNode(base, n.Patches)
		for _, f := range p {
			problems.add(f.Key, n.Name, gen.redact(f.Message))
		}
		for _, f := range w {
			warnings.add(f.Key, n.Name, gen.redact(f.Message))
		}
	}
	return Report{Problems: problems.findings(), Warnings: warnings.findings()}, nil
}

// finding is one node's problem or warning before findings of all nodes are merged.
type finding struct {
	Key     string
	Message string
}

// collector merges identical (key, message) findings of several nodes, in first-seen order.
type collector struct {
	order []finding
	nodes map[finding][]string
}

func (c *collector) add(key, node, message string) {
	f := finding{Key: key, Message: message}
	if c.nodes == nil {
		c.nodes = map[finding][]string{}
	}
	if _, ok := c.nodes[f]; !ok {
		c.order = append(c.order, f)
	}
	if !slices.Contains(c.nodes[f], node) {
		c.nodes[f] = append(c.nodes[f], node)
	}
}

func (c *collector) findings() []Finding {
	out := make([]Finding, 0, len(c.order))
	for _, f := range c.order {
		out = append(out, Finding{Key: f.Key, Node: strings.Join(c.nodes[f], ", "), Message: f.Message})
	}
	return out
}

// errorList flattens what a Talos call returned into its separate errors: multierrors and
// errors.Join lists, also when wrapped under a prefix ("invalid machine node labels: 2 errors
// occurred: ..." becomes one error per label, each with the prefix), so each can be blamed on
// the patch that caused it rather than on the last patch that changed the list.
func errorList(err error) []error {
	if err == nil {
		return nil
	}
	list, prefix := innerList(err)
	if list == nil {
		return []error{err}
	}
	var out []error
	for _, e := range list {
		for _, inner := range errorList(e) {
			if prefix == "" {
				out = append(out, inner)
			} else {
				out = append(out, fmt.Errorf("%s%w", prefix, inner))
			}
		}
	}
	return out
}

// innerList finds the list an error carries and the text its wrappers put before the list's own.
func innerList(err error) ([]error, string) {
	for e := err; e != nil; e = errors.Unwrap(e) {
		var list []error
		switch l := e.(type) {
		case *multierror.Error:
			list = l.Errors
		case interface{ Unwrap() []error }:
			list = l.Unwrap()
		default:
			continue
		}
		prefix, ok := strings.CutSuffix(err.Error(), e.Error())
		if !ok {
			return nil, ""
		}
		return list, prefix
	}
	return nil, ""
}
