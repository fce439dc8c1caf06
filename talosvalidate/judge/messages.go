package judge

import (
	"fmt"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/siderolabs/talos/pkg/machinery/gendata"
)

// Messages are short and name the key to fix; Talos' own words follow in brackets, so a search
// for them finds Talos' docs and issues.

// LibraryVersion is the Talos config library this tool renders and judges with (talosnode's too).
var LibraryVersion = strings.TrimSpace(gendata.VersionTag)

const unknownKeys = "unknown keys found during decoding"

var (
	notRegistered = regexp.MustCompile(`^"([^"]*)" "([^"]*)": not registered`)
	decodingTo    = regexp.MustCompile(`^error decoding \S* ?to \*?[\w.]+: `)
	typeError     = regexp.MustCompile("line \\d+: cannot (?:unmarshal|construct) !!(\\w+)(?: `([^`]*)`)? into (\\S+)")
	// What machinery 1.13+ wraps around the loader's and the validator's words: the document
	// (decoder.go "error decoding document %s/%s/%s (line %d): "; "v1alpha1.Config: ",
	// "VolumeConfig/EPHEMERAL: " before each validation error) and the YAML library's
	// "yaml: construct errors: ". They say nothing the key does not; the words after them are
	// Talos' own, quoted as before.
	documentPrefix = regexp.MustCompile(`^(?:error decoding document \S* \(line \d+\): |v1alpha1\.Config: |[A-Z]\w*Config(?:/\S+)?: )`)
	yamlConstruct  = regexp.MustCompile(`yaml: construct errors: `)
	lineNumber     = regexp.MustCompile(`^line \d+: `)
)

// unwrap removes the document and YAML-library wrapping machinery 1.13+ puts around a message.
func unwrap(msg string) string {
	return yamlConstruct.ReplaceAllString(documentPrefix.ReplaceAllString(msg, ""), "")
}

func talos(summary, words string) error { return fmt.Errorf("%s (Talos: %s)", summary, words) }

// describeLoad turns an error of Talos' config loader on a patch into a message for the user.
func describeLoad(err error, text string) error {
	msg := unwrap(oneLine(err.Error()))
	switch {
	case strings.Contains(msg, unknownKeys):
		locs := locate(text, func(err error) bool { return strings.Contains(err.Error(), unknownKeys) })
		if len(locs) == 0 {
			return talos("unknown keys", msg)
		}
		return talos(plural(len(locs), "unknown key", "unknown keys")+" "+join(locs), unknownKeys)
	case notRegistered.MatchString(msg):
		m := notRegistered.FindStringSubmatch(msg)
		return talos(fmt.Sprintf("unknown document kind %s (apiVersion %s) for Talos' config library %s", m[1], m[2], LibraryVersion), msg)
	case strings.Contains(msg, "missing kind"):
		return talos("neither a machine config patch (machine:, cluster:) nor a document with apiVersion and kind", msg)
	case msg == "config not found":
		return talos("the patch is empty: no machine, cluster or document kind", msg)
	case strings.HasPrefix(msg, "decode error:"):
		return talos("not valid YAML or JSON", msg)
	case decodingTo.MatchString(msg):
		return describeDecoding(decodingTo.ReplaceAllString(msg, ""), text)
	default:
		return talos("Talos cannot load this patch", msg)
	}
}

// describeDecoding names the keys whose values Talos cannot decode (a wrong type or format).
func describeDecoding(words, text string) error {
	locs := locate(text, func(err error) bool { return !strings.Contains(err.Error(), unknownKeys) })
	typeErrs := typeError.FindAllStringSubmatch(words, -1)
	if len(locs) == 0 {
		return talos("a value has the wrong type or format", words)
	}
	if len(typeErrs) != len(locs) {
		if len(typeErrs) == 0 {
			// A type of Talos' own refused the text (a byte size, a CEL expression, ...).
			parts := make([]string, len(locs))
			for i, l := range locs {
				parts[i] = l.String() + ": " + valueText(l.value) + " is not valid here"
			}
			return talos(strings.Join(parts, "; "), lineNumber.ReplaceAllString(words, ""))
		}
		return talos("wrong type at "+join(locs), words)
	}
	parts := make([]string, len(locs))
	for i, l := range locs {
		got := typeErrs[i][1]
		parts[i] = fmt.Sprintf("%s: %s where Talos expects %s", l, tagWords(got, l.value), goTypeWords(typeErrs[i][3]))
	}
	detail := make([]string, len(typeErrs))
	for i, t := range typeErrs {
		detail[i] = strings.TrimSpace(t[0][strings.Index(t[0], ":")+1:])
	}
	return talos(strings.Join(parts, "; "), strings.Join(detail, "; "))
}

