// Package redact turns a Talos machine config into what a review may show: one text with every
// secret replaced by Marker, and a hash of the unredacted config, so a changed secret is still
// a change. Both are taken from one canonical form (decoded with machinery's configloader,
// re-encoded without comments), so key order, comments and whitespace change neither.
package redact

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/encoder"
	yaml "go.yaml.in/yaml/v4"
)

// Marker replaces every secret value.
const Marker = "(redacted)"

// Config is a machine config as a review shows it.
type Config struct {
	// Redacted is the canonical config with every secret replaced by Marker.
	Redacted string
	// Hash is the sha256 (hex) of the canonical, unredacted config.
	Hash string
}

// FromYAML decodes a machine config (one or more YAML documents) and redacts it.
func FromYAML(data []byte) (Config, error) {
	cfg, err := configloader.NewFromBytes(data)
	if err != nil {
		return Config{}, fmt.Errorf("decode with Talos machinery: %w", err)
	}
	return FromProvider(cfg)
}

// FromProvider redacts a decoded machine config, such as a node's MachineConfig resource.
func FromProvider(cfg config.Provider) (Config, error) {
	canonical, err := cfg.EncodeBytes(encoder.WithComments(encoder.CommentsDisabled))
	if err != nil {
		return Config{}, fmt.Errorf("encode: %w", err)
	}
	sum := sha256.Sum256(canonical)
	// Talos' own redaction first (the fields its config types declare secret, in every document
	// type that has some), then the rule below over everything, patches included.
	redacted, err := cfg.RedactSecrets(Marker).EncodeBytes(encoder.WithComments(encoder.CommentsDisabled))
	if err != nil {
		return Config{}, fmt.Errorf("encode redacted: %w", err)
	}
	text, err := redactYAML(redacted)
	if err != nil {
		return Config{}, fmt.Errorf("redact: %w", err)
	}
	return Config{Redacted: text, Hash: hex.EncodeToString(sum[:])}, nil
}

// SecretKey is the rule for names: a value under a key that looks like it holds a secret is one.
// It covers every secret field of Talos' config types (machine.token, machine.ca.key,
// cluster.token, cluster.secret, cluster.ca.key, cluster.aggregatorCA.key,
// cluster.serviceAccount.key, cluster.etcd.ca.key, secretboxEncryptionSecret,
// aescbcEncryptionSecret, keys[].static.passphrase of disk and volume encryption, registry
// auth.password/auth/identityToken, clientIdentity.key, WireGuard privateKey/presharedKey,
// SideroLink tokens) and names a patch may add (apiKey, clientSecret, credentials, ...).
// Certificates (crt) and public keys stay.
func SecretKey(name string) bool {
	k := normalize(name)
	switch {
	case k == "":
		return false
	case strings.HasPrefix(k, "public"), publicKeyNames[k]:
		return false
	case k == "key", strings.HasSuffix(k, "key"):
		return true
	case exactSecretNames[k]:
		return true
	}
	for _, part := range secretParts {
		if strings.Contains(k, part) {
			return true
		}
	}
	return false
}

var (
	secretParts      = []string{"token", "secret", "password", "passwd", "passphrase", "private", "credential", "apikey"}
	exactSecretNames = map[string]bool{"auth": true, "authorization": true, "pass": true, "pwd": true, "psk": true, "cookie": true}
	// Names that end in "key" but hold no secret: the bond setting ad_user_port_key is a number.
	publicKeyNames = map[string]bool{"aduserportkey": true}
)

// normalize lower-cases a name and drops what separates its words: privateKey, private_key,
// private-key and PRIVATE.KEY are one name.
func normalize(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// redactYAML applies the rule to every document of a YAML stream.
func redactYAML(data []byte) (string, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", err
		}
		walk(&doc, false)
		if err := enc.Encode(&doc); err != nil {
			return "", err
		}
	}
	if err := enc.Close(); err != nil {
		return "", err
	}
	return out.String(), nil
}

