// Package factory simulates the Talos Image Factory endpoints the talos provider calls.
package factory

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"

	yaml "go.yaml.in/yaml/v4"
)

// Schematic mirrors the factory's schematic document. Field order matters: the id is a hash of
// the re-marshalled document, so it must follow the factory's struct order.
type Schematic struct {
	Overlay       *Overlay      `yaml:"overlay,omitempty"`
	Customization Customization `yaml:"customization"`
}

// Overlay selects a board overlay (SBCs); unused by metal nodes but part of the id.
type Overlay struct {
	Image   string         `yaml:"image,omitempty"`
	Name    string         `yaml:"name,omitempty"`
	Options map[string]any `yaml:"options,omitempty"`
}

// Customization is what a schematic changes in the image.
type Customization struct {
	ExtraKernelArgs  []string         `yaml:"extraKernelArgs,omitempty"`
	Meta             []MetaValue      `yaml:"meta,omitempty"`
	SystemExtensions SystemExtensions `yaml:"systemExtensions,omitempty"`
	Bootloader       string           `yaml:"bootloader,omitempty"`
	SecureBoot       *SecureBoot      `yaml:"secureboot,omitempty"`
}

// MetaValue is one META partition key.
type MetaValue struct {
	Key   uint8  `yaml:"key"`
	Value string `yaml:"value"`
}

// SystemExtensions lists the official extensions baked into the image.
type SystemExtensions struct {
	OfficialExtensions []string `yaml:"officialExtensions,omitempty"`
}

// SecureBoot options for UKI images.
type SecureBoot struct {
	IncludeWellKnownCertificates bool `yaml:"includeWellKnownCertificates,omitempty"`
}

// ParseSchematic reads a schematic document, refusing unknown fields as the factory does.
func ParseSchematic(data []byte) (*Schematic, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var s Schematic
	if err := dec.Decode(&s); err != nil && err != io.EOF {
		return nil, err
	}
	return &s, nil
}

// Canonical is the document the id is computed over: the struct marshalled with a 4-space indent.
func (s *Schematic) Canonical() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(4)
	if err := enc.Encode(s); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ID is the factory's schematic id: hex sha256 of the canonical document.
func (s *Schematic) ID() (string, error) {
	data, err := s.Canonical()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

// Extension is one entry of GET /version/{v}/extensions/official.
type Extension struct {
	Name        string `json:"name"`
	Ref         string `json:"ref"`
	Digest      string `json:"digest"`
	Author      string `json:"author"`
	Description string `json:"description"`
}

// Server is the simulated factory. Counters let tests assert what the provider asked for.
type Server struct {
	Versions   []string
	Extensions []string
	// Host is host:port of the factory as image references name it (installer images).
	Host string

	mu         sync.Mutex
	schematics map[string][]byte
	posts      int
}

// New returns a factory serving the given Talos versions and official extension names.
func New(versions, extensions []string) *Server {
	return &Server{Versions: versions, Extensions: extensions, schematics: map[string][]byte{}}
}

// Posts is how many POST /schematics the factory answered.
func (f *Server) Posts() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.posts
}

// Schematic returns the canonical document stored under id, if any.
func (f *Server) Schematic(id string) ([]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	doc, ok := f.schematics[id]
	return doc, ok
}

func (f *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/schematics":
		f.postSchematic(w, r)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/schematics/"):
		doc, ok := f.Schematic(strings.TrimPrefix(r.URL.Path, "/schematics/"))
		if !ok {
			http.Error(w, "schematic not found", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(doc)
	case r.Method == http.MethodGet && r.URL.Path == "/versions":
		writeJSON(w, http.StatusOK, f.Versions)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/version/") && strings.HasSuffix(r.URL.Path, "/extensions/official"):
		version := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/version/"), "/extensions/official")
		if !slices.Contains(f.Versions, version) {
			http.Error(w, fmt.Sprintf("version %s not found", version), http.StatusNotFound)
			return
		}
		writeJSON(w, http.StatusOK, f.extensionList(version))
	default:
		http.NotFound(w, r)
	}
}

func (f *Server) postSchematic(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s, err := ParseSchematic(body)
	if err != nil {
		http.Error(w, "invalid schematic: "+err.Error(), http.StatusBadRequest)
		return
	}
	for _, ext := range s.Customization.SystemExtensions.OfficialExtensions {
		if !slices.Contains(f.Extensions, ext) {
			http.Error(w, fmt.Sprintf("invalid schematic: unknown extension %q", ext), http.StatusBadRequest)
			return
		}
	}
	doc, err := s.Canonical()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	id, _ := s.ID()
	f.mu.Lock()
	f.schematics[id] = doc
	f.posts++
	f.mu.Unlock()
	writeJSON(w, http.StatusCreated, map[string]string{"id": id})
}

func (f *Server) extensionList(version string) []Extension {
	list := make([]Extension, 0, len(f.Extensions))
	for _, name := range f.Extensions {
		short := name[strings.LastIndex(name, "/")+1:]
		digest := sha256.Sum256([]byte(name + "@" + version))
		list = append(list, Extension{
			Name:        name,
			Ref:         fmt.Sprintf("ghcr.io/%s:%s", name, version),
			Digest:      "sha256:" + hex.EncodeToString(digest[:]),
			Author:      "Sidero Labs",
			Description: "simulated " + short + " extension",
		})
	}
	return list
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// wellKnown are schematics every Image Factory has: the empty one and intel-ucode only.
var wellKnown = map[string]bool{
	"376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba": true,
	"2d61dd07b20062062ea671b4d01873506103b67c0f7a4c3fb6cf4ee85585dcb8": true,
}

// Installer resolves an installer image of this factory as containerd's pull would:
// <Host>/installer/<schematic>:<version> (also installer-secureboot, metal-installer and
// metal-installer-secureboot) for a schematic the factory knows and a version it serves. Other
// references fail as a pull does: not found.
func (f *Server) Installer(ref string) (schematic, version string, err error) {
	notFound := fmt.Errorf("failed to pull image %q: %s: not found", ref, ref)
	host, rest, ok := strings.Cut(ref, "/")
	if !ok || rest == "" {
		return "", "", fmt.Errorf("failed to parse image reference %q: invalid reference format", ref)
	}
	if host != f.Host {
		return "", "", fmt.Errorf("failed to pull image %q: failed to resolve reference %q: failed to do request: dial tcp: lookup %s: no such host", ref, ref, host)
	}
	path, tag, ok := strings.Cut(rest, ":")
	repo, id, _ := strings.Cut(path, "/")
	if !ok || tag == "" {
		return "", "", notFound
	}
	switch repo {
	case "installer", "installer-secureboot", "metal-installer", "metal-installer-secureboot":
	default:
		return "", "", notFound
	}
	_, known := f.Schematic(id)
	if !known && !wellKnown[id] {
		return "", "", notFound
	}
	if !slices.Contains(f.Versions, tag) {
		return "", "", notFound
	}
	return id, tag, nil
}
