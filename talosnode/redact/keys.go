package redact

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v4"
)

// Keys lists a redacted config (Config.Redacted) as one entry per value: its path, written as
// Pulumi writes property paths (machine.sysctls["net.core.somaxconn"], machine.certSANs[0]), and
// the value as the YAML holds it. A review then reads a change as the keys that change, not as the
// whole document: a diff of two Keys is the changed paths. The v1alpha1 document's paths start at
// its top (machine, cluster); another document's start with its kind, and its name when it has
// one: ExtensionServiceConfig["nut-client"].configFiles[0].content. An empty mapping or list is a
// value of its own ({} or []), so adding one shows.
func Keys(redacted string) (map[string]string, error) {
	keys := map[string]string{}
	dec := yaml.NewDecoder(strings.NewReader(redacted))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return keys, nil
		}
		if err != nil {
			return nil, err
		}
		if len(doc.Content) == 0 {
			continue
		}
		root := doc.Content[0]
		flatten(root, documentPrefix(root), keys)
	}
}

// documentPrefix is where a document's paths start: nothing for the v1alpha1 document (it has no
// kind), Kind or Kind["name"] for the others.
func documentPrefix(root *yaml.Node) string {
	if root.Kind != yaml.MappingNode {
		return ""
	}
	var kind, name string
	for i := 0; i+1 < len(root.Content); i += 2 {
		switch root.Content[i].Value {
		case "kind":
			kind = root.Content[i+1].Value
		case "name":
			name = root.Content[i+1].Value
		}
	}
	switch {
	case kind == "":
		return ""
	case name == "":
		return PathKey("", kind)
	default:
		return PathKey("", kind) + "[" + strconv.Quote(name) + "]"
	}
}

var identifier = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_$]*$`)

// PathKey appends a mapping key to a property path: .name for a name Pulumi's paths allow bare,
// ["name"] for any other (net.core.somaxconn, node.kubernetes.io/pool).
func PathKey(path, key string) string {
	if identifier.MatchString(key) {
		if path == "" {
			return key
		}
		return path + "." + key
	}
	return path + "[" + strconv.Quote(key) + "]"
}

func flatten(n *yaml.Node, path string, keys map[string]string) {
	switch n.Kind {
	case yaml.MappingNode:
		if len(n.Content) == 0 {
			keys[path] = "{}"
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			flatten(n.Content[i+1], PathKey(path, n.Content[i].Value), keys)
		}
	case yaml.SequenceNode:
		if len(n.Content) == 0 {
			keys[path] = "[]"
			return
		}
		for i, c := range n.Content {
			flatten(c, fmt.Sprintf("%s[%d]", path, i), keys)
		}
	case yaml.ScalarNode:
		keys[path] = n.Value
	case yaml.DocumentNode, yaml.AliasNode:
		// Encoded configs have no anchors, and documents are unwrapped by Keys.
	}
}

// KeyChange is one path whose value differs between two Keys: + added, - removed, ~ changed.
type KeyChange struct {
	Op   string
	Path string
}

func (c KeyChange) String() string { return c.Op + " " + c.Path }

// ChangedKeys compares two Keys, in path order.
func ChangedKeys(before, after map[string]string) []KeyChange {
	var changes []KeyChange
	for path, v := range after {
		was, ok := before[path]
		switch {
		case !ok:
			changes = append(changes, KeyChange{"+", path})
		case was != v:
			changes = append(changes, KeyChange{"~", path})
		}
	}
	for path := range before {
		if _, ok := after[path]; !ok {
			changes = append(changes, KeyChange{"-", path})
		}
	}
	slices.SortFunc(changes, func(a, b KeyChange) int { return strings.Compare(a.Path, b.Path) })
	return changes
}
