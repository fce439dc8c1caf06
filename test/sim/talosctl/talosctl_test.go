package talosctl

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	yaml "go.yaml.in/yaml/v4"

	"talos-cluster/sim/factory"
	"talos-cluster/sim/internal/toolbin"
	"talos-cluster/sim/node"
)

const (
	// The release the simulated nodes run, and the Kubernetes release their config asks for (the
	// newest Talos 1.11 supports: machinery compatibility/talos111).
	talosVersion      = "v1.11.5"
	kubernetesVersion = "1.34.1"
	// The talosctl npm run setup builds (TALOSCTL_VERSION in scripts/toolchain.env): newer than
	// the nodes, as an operator's client usually is.
	clientVersion = "v1.14.1"
	// The release the upgrade subtest moves a worker to.
	newerVersion = "v1.11.6"
	// A worker on Talos 1.13, which talosctl upgrades through LifecycleService, to 1.14.
	lifecycleFrom, lifecycleTo = "v1.13.9", "v1.14.1"
	clusterName                = "sim-talosctl"
	// The factory's id for a schematic with only siderolabs/intel-ucode (factory tests pin it).
	intelUcodeSchematic = "2d61dd07b20062062ea671b4d01873506103b67c0f7a4c3fb6cf4ee85585dcb8"
)

// talosMinor is a release's contract as talosctl gen config --talos-version takes it: v1.11.5 → v1.11.
func talosMinor(version string) string { return version[:strings.LastIndex(version, ".")] }

type simNode struct {
	*node.Node
	ip string
}

// endpoint is where talosctl dials the node: its address with the node's own port.
func (n simNode) endpoint() string { return n.Addr() }

type cli struct {
	t      *testing.T
	bin    string
	dir    string
	config string
}

// run runs talosctl with args, returning its stdout, or an error holding its stderr.
func (c cli) run(timeout time.Duration, args ...string) (string, error) {
	stdout, _, err := c.run2(timeout, args...)
	return stdout, err
}

// run2 is run that also returns stderr, where talosctl warns of the nodes that failed when others
// answered.
func (c cli) run2(timeout time.Duration, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Dir = c.dir
	// HOME keeps talosctl away from the user's ~/.talos; no TALOSCONFIG from outside.
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "HOME=") || strings.HasPrefix(kv, "TALOSCONFIG=")
	}), "HOME="+c.dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), stderr.String(), fmt.Errorf("talosctl %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), stderr.String(), nil
}