// walk redacts a node in place and says whether it changed anything. Under a secret-looking key
// every scalar is a secret; elsewhere a string may still hold one (a URL with a password, a
// private key, a file or manifest).
func walk(n *yaml.Node, secret bool) bool {
	changed := false
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			changed = walk(c, secret) || changed
		}
	case yaml.AliasNode:
		// Encoded configs have no anchors; an alias points at a node walked where it is defined.
	case yaml.MappingNode:
		kubernetesSecret := isKubernetesSecret(n)
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, value := n.Content[i], n.Content[i+1]
			changed = walk(value, secret || SecretKey(key.Value) ||
				(kubernetesSecret && (key.Value == "data" || key.Value == "stringData"))) || changed
		}
	case yaml.ScalarNode:
		switch {
		case n.Tag == "!!null" || n.Value == "":
			// Nothing set, nothing to hide: a review may see that a secret is empty.
		case secret:
			changed = n.Value != Marker
			n.Value, n.Tag, n.Style = Marker, "!!str", 0
		case n.Tag == "!!str" || n.Tag == "":
			if v := redactString(n.Value); v != n.Value {
				n.Value, changed = v, true
				if strings.Contains(v, "\n") {
					n.Style = yaml.LiteralStyle
				}
			}
		}
	}
	return changed
}

// isKubernetesSecret is true for a Kubernetes Secret manifest, whose data keys are arbitrary.
func isKubernetesSecret(n *yaml.Node) bool {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "kind" && n.Content[i+1].Value == "Secret" {
			return true
		}
	}
	return false
}

var (
	privateKeyBlock = regexp.MustCompile(`(?s)-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?-----END [A-Z0-9 ]*PRIVATE KEY-----`)
	urlPattern      = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>]+`)
	// assignment is one line of a file or manifest: key: value, key = value, export KEY=value.
	assignment = regexp.MustCompile(`^(\s*(?:export\s+)?["']?)([A-Za-z0-9_.\-]+)(["']?\s*[:=]\s*)(\S.*)$`)
)

// redactString finds secrets inside a string value: private key blocks, URL passwords and
// secret-looking query parameters, and in multi-line text (machine.files content, inline
// manifests) either YAML to walk or lines that assign a secret-looking key.
func redactString(s string) string {
	s = privateKeyBlock.ReplaceAllString(s, Marker)
	s = urlPattern.ReplaceAllStringFunc(s, redactURL)
	if !strings.Contains(s, "\n") {
		return s
	}
	if walked, ok := redactEmbeddedYAML(s); ok {
		return walked
	}
	lines := strings.Split(s, "\n")
	for i, line := range lines {
		if m := assignment.FindStringSubmatch(line); m != nil && SecretKey(m[2]) && m[4] != Marker {
			lines[i] = m[1] + m[2] + m[3] + Marker
		}
	}
	return strings.Join(lines, "\n")
}

// redactURL hides a URL's password and the values of secret-looking query parameters
// (SideroLink's jointoken, a signed URL's token).
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	changed := false
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), Marker)
		changed = true
	}
	if u.RawQuery != "" {
		q := u.Query()
		for name := range q {
			if SecretKey(name) {
				q[name] = []string{Marker}
				changed = true
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
	}
	if !changed {
		return raw
	}
	// Keep the marker readable rather than percent-encoded.
	out := u.String()
	return strings.NewReplacer(url.QueryEscape(Marker), Marker, url.PathEscape(Marker), Marker).Replace(out)
}

// redactEmbeddedYAML walks multi-line text that is YAML made of mappings or lists (an inline
// manifest), so a Kubernetes Secret's data and any secret-looking key in it are hidden.
func redactEmbeddedYAML(s string) (string, bool) {
	dec := yaml.NewDecoder(strings.NewReader(s))
	var docs []*yaml.Node
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil || len(doc.Content) != 1 || (doc.Content[0].Kind != yaml.MappingNode && doc.Content[0].Kind != yaml.SequenceNode) {
			return "", false
		}
		docs = append(docs, &doc)
	}
	if len(docs) == 0 {
		return "", false
	}
	changed := false
	for _, doc := range docs {
		changed = walk(doc, false) || changed
	}
	if !changed {
		// Text with nothing to hide stays as written.
		return s, true
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	for _, doc := range docs {
		if err := enc.Encode(doc); err != nil {
			return "", false
		}
	}
	if err := enc.Close(); err != nil {
		return "", false
	}
	return out.String(), true
}

// keyOnly is a line of YAML quoted in an error, cut after its key.
var keyOnly = regexp.MustCompile(`^(\s*(?:- )?[^:#]+):.*$`)

// ErrorText is an error's message safe to show: machinery quotes the YAML it could not decode
// (the unknown keys with their values, which may be secrets), so of every line after the first
// only the key is kept.
func ErrorText(err error) string {
	lines := strings.Split(err.Error(), "\n")
	for i := 1; i < len(lines); i++ {
		if m := keyOnly.FindStringSubmatch(lines[i]); m != nil {
			lines[i] = m[1] + ":"
		} else if strings.TrimSpace(lines[i]) != "" {
			lines[i] = "..."
		}
	}
	return strings.Join(lines, "\n")
}
