package factory

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Known pairs of schematic document and the id the real factory gives it.
func TestSchematicIDMatchesTheRealFactory(t *testing.T) {
	cases := map[string]string{
		"customization: {}\n": "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba",
		"customization:\n  systemExtensions:\n    officialExtensions: [siderolabs/intel-ucode]\n": "2d61dd07b20062062ea671b4d01873506103b67c0f7a4c3fb6cf4ee85585dcb8",
		// The provider may send JSON; the id depends on content, not on the text's layout.
		`{"customization":{"systemExtensions":{"officialExtensions":["siderolabs/intel-ucode"]}}}`: "2d61dd07b20062062ea671b4d01873506103b67c0f7a4c3fb6cf4ee85585dcb8",
	}
	for doc, want := range cases {
		s, err := ParseSchematic([]byte(doc))
		if err != nil {
			t.Fatalf("parse %q: %v", doc, err)
		}
		got, err := s.ID()
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			canonical, _ := s.Canonical()
			t.Errorf("id of %q = %s, want %s (canonical %q)", doc, got, want, canonical)
		}
	}
}

func newFactory(t *testing.T) (*Server, *httptest.Server) {
	t.Helper()
	f := New([]string{"v1.11.5", "v1.10.7"}, []string{"siderolabs/intel-ucode", "siderolabs/iscsi-tools"})
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func TestPostSchematicReturnsItsID(t *testing.T) {
	f, srv := newFactory(t)
	resp, err := http.Post(srv.URL+"/schematics", "application/yaml",
		strings.NewReader("customization:\n    systemExtensions:\n        officialExtensions:\n            - siderolabs/intel-ucode\n"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ ID string }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != http.StatusCreated || body.ID != "2d61dd07b20062062ea671b4d01873506103b67c0f7a4c3fb6cf4ee85585dcb8" {
		t.Fatalf("got %d %q", resp.StatusCode, body.ID)
	}
	if f.Posts() != 1 {
		t.Fatalf("posts = %d", f.Posts())
	}
	if _, ok := f.Schematic(body.ID); !ok {
		t.Fatal("schematic not stored")
	}
}

func TestPostSchematicRefusesUnknownFieldsAndExtensions(t *testing.T) {
	_, srv := newFactory(t)
	for _, doc := range []string{"customisation: {}\n", "customization:\n  systemExtensions:\n    officialExtensions: [acme/custom]\n"} {
		resp, err := http.Post(srv.URL+"/schematics", "application/yaml", strings.NewReader(doc))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%q: status %d, want 400", doc, resp.StatusCode)
		}
	}
}

func TestVersionsAndOfficialExtensions(t *testing.T) {
	_, srv := newFactory(t)
	var versions []string
	getJSON(t, srv.URL+"/versions", &versions)
	if len(versions) != 2 || versions[0] != "v1.11.5" {
		t.Fatalf("versions = %v", versions)
	}
	var exts []Extension
	getJSON(t, srv.URL+"/version/v1.11.5/extensions/official", &exts)
	if len(exts) != 2 || exts[0].Name != "siderolabs/intel-ucode" || !strings.HasPrefix(exts[0].Digest, "sha256:") || exts[0].Ref == "" {
		t.Fatalf("extensions = %+v", exts)
	}
	resp, err := http.Get(srv.URL + "/version/v9.9.9/extensions/official")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown version: %d", resp.StatusCode)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