// must runs talosctl and fails the test on error.
func (c cli) must(args ...string) string {
	c.t.Helper()
	out, err := c.run(time.Minute, args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// on runs an authenticated talosctl command against one node, dialled directly: the endpoint is
// the node itself, so what each subtest checks is that node's own answer (forwarding has its own
// subtest: "several nodes through one endpoint").
func (c cli) on(n simNode, args ...string) (string, error) {
	return c.run(time.Minute, append([]string{"--talosconfig", c.config, "-e", n.endpoint(), "-n", n.ip}, args...)...)
}

// resources parses `talosctl get -o yaml` output: one document per resource.
func resources(t *testing.T, out string) []map[string]any {
	t.Helper()
	dec := yaml.NewDecoder(strings.NewReader(out))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("talosctl get output is not YAML: %v\n%s", err, out)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
}

// field walks a parsed document along keys.
func field(doc any, keys ...string) any {
	for _, k := range keys {
		m, ok := doc.(map[string]any)
		if !ok {
			return nil
		}
		doc = m[k]
	}
	return doc
}

// table parses a talosctl table (a header line, then rows split on runs of spaces) into rows keyed
// by column name. Columns are found from the header's positions, so empty cells stay empty.
func table(out string) []map[string]string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) == 0 || strings.TrimSpace(lines[0]) == "" {
		return nil
	}
	header := lines[0]
	type column struct {
		name  string
		start int
	}
	var cols []column
	for i := 0; i < len(header); {
		if header[i] == ' ' {
			i++
			continue
		}
		j := i
		// Names may hold one space ("LAST CHANGE", "PEER URLS"): a column ends at two spaces or more.
		for j < len(header) && !(header[j] == ' ' && (j+1 >= len(header) || header[j+1] == ' ')) {
			j++
		}
		cols = append(cols, column{strings.TrimSpace(header[i:j]), i})
		i = j
	}
	var rows []map[string]string
	for _, line := range lines[1:] {
		row := map[string]string{}
		for k, col := range cols {
			end := len(line)
			if k+1 < len(cols) && cols[k+1].start < end {
				end = cols[k+1].start
			}
			if col.start < len(line) {
				row[col.name] = strings.TrimSpace(line[col.start:end])
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// serverPart is what `talosctl version` prints after "Server:" (the node's side), or "".
func serverPart(out string) string {
	if i := strings.Index(out, "Server:"); i >= 0 {
		return out[i:]
	}
	return ""
}

// TestTalosctl makes a cluster of simulated nodes with the real talosctl (gen config, apply-config
// in maintenance, bootstrap), then checks that what talosctl reads agrees with the simulator's own
// state. Nodes: 127.0.15.x; factory: 127.0.16.1.
func TestTalosctl(t *testing.T) {
	bin := toolbin.Binary(t, "TALOSCTL", "talosctl")
	dir := t.TempDir()
	c := cli{t: t, bin: bin, dir: dir, config: filepath.Join(dir, "talosconfig")}

	if out := c.must("version", "--client", "--short"); !strings.Contains(out, clientVersion) {
		t.Fatalf("talosctl is not %s: %q", clientVersion, out)
	}

	// The installer image comes from the simulated Image Factory, as the program's does.
	f := factory.New([]string{talosVersion, newerVersion, lifecycleFrom, lifecycleTo}, []string{"siderolabs/intel-ucode"})
	factoryAddr := net.JoinHostPort("127.0.16.1", strconv.Itoa(toolbin.FreePort(t, "127.0.16.1")))
	lis, err := net.Listen("tcp", factoryAddr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: f, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { _ = srv.Close() })
	resp, err := http.Post("http://"+factoryAddr+"/schematics", "application/yaml",
		strings.NewReader("customization:\n  systemExtensions:\n    officialExtensions: [siderolabs/intel-ucode]\n"))
	if err != nil {
		t.Fatal(err)
	}
	var posted struct{ ID string }
	err = json.NewDecoder(resp.Body).Decode(&posted)
	resp.Body.Close()
	if err != nil || posted.ID != intelUcodeSchematic {
		t.Fatalf("factory: id %q, %v; want %s", posted.ID, err, intelUcodeSchematic)
	}
	// Installer images name the factory they come from; nodes "pull" them from it.
	installer := func(version string) string {
		return factoryAddr + "/installer/" + posted.ID + ":" + version
	}

	trust := node.NewTrust()
	// Upgrades pull their installer image from the simulated factory.
	f.Host = factoryAddr
	trust.SetInstallers(f)
	var startAt func(ip, version string) simNode
	start := func(ip string) simNode { return startAt(ip, talosVersion) }
	startAt = func(ip, version string) simNode {
		n, err := node.New(ip, toolbin.FreePort(t, ip), version, posted.ID, trust)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Stop)
		return simNode{n, ip}
	}
	var cps, workers []simNode
	for _, ip := range []string{"127.0.15.11", "127.0.15.12", "127.0.15.13"} {
		cps = append(cps, start(ip))
	}
	workers = append(workers, start("127.0.15.21"))
	all := slices.Concat(cps, workers)

	// Maintenance mode: anyone may read links.
	out := c.must("get", "links", "--insecure", "-n", cps[0].endpoint(), "-o", "yaml")
	if got := resources(t, out); len(got) != len(cps[0].State().Links) {
		t.Fatalf("get links --insecure: %d links, the node has %v:\n%s", len(got), cps[0].State().Links, out)
	}

	// --talos-version: a config the nodes' release takes (talosctl generates for its own release
	// otherwise: 1.14's separate documents, which a 1.11 node refuses); Kubernetes within its support.
	c.must("gen", "config", clusterName, "https://"+cps[0].ip+":6443", "--install-image", installer(talosVersion),
		"--talos-version", talosMinor(talosVersion), "--kubernetes-version", kubernetesVersion, "--output-dir", dir)
	for _, name := range []string{"controlplane.yaml", "worker.yaml", "talosconfig"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Fatalf("gen config wrote no %s: %v", name, err)
		}
	}
	for _, n := range cps {
		c.must("apply-config", "--insecure", "-n", n.endpoint(), "-f", filepath.Join(dir, "controlplane.yaml"))
	}
	for _, n := range workers {
		c.must("apply-config", "--insecure", "-n", n.endpoint(), "-f", filepath.Join(dir, "worker.yaml"))
	}
	for _, n := range all {
		s := n.State()
		want := "worker"
		if slices.Contains(cps, n) {
			want = "controlplane"
		}
		if !s.Configured || s.Role != want || s.ClusterName != clusterName || s.InstallImage != installer(talosVersion) || s.Applies != 1 {
			t.Fatalf("%s after apply-config: configured %v, role %q, cluster %q, image %q, applies %d", n.ip, s.Configured, s.Role, s.ClusterName, s.InstallImage, s.Applies)
		}
	}
	// The talosconfig gen config wrote, with the control planes as endpoints (their own ports).
	endpoints := []string{"config", "endpoint", "--talosconfig", c.config}
	for _, n := range cps {
		endpoints = append(endpoints, n.endpoint())
	}
	c.must(endpoints...)
	if out := c.must("config", "info", "--talosconfig", c.config); !strings.Contains(out, cps[2].endpoint()) {
		t.Fatalf("config info shows no %s:\n%s", cps[2].endpoint(), out)
	}
	if _, err := c.on(cps[0], "bootstrap"); err != nil {
		t.Fatal(err)
	}
	if !cps[0].State().Bootstrapped {
		t.Fatal("bootstrap: the node is not bootstrapped")
	}

	t.Run("version", func(t *testing.T) {
		for _, n := range all {
			out, err := c.on(n, "version")
			if err != nil {
				t.Fatal(err)
			}
			// Client, then Server with NODE and Tag.
			if server := serverPart(out); !strings.Contains(server, "NODE:        "+n.ip) || !strings.Contains(server, "Tag:         "+n.State().TalosVersion) {
				t.Errorf("%s: version says\n%s\nthe node runs %s", n.ip, out, n.State().TalosVersion)
			}
		}
	})

	t.Run("get machineconfig", func(t *testing.T) {
		for _, n := range all {
			out, err := c.on(n, "get", "machineconfig", "-o", "yaml")
			if err != nil {
				t.Fatal(err)
			}
			docs := resources(t, out)
			if len(docs) != 1 || field(docs[0], "metadata", "id") != "v1alpha1" || field(docs[0], "node") != n.ip {
				t.Fatalf("%s: want one MachineConfig v1alpha1 of this node:\n%s", n.ip, out)
			}
			s := n.State()
			// The spec is the config document as text.
			text, ok := docs[0]["spec"].(string)
			if !ok {
				t.Fatalf("%s: the MachineConfig spec is not the config's text:\n%s", n.ip, out)
			}
			var spec map[string]any
			if err := yaml.Unmarshal([]byte(text), &spec); err != nil {
				t.Fatalf("%s: the MachineConfig spec is no config: %v\n%s", n.ip, err, text)
			}
			// It is the config as applied: what the node stored.
			var applied map[string]any
			if err := yaml.Unmarshal([]byte(s.Config), &applied); err != nil {
				t.Fatal(err)
			}
			for _, path := range [][]string{
				{"machine", "type"}, {"machine", "install", "image"}, {"cluster", "clusterName"},
				{"cluster", "controlPlane", "endpoint"}, {"machine", "ca", "crt"},
			} {
				got, want := field(spec, path...), field(applied, path...)
				if got == nil || got != want {
					t.Errorf("%s: %s = %v, applied %v", n.ip, strings.Join(path, "."), got, want)
				}
			}
			if got := field(spec, "machine", "install", "image"); got != s.InstallImage {
				t.Errorf("%s: install image %v, the simulator says %s", n.ip, got, s.InstallImage)
			}
		}
	})

	t.Run("get extensions", func(t *testing.T) {
		for _, n := range all {
			out, err := c.on(n, "get", "extensions", "-o", "yaml")
			if err != nil {
				t.Fatal(err)
			}
			var schematics []any
			for _, doc := range resources(t, out) {
				if field(doc, "spec", "metadata", "name") == "schematic" {
					schematics = append(schematics, field(doc, "spec", "metadata", "version"))
				}
			}
			if len(schematics) != 1 || schematics[0] != posted.ID {
				t.Errorf("%s: schematic extension versions %v, the node booted %s:\n%s", n.ip, schematics, posted.ID, out)
			}
		}
	})

	t.Run("get machinestatus", func(t *testing.T) {
		for _, n := range all {
			out, err := c.on(n, "get", "machinestatus", "-o", "yaml")
			if err != nil {
				t.Fatal(err)
			}
			docs := resources(t, out)
			if len(docs) != 1 || field(docs[0], "spec", "stage") != "running" || field(docs[0], "spec", "status", "ready") != true {
				t.Errorf("%s: want stage running and ready:\n%s", n.ip, out)
			}
		}
	})

	t.Run("get links", func(t *testing.T) {
		for _, n := range all {
			out, err := c.on(n, "get", "links", "-o", "yaml")
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, doc := range resources(t, out) {
				names = append(names, fmt.Sprint(field(doc, "metadata", "id")))
				if field(doc, "spec", "type") != "ether" || field(doc, "spec", "operationalState") != "up" {
					t.Errorf("%s: link %v is not an ether link that is up:\n%s", n.ip, field(doc, "metadata", "id"), out)
				}
			}
			if want := n.State().Links; !slices.Equal(names, want) {
				t.Errorf("%s: links %v, the simulator has %v", n.ip, names, want)
			}
		}
	})

	// talosctl sends one endpoint the request for the nodes -n names (metadata "nodes"); Talos'
	// apid there proxies it to each and merges one message per node, the node in its metadata
	// (internal/app/apid/pkg/director/director.go, backend/apid.go).
	t.Run("several nodes through one endpoint", func(t *testing.T) {
		targets := []simNode{cps[1], cps[2], workers[0]}
		ips := func() string {
			var s []string
			for _, n := range targets {
				s = append(s, n.ip)
			}
			return strings.Join(s, ",")
		}()
		out, err := c.run(time.Minute, "--talosconfig", c.config, "-e", cps[0].endpoint(), "-n", ips, "version")
		if err != nil {
			t.Fatal(err)
		}
		server := serverPart(out)
		for _, n := range targets {
			if strings.Count(server, "NODE:        "+n.ip+"\n") != 1 {
				t.Errorf("asked %s through %s; %s answered not once:\n%s", ips, cps[0].ip, n.ip, out)
			}
		}
		if strings.Count(server, "Tag:         "+talosVersion) != len(targets) {
			t.Errorf("want %d tags %s:\n%s", len(targets), talosVersion, out)
		}

		// A node that is down gets its own error on stderr; the others answer all the same, and
		// talosctl exits non-zero (1.14 asks each node in turn and joins the errors:
		// cmd/talosctl/cmd/talos/version.go, pkg/machinery/client/multiplex/unary.go).
		down := workers[0]
		down.Stop()
		defer func() {
			if err := down.Start(); err != nil {
				t.Fatal(err)
			}
		}()
		out, stderr, err := c.run2(time.Minute, "--talosconfig", c.config, "-e", cps[0].endpoint(), "-n", ips, "version")
		if err == nil {
			t.Errorf("talosctl version exited 0 while %s is down", down.ip)
		}
		server = serverPart(out)
		for _, n := range targets[:2] {
			if !strings.Contains(server, "NODE:        "+n.ip+"\n") {
				t.Errorf("%s is up but did not answer while %s is down:\n%s", n.ip, down.ip, out)
			}
		}
		if strings.Contains(server, "NODE:        "+down.ip) {
			t.Errorf("%s is down but answered:\n%s", down.ip, out)
		}
		var line string
		for l := range strings.SplitSeq(stderr, "\n") {
			if strings.Contains(l, down.ip) {
				line = l
			}
		}
		if !strings.Contains(line, "connection refused") {
			t.Errorf("want an error line naming %s with its connection refused; stderr:\n%s", down.ip, stderr)
		}
		t.Logf("%s is down:\n%s%s", down.ip, out, stderr)
	})

	// What follows needs the simulator's etcd, services and upgrades.
	hostnames := func(nodes []simNode) []string {
		var names []string
		for _, n := range nodes {
			names = append(names, n.State().Hostname)
		}
		slices.Sort(names)
		return names
	}

	t.Run("etcd members", func(t *testing.T) {
		for _, n := range cps {
			out, err := c.on(n, "etcd", "members")
			if err != nil {
				t.Fatal(err)
			}
			rows := table(out)
			var names []string
			ids := map[string]bool{}
			for _, row := range rows {
				names = append(names, row["HOSTNAME"])
				ids[row["ID"]] = true
				// NODE is there when the reply carries apid's metadata (hostname: the -n target).
				if node, ok := row["NODE"]; ok && node != n.ip || row["LEARNER"] != "false" {
					t.Errorf("%s: member row %v", n.ip, row)
				}
			}
			slices.Sort(names)
			if want := hostnames(cps); !slices.Equal(names, want) || len(ids) != len(cps) {
				t.Errorf("%s: members %v (%d ids), want the control planes %v:\n%s", n.ip, names, len(ids), want, out)
			}
		}
		// A worker runs no etcd: Talos answers Unimplemented.
		if out, err := c.on(workers[0], "etcd", "members"); err == nil || !strings.Contains(err.Error(), "only available on control plane nodes") {
			t.Errorf("etcd members on a worker: %v\n%s", err, out)
		}
	})

	t.Run("etcd forfeit-leadership", func(t *testing.T) {
		// `etcd status` names each member and the leader it sees (LEADER is a member id).
		leader := func() (string, map[string]string) {
			t.Helper()
			members := map[string]string{}
			seen := ""
			for _, n := range cps {
				out, err := c.on(n, "etcd", "status")
				if err != nil {
					t.Fatalf("etcd status on %s: %v", n.ip, err)
				}
				rows := table(out)
				if len(rows) != 1 {
					t.Fatalf("etcd status on %s:\n%s", n.ip, out)
				}
				members[n.ip] = rows[0]["MEMBER"]
				if seen != "" && rows[0]["LEADER"] != seen {
					t.Fatalf("members see different leaders: %s and %s", seen, rows[0]["LEADER"])
				}
				seen = rows[0]["LEADER"]
			}
			return seen, members
		}
		before, members := leader()
		var follower, lead simNode
		for _, n := range cps {
			if members[n.ip] == before {
				lead = n
			} else {
				follower = n
			}
		}
		if lead.Node == nil {
			t.Fatalf("no control plane is the leader %s: %v", before, members)
		}
		// On a follower it does nothing.
		if _, err := c.on(follower, "etcd", "forfeit-leadership"); err != nil {
			t.Fatal(err)
		}
		if now, _ := leader(); now != before {
			t.Fatalf("a follower's forfeit moved the leadership from %s to %s", before, now)
		}
		// On the leader it hands the leadership to another member.
		if _, err := c.on(lead, "etcd", "forfeit-leadership"); err != nil {
			t.Fatal(err)
		}
		if now, _ := leader(); now == before || now == "" {
			t.Fatalf("after the leader's forfeit the leader is %q (was %s)", now, before)
		}
	})

	t.Run("service", func(t *testing.T) {
		for _, n := range all {
			out, err := c.on(n, "service")
			if err != nil {
				t.Fatal(err)
			}
			services := map[string]map[string]string{}
			for _, row := range table(out) {
				services[row["SERVICE"]] = row
			}
			want := []string{"apid", "kubelet"}
			if slices.Contains(cps, n) {
				want = append(want, "etcd")
			} else if _, ok := services["etcd"]; ok {
				t.Errorf("%s: a worker lists etcd:\n%s", n.ip, out)
			}
			for _, name := range want {
				if row, ok := services[name]; !ok || row["STATE"] != "Running" {
					t.Errorf("%s: service %s is %v, want Running:\n%s", n.ip, name, row, out)
				}
			}
		}
	})

	t.Run("etcd snapshot", func(t *testing.T) {
		path := filepath.Join(dir, "etcd.snapshot")
		out, err := c.on(cps[0], "etcd", "snapshot", path)
		if err != nil {
			// talosctl checks size%512 == 32 (a bbolt DB and its sha256), then reads the DB with etcdutl.
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) < sha256.Size {
			t.Fatalf("snapshot of %d bytes", len(data))
		}
		db, trailer := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
		if sum := sha256.Sum256(db); !bytes.Equal(sum[:], trailer) {
			t.Errorf("the snapshot's trailer is not the sha256 of its database")
		}
		// etcdutl could read the database: hash, revision, keys.
		if !strings.Contains(out, fmt.Sprintf("etcd snapshot saved to %q (%d bytes)", path, len(data))) || !strings.Contains(out, "snapshot info: hash ") {
			t.Errorf("talosctl printed no snapshot status:\n%s", out)
		}
	})

	t.Run("apply-config --mode staged", func(t *testing.T) {
		w := workers[0]
		// machineconfigs lists what `get machineconfig` shows: id and the staged sysctl, if any.
		machineconfigs := func() map[string]any {
			t.Helper()
			out, err := c.on(w, "get", "machineconfig", "-o", "yaml")
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]any{}
			for _, doc := range resources(t, out) {
				var spec map[string]any
				text, _ := doc["spec"].(string)
				if err := yaml.Unmarshal([]byte(text), &spec); err != nil {
					t.Fatalf("MachineConfig %v: %v", doc["metadata"], err)
				}
				got[fmt.Sprint(field(doc, "metadata", "id"))] = field(spec, "machine", "sysctls", "vm.max_map_count")
			}
			return got
		}
		_, err := c.run(time.Minute, "--talosconfig", c.config, "-e", w.endpoint(), "-n", w.ip, "apply-config", "--mode", "staged",
			"-f", filepath.Join(dir, "worker.yaml"), "--config-patch", `{"machine": {"sysctls": {"vm.max_map_count": "262144"}}}`)
		if err != nil {
			t.Fatal(err)
		}
		// As Talos serves them: the active config unchanged, the staged one as `persistent`.
		if got := machineconfigs(); !reflect.DeepEqual(got, map[string]any{"v1alpha1": nil, "persistent": "262144"}) {
			t.Fatalf("after a staged apply, MachineConfigs (id: staged sysctl) %v", got)
		}
		if _, err := c.run(2*time.Minute, "--talosconfig", c.config, "-e", w.endpoint(), "-n", w.ip, "reboot", "--wait", "--timeout", "1m"); err != nil {
			t.Fatal(err)
		}
		// The next boot loads it from STATE: active, and no `persistent` any more.
		if got := machineconfigs(); !reflect.DeepEqual(got, map[string]any{"v1alpha1": "262144"}) {
			t.Fatalf("after the reboot, MachineConfigs (id: staged sysctl) %v", got)
		}
	})

	// Talos' roles, with talosconfigs the control plane issues (`talosctl config new --roles`).
	t.Run("roles", func(t *testing.T) {
		as := map[string]cli{}
		for _, r := range []string{"os:reader", "os:operator", "os:etcd:backup"} {
			path := filepath.Join(dir, strings.ReplaceAll(r, ":", "-")+".talosconfig")
			if _, err := c.on(cps[0], "config", "new", path, "--roles", r); err != nil {
				t.Fatal(err)
			}
			if out := c.must("config", "info", "--talosconfig", path); !strings.Contains(out, "Roles:               "+r+"\n") {
				t.Fatalf("config new --roles %s wrote a talosconfig of other roles:\n%s", r, out)
			}
			as[r] = cli{t: t, bin: bin, dir: dir, config: path}
		}
		w := workers[0]
		before := w.State()
		allowed := func(who string, n simNode, args ...string) string {
			t.Helper()
			out, err := as[who].on(n, args...)
			if err != nil {
				t.Errorf("%s: %v", who, err)
			}
			return out
		}
		refused := func(who string, n simNode, args ...string) {
			t.Helper()
			out, err := as[who].on(n, args...)
			if err == nil || !strings.Contains(err.Error(), "code = PermissionDenied desc = not authorized") {
				t.Errorf("%s: talosctl %s: got %v, want PermissionDenied \"not authorized\"\n%s", who, strings.Join(args, " "), err, out)
			}
		}

		// os:reader reads what is not secret, and changes nothing.
		if out := allowed("os:reader", w, "version"); !strings.Contains(serverPart(out), "Tag:         "+before.TalosVersion) {
			t.Errorf("reader's version:\n%s", out)
		}
		if docs := resources(t, allowed("os:reader", w, "get", "machinestatus", "-o", "yaml")); len(docs) != 1 {
			t.Errorf("reader's get machinestatus: %d resources", len(docs))
		}
		if docs := resources(t, allowed("os:reader", w, "get", "services", "-o", "yaml")); len(docs) == 0 {
			t.Error("reader's get services: none")
		}
		if rows := table(allowed("os:reader", w, "service")); len(rows) == 0 {
			t.Error("reader's service: no rows")
		}
		if rows := table(allowed("os:reader", cps[0], "etcd", "members")); len(rows) != len(cps) {
			t.Errorf("reader's etcd members: %d rows", len(rows))
		}
		refused("os:reader", w, "get", "machineconfig")
		refused("os:reader", w, "apply-config", "-f", filepath.Join(dir, "worker.yaml"))
		refused("os:reader", w, "upgrade", "-i", installer(newerVersion))
		refused("os:reader", w, "reset")
		refused("os:reader", w, "reboot")
		refused("os:reader", cps[0], "etcd", "snapshot", filepath.Join(dir, "reader.snapshot"))
		refused("os:reader", cps[0], "kubeconfig", filepath.Join(dir, "reader.kubeconfig"))
		refused("os:reader", cps[0], "config", "new", filepath.Join(dir, "escalated.talosconfig"), "--roles", "os:admin")
		if s := w.State(); s.Applies != before.Applies || s.TalosVersion != before.TalosVersion || s.BootID != before.BootID || !s.Up {
			t.Fatalf("refused calls changed the worker: applies %d -> %d, version %s -> %s, boot %s -> %s, up %t",
				before.Applies, s.Applies, before.TalosVersion, s.TalosVersion, before.BootID, s.BootID, s.Up)
		}

		// os:operator may reboot (talosctl waits without the boot id, which only os:admin reads),
		// but not apply a config or read one.
		refused("os:operator", w, "apply-config", "-f", filepath.Join(dir, "worker.yaml"))
		refused("os:operator", w, "get", "machineconfig")
		if _, err := as["os:operator"].run(2*time.Minute, "--talosconfig", as["os:operator"].config, "-e", w.endpoint(), "-n", w.ip,
			"reboot", "--wait", "--timeout", "90s"); err != nil {
			t.Fatalf("operator's reboot: %v", err)
		}
		if s := w.State(); s.BootID == before.BootID || !s.Up || s.Applies != before.Applies {
			t.Fatalf("after the operator's reboot: boot %s (was %s), up %t, applies %d (was %d)", s.BootID, before.BootID, s.Up, s.Applies, before.Applies)
		}

		// os:etcd:backup takes snapshots and nothing else.
		path := filepath.Join(dir, "backup.snapshot")
		allowed("os:etcd:backup", cps[0], "etcd", "snapshot", path)
		if info, err := os.Stat(path); err != nil || info.Size() == 0 {
			t.Errorf("etcd:backup's snapshot: %v", err)
		}
		refused("os:etcd:backup", cps[0], "version")
		refused("os:etcd:backup", cps[0], "get", "machinestatus")
		refused("os:etcd:backup", cps[0], "service")
	})

	// upgrades are the node's upgrade events in the simulator's timeline.
	upgrades := func(n simNode) []string {
		var details []string
		for _, e := range trust.Timeline() {
			if e.Node == n.ip && e.Event == node.TimelineUpgrade {
				details = append(details, e.Detail)
			}
		}
		return details
	}

	// A 1.13+ node: talosctl pulls the installer (ImageService.Pull), installs it with
	// LifecycleService.Upgrade and reboots the node (cmd/talosctl/cmd/talos/upgrade.go).
	t.Run("upgrade through LifecycleService", func(t *testing.T) {
		w := startAt("127.0.15.22", lifecycleFrom)
		c.must("apply-config", "--insecure", "-n", w.endpoint(), "-f", filepath.Join(dir, "worker.yaml"))
		image := installer(lifecycleTo)
		// --drain=false: on this path talosctl 1.14 cordons and drains the node itself through the
		// Kubernetes API (cmd/talosctl/cmd/talos/drain.go), which this test's nodes do not run
		// (TestHealth's do); the legacy path drains on the node (a phase of its sequence).
		out, err := c.run(3*time.Minute, "--talosconfig", c.config, "-e", w.endpoint(), "-n", w.ip,
			"upgrade", "--wait", "--drain=false", "--timeout", "2m", "-i", image)
		if err != nil {
			t.Fatal(err)
		}
		if v := w.State().TalosVersion; v != lifecycleTo {
			t.Fatalf("after upgrade to %s the simulator says the node runs %s:\n%s", image, v, out)
		}
		if got := upgrades(w); !reflect.DeepEqual(got, []string{image + " lifecycle"}) {
			t.Errorf("upgrade events %q, want one through LifecycleService", got)
		}
	})

	t.Run("upgrade", func(t *testing.T) {
		w := workers[0]
		image := installer(newerVersion)
		out, err := c.run(3*time.Minute, "--talosconfig", c.config, "-e", w.endpoint(), "-n", w.ip,
			"upgrade", "--wait", "--timeout", "2m", "-i", image)
		if err != nil {
			t.Fatal(err)
		}
		if v := w.State().TalosVersion; v != newerVersion {
			t.Fatalf("after upgrade to %s the simulator says the node runs %s:\n%s", image, v, out)
		}
		out, err = c.on(w, "version")
		if err != nil {
			t.Fatal(err)
		}
		if server := serverPart(out); !strings.Contains(server, "Tag:         "+newerVersion) {
			t.Errorf("version after the upgrade:\n%s", out)
		}
		// A 1.11 node has no LifecycleService: talosctl falls back to MachineService.Upgrade.
		if got := upgrades(w); len(got) != 1 || strings.HasSuffix(got[0], " lifecycle") {
			t.Errorf("upgrade events %q, want one through MachineService.Upgrade", got)
		}
		// The other nodes still run the release they had.
		for _, n := range cps {
			if v := n.State().TalosVersion; v != talosVersion {
				t.Errorf("%s runs %s after %s was upgraded", n.ip, v, w.ip)
			}
		}
	})

	// Nodes come and go: a new control plane joins etcd as a learner and is promoted; forfeit,
	// leave, remove-member of a dead one; a worker reset gracefully comes back in maintenance.
	t.Run("etcd membership and reset", func(t *testing.T) {
		n, err := node.New("127.0.15.14", toolbin.FreePort(t, "127.0.15.14"), talosVersion, posted.ID, trust, node.WithEtcdPromoteTime(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Stop)
		cp4 := simNode{n, "127.0.15.14"}
		c.must("apply-config", "--insecure", "-n", cp4.endpoint(), "-f", filepath.Join(dir, "controlplane.yaml"))
		learner := func() string {
			out, err := c.on(cps[0], "etcd", "members")
			if err != nil {
				t.Fatal(err)
			}
			for _, row := range table(out) {
				if row["HOSTNAME"] == cp4.State().Hostname {
					return row["LEARNER"]
				}
			}
			return "absent:\n" + out
		}
		if got := learner(); got != "true" {
			t.Fatalf("the new control plane's LEARNER is %q, want true", got)
		}
		deadline := time.Now().Add(30 * time.Second)
		for learner() != "false" {
			if time.Now().After(deadline) {
				t.Fatalf("not promoted within 30s: %s", learner())
			}
			time.Sleep(200 * time.Millisecond)
		}
		if _, err := c.on(cps[0], "etcd", "forfeit-leadership"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.on(cp4, "etcd", "leave"); err != nil {
			t.Fatal(err)
		}
		if got := learner(); !strings.HasPrefix(got, "absent") {
			t.Fatalf("after etcd leave the member is still listed (LEARNER %q)", got)
		}

		// A dead control plane's member goes by id, from another control plane.
		out, err := c.on(cps[1], "etcd", "members")
		if err != nil {
			t.Fatal(err)
		}
		id := ""
		for _, row := range table(out) {
			if row["HOSTNAME"] == cps[2].State().Hostname {
				id = row["ID"]
			}
		}
		if id == "" {
			t.Fatalf("no member %s:\n%s", cps[2].State().Hostname, out)
		}
		cps[2].Stop()
		if _, err := c.on(cps[1], "etcd", "remove-member", id); err != nil {
			t.Fatal(err)
		}
		out, err = c.on(cps[1], "etcd", "members")
		if err != nil || strings.Contains(out, id) {
			t.Fatalf("after remove-member %s: %v\n%s", id, err, out)
		}

		w := start("127.0.15.23")
		c.must("apply-config", "--insecure", "-n", w.endpoint(), "-f", filepath.Join(dir, "worker.yaml"))
		if _, err := c.on(w, "reset", "--graceful", "--reboot", "--wait=false",
			"--system-labels-to-wipe", "STATE", "--system-labels-to-wipe", "EPHEMERAL"); err != nil {
			t.Fatal(err)
		}
		deadline = time.Now().Add(30 * time.Second)
		for s := w.State(); !s.Up || s.Configured; s = w.State() {
			if time.Now().After(deadline) {
				t.Fatalf("the reset worker is not back in maintenance within 30s: up %t, configured %t", s.Up, s.Configured)
			}
			time.Sleep(100 * time.Millisecond)
		}
		c.must("apply-config", "--insecure", "-n", w.endpoint(), "-f", filepath.Join(dir, "worker.yaml"))
		if !w.State().Configured {
			t.Fatal("apply-config --insecure after the reset did not configure the worker")
		}
	})
}