// describeApply turns an error of Talos' config patcher into a message for the user.
func describeApply(err error) error {
	msg := oneLine(err.Error())
	if rest, ok := strings.CutPrefix(msg, "failure applying rfc6902 patches to talos machine config: "); ok {
		return talos("the JSON patch does not apply", rest)
	}
	return talos("the patch does not merge into the config", msg)
}

var (
	bothLinks    = "[networking.os.device.interface], [networking.os.device.deviceSelector]: config sections are mutually exclusive"
	neitherLinks = "[networking.os.device.interface], [networking.os.device.deviceSelector]: required either config section to be set"
	deviceField  = regexp.MustCompile(`^\[networking\.os\.device\.(addresses|CIDR)\] "([^"]*)": `)
)

// describeInvalid turns an error of Talos' validator into a message for the user.
func describeInvalid(msg string) string {
	switch {
	case msg == bothLinks:
		return talos("machine.network.interfaces: an entry sets both interface and deviceSelector; set one", msg).Error()
	case msg == neitherLinks:
		return talos("machine.network.interfaces: an entry sets neither interface nor deviceSelector; set one", msg).Error()
	case deviceField.MatchString(msg):
		m := deviceField.FindStringSubmatch(msg)
		where := "machine.network.interfaces." + strings.ToLower(m[1])
		if m[2] != "" {
			where = fmt.Sprintf("machine.network.interfaces (interface %s) %s", m[2], strings.ToLower(m[1]))
		}
		return talos(where+": not an IP address or CIDR", msg).Error()
	case strings.HasPrefix(msg, "[networking.os.device.vip]"):
		return talos("machine.network.interfaces vip.ip: not an IP address", msg).Error()
	case msg == "virtual (shared) IP is not allowed on non-controlplane nodes":
		return talos("a VIP (machine.network.interfaces[].vip) is only allowed on control planes", msg).Error()
	default:
		return talos("invalid machine config", msg).Error()
	}
}

// describeWarning turns a warning of Talos' validator into a message for the user.
func describeWarning(msg string) string {
	if strings.Contains(msg, "deprecated") {
		return talos("deprecated setting", msg).Error()
	}
	return talos("questionable setting", msg).Error()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func join(locs []location) string {
	parts := make([]string, len(locs))
	for i, l := range locs {
		parts[i] = l.String()
	}
	return strings.Join(parts, ", ")
}

// tagWords says what a YAML value is, with the value when it is short enough to show.
func tagWords(tag string, value *yaml.Node) string {
	kind := map[string]string{
		"str": "a string", "int": "a number", "float": "a number", "bool": "a boolean",
		"seq": "a list", "map": "an object", "null": "null",
	}[tag]
	if kind == "" {
		kind = "!!" + tag
	}
	if value != nil && value.Kind == yaml.ScalarNode && tag != "null" {
		return kind + " (" + valueText(value) + ")"
	}
	return kind
}

// goTypeWords says what a Go type of the config means to a user.
func goTypeWords(t string) string {
	switch {
	case t == "time.Duration":
		return "a duration like 30s, 5m or 1h30m"
	case t == "string":
		return "a string"
	case t == "bool":
		return "true or false"
	case t == "[]string":
		return "a list of strings"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case t == "map[string]string":
		return "a map of strings"
	case strings.HasPrefix(t, "map["):
		return "an object"
	case strings.HasPrefix(t, "int") || strings.HasPrefix(t, "uint"):
		return "a whole number"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case strings.Contains(t, "."):
		return "an object"
	default:
		return t
	}
}

// valueText quotes a scalar of the patch, shortened; other values are described, not shown.
func valueText(n *yaml.Node) string {
	if n == nil {
		return "the value"
	}
	switch n.Kind {
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 40 {
			v = v[:37] + "..."
		}
		return fmt.Sprintf("%q", v)
	case yaml.SequenceNode:
		return "the list"
	case yaml.MappingNode:
		return "the object"
	default:
		return "the value"
	}
}
