package judge

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
)

// A location in a patch: a key path, and for a document other than v1alpha1 its kind and name.
type location struct {
	path  string
	doc   string
	value *yaml.Node
}

func (l location) String() string {
	if l.doc == "" {
		return l.path
	}
	if l.path == "" {
		return l.doc
	}
	return l.path + " in " + l.doc
}

// locate finds the keys of a patch that make Talos' config loader fail with an error like the
// one given, asking the loader itself: it decodes trial patches that keep one branch of the
// patch at a time and follows the branches that still fail. It knows no schema, so it names
// exactly what Talos' own decoder objects to, for any document kind.
//
// A key whose value can be dropped (set to null) and still fails is the culprit itself (an
// unknown key); otherwise the culprit lies within its value. Lists are followed into their
// objects (machine.network.interfaces[0].addresses) but not into scalars.
func locate(text string, sameError func(error) bool) []location {
	docs, err := documents(text)
	if err != nil {
		return nil
	}
	var found []location
	for _, doc := range docs {
		root := doc.Content[0]
		if root.Kind != yaml.MappingNode {
			continue
		}
		l := &locator{root: root, same: sameError, doc: documentLabel(root)}
		if !l.fails(nil) {
			continue
		}
		var here []location
		for i := 0; i+1 < len(root.Content); i += 2 {
			if l.keep(root.Content[i].Value) || root.Content[i].Value == "$patch" {
				continue
			}
			step := trail{key: root.Content[i].Value, node: root.Content[i+1]}
			if l.fails([]trail{step}) {
				here = append(here, l.culprits([]trail{step})...)
			}
		}
		found = append(found, here...)
	}
	return found
}

// keep reports the keys every trial of a document keeps: for a document with a kind, those that
// decide which document type is decoded. A v1alpha1 document keeps none (it has no such keys).
func (l *locator) keep(key string) bool {
	return l.doc != "" && (key == "apiVersion" || key == "kind" || key == "name")
}

// trail is one step down a patch: a key of a mapping or an index of a list, and the value there.
type trail struct {
	key   string
	index int
	list  bool
	node  *yaml.Node
}

type locator struct {
	root *yaml.Node
	same func(error) bool
	doc  string
}

func (l *locator) culprits(path []trail) []location {
	last := path[len(path)-1]
	here := location{path: pathString(path), doc: l.doc, value: last.node}
	if !last.list && l.fails(withValue(path, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"})) {
		return []location{here}
	}
	var found []location
	switch n := last.node; n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			next := append(append([]trail{}, path...), trail{key: n.Content[i].Value, node: n.Content[i+1]})
			if l.fails(next) {
				found = append(found, l.culprits(next)...)
			}
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			if item.Kind != yaml.MappingNode {
				break
			}
			next := append(append([]trail{}, path...), trail{index: i, list: true, node: item})
			if l.fails(next) {
				found = append(found, l.culprits(next)...)
			}
		}
	}
	if len(found) == 0 {
		return []location{here}
	}
	return found
}

// withValue is the path with its last value replaced.
func withValue(path []trail, value *yaml.Node) []trail {
	out := append([]trail{}, path...)
	out[len(out)-1].node = value
	return out
}

// fails decodes the document reduced to the kept keys and the path, and reports whether Talos'
// loader fails on it with the same kind of error. A nil path is the whole document.
func (l *locator) fails(path []trail) bool {
	doc := l.root
	if path != nil {
		doc = &yaml.Node{Kind: yaml.MappingNode}
		for i := 0; i+1 < len(l.root.Content); i += 2 {
			if l.keep(l.root.Content[i].Value) {
				doc.Content = append(doc.Content, l.root.Content[i], l.root.Content[i+1])
			}
		}
		doc.Content = append(doc.Content, scalar(path[0].key), nest(path[1:], path[0].node))
		if l.doc == "" && !v1alpha1Marker[path[0].key] {
			// Talos takes a document for v1alpha1 by one of these keys; without one, a trial of
			// an unknown top-level key would fail for want of a kind instead.
			doc.Content = append(doc.Content, scalar("persist"), &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"})
		}
	}
	var buf bytes.Buffer
	if err := yaml.NewEncoder(&buf).Encode(doc); err != nil {
		return false
	}
	_, err := configloader.NewFromBytes(buf.Bytes(), configloader.WithAllowPatchDelete())
	return err != nil && l.same(err)
}

// v1alpha1Marker are the keys by which Talos' decoder takes a document without kind for v1alpha1.
var v1alpha1Marker = map[string]bool{"machine": true, "cluster": true, "debug": true, "persist": true}

// nest builds the value at the start of path holding only the rest of the path.
func nest(path []trail, value *yaml.Node) *yaml.Node {
	if len(path) == 0 {
		return value
	}
	inner := nest(path[1:], path[0].node)
	if path[0].list {
		return &yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{inner}}
	}
	return &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{scalar(path[0].key), inner}}
}

func scalar(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

var plainKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func pathString(path []trail) string {
	var b strings.Builder
	for _, t := range path {
		switch {
		case t.list:
			fmt.Fprintf(&b, "[%d]", t.index)
		case plainKey.MatchString(t.key):
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(t.key)
		default:
			fmt.Fprintf(&b, "[%q]", t.key)
		}
	}
	return b.String()
}

// documents parses a patch into its YAML documents (JSON is YAML).
func documents(text string) ([]*yaml.Node, error) {
	dec := yaml.NewDecoder(strings.NewReader(text))
	var docs []*yaml.Node
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
			docs = append(docs, &doc)
		}
	}
}

// documentLabel names a document other than v1alpha1 (`VolumeConfig "EPHEMERAL"`); "" for v1alpha1.
func documentLabel(root *yaml.Node) string {
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
		return kind
	default:
		return fmt.Sprintf("%s %q", kind, name)
	}
}
