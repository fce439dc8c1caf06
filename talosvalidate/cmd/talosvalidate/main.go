// Command talosvalidate reads the program's planned nodes and patches as JSON on stdin, judges
// them with Talos' own config library (package judge), and writes the problems and warnings as
// JSON on stdout. Exit 0 when it could judge (whatever it found), 2 for input it cannot judge.
//
// `talosvalidate -support` instead prints the config library's support data per Talos minor
// (Kubernetes range, upgrade and downgrade bounds; package support) as JSON.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"talos-cluster/talosvalidate/judge"
	"talos-cluster/talosvalidate/support"
)

func main() {
	switch args := os.Args[1:]; {
	case len(args) == 0:
		os.Exit(run(os.Stdin, os.Stdout, os.Stderr))
	case len(args) == 1 && args[0] == "-support":
		os.Exit(printSupport(os.Stdout, os.Stderr))
	default:
		fmt.Fprintf(os.Stderr, "talosvalidate: unknown arguments %q: run it with no arguments (plan on stdin) or with -support\n", args)
		os.Exit(exitBadInput)
	}
}

// printSupport writes the config library's support data per Talos minor.
func printSupport(stdout, stderr io.Writer) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(support.Data()); err != nil {
		fmt.Fprintf(stderr, "talosvalidate: writing the support data: %v\n", err)
		return exitFailed
	}
	return exitJudged
}

// Exit codes.
const (
	exitJudged   = 0
	exitBadInput = 2
	exitFailed   = 1
)

func run(stdin io.Reader, stdout, stderr io.Writer) int {
	in, err := decode(stdin)
	if err != nil {
		fmt.Fprintf(stderr, "talosvalidate: %v\n", err)
		return exitBadInput
	}
	report, err := judge.Judge(in)
	if err != nil {
		fmt.Fprintf(stderr, "talosvalidate: %v\n", err)
		var bad *judge.InputError
		if errors.As(err, &bad) {
			return exitBadInput
		}
		return exitFailed
	}
	enc := json.NewEncoder(stdout)
	// Messages quote Talos and patches verbatim: keep <, > and & readable.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(report); err != nil {
		fmt.Fprintf(stderr, "talosvalidate: writing the report: %v\n", err)
		return exitFailed
	}
	return exitJudged
}

// decode reads exactly one input object and refuses fields it does not know, so a misspelt
// field in the program's call fails loudly instead of being judged as empty.
func decode(r io.Reader) (judge.Input, error) {
	var in judge.Input
	data, err := io.ReadAll(r)
	if err != nil {
		return in, fmt.Errorf("reading stdin: %w", err)
	}
	if strings.TrimSpace(string(data)) == "" {
		return in, errors.New("no input on stdin (want a JSON object, see README.md)")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return in, fmt.Errorf("input is not the expected JSON: %w", err)
	}
	if dec.More() {
		return in, errors.New("input has more than one JSON value")
	}
	return in, nil
}
