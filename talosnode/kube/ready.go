// Package kube asks a cluster's Kubernetes API whether it is ready for the addons: the API server's
// /readyz (through the kubeconfig's server and any other address of it, such as a VIP), and the
// Ready condition of named Nodes. Plain HTTPS with the kubeconfig's credentials: the questions are
// two GETs, and a client library would weigh more than the rest of the provider.
package kube

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v4"

	"talos-cluster/talosnode/wait"
)

// Client talks to one cluster's API server with a kubeconfig's current context.
type Client struct {
	// Server is the kubeconfig's API server URL.
	Server string
	http   *http.Client
}

type kubeconfig struct {
	CurrentContext string `yaml:"current-context"`
	Contexts       []struct {
		Name    string `yaml:"name"`
		Context struct {
			Cluster string `yaml:"cluster"`
			User    string `yaml:"user"`
		} `yaml:"context"`
	} `yaml:"contexts"`
	Clusters []struct {
		Name    string `yaml:"name"`
		Cluster struct {
			Server string `yaml:"server"`
			CA     string `yaml:"certificate-authority-data"`
		} `yaml:"cluster"`
	} `yaml:"clusters"`
	Users []struct {
		Name string `yaml:"name"`
		User struct {
			Cert string `yaml:"client-certificate-data"`
			Key  string `yaml:"client-key-data"`
		} `yaml:"user"`
	} `yaml:"users"`
}

// New reads a kubeconfig's current context (or its only one, when none is current). Errors never quote it: it holds
// a private key.
func New(text string) (*Client, error) {
	var kc kubeconfig
	if err := yaml.Unmarshal([]byte(text), &kc); err != nil {
		return nil, errors.New("the kubeconfig is not YAML")
	}
	clusterName, userName := "", ""
	for _, c := range kc.Contexts {
		if c.Name == kc.CurrentContext || (kc.CurrentContext == "" && len(kc.Contexts) == 1) {
			clusterName, userName = c.Context.Cluster, c.Context.User
		}
	}
	if clusterName == "" {
		return nil, fmt.Errorf("the kubeconfig has no context %q", kc.CurrentContext)
	}
	var server, ca, cert, key string
	for _, c := range kc.Clusters {
		if c.Name == clusterName {
			server, ca = c.Cluster.Server, c.Cluster.CA
		}
	}
	for _, u := range kc.Users {
		if u.Name == userName {
			cert, key = u.User.Cert, u.User.Key
		}
	}
	if server == "" || ca == "" || cert == "" || key == "" {
		return nil, fmt.Errorf("the kubeconfig's context %q needs a server, certificate-authority-data, client-certificate-data and client-key-data", kc.CurrentContext)
	}
	decode := func(field, v string) ([]byte, error) {
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return nil, fmt.Errorf("the kubeconfig's %s is not base64", field)
		}
		return b, nil
	}
	caPEM, err := decode("certificate-authority-data", ca)
	if err != nil {
		return nil, err
	}
	certPEM, err := decode("client-certificate-data", cert)
	if err != nil {
		return nil, err
	}
	keyPEM, err := decode("client-key-data", key)
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, errors.New("the kubeconfig's client certificate and key do not load")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("the kubeconfig's certificate-authority-data holds no certificate")
	}
	transport := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12},
		DisableKeepAlives: true,
	}
	return &Client{Server: strings.TrimRight(server, "/"), http: &http.Client{Transport: transport, Timeout: 10 * time.Second}}, nil
}

// get fetches a path from base (an API server URL), with the body for the error when not 200.
func (c *Client) get(ctx context.Context, base, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			return nil, uerr.Err
		}
		return nil, err
	}
	defer resp.Body.Close() //nolint:errcheck
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		text := strings.TrimSpace(string(body))
		if len(text) > 300 {
			text = text[:300] + "..."
		}
		return nil, fmt.Errorf("%s: %s", resp.Status, text)
	}
	return body, nil
}

// Readyz is "" when every API server URL answers /readyz with 200, else what each that does not
// says. The kubeconfig's server is always asked; others (a VIP, each control plane) are extra.
func (c *Client) Readyz(ctx context.Context, others ...string) string {
	var problems []string
	for _, base := range append([]string{c.Server}, others...) {
		if _, err := c.get(ctx, base, "/readyz"); err != nil {
			problems = append(problems, fmt.Sprintf("%s/readyz: %s", base, err))
		}
	}
	return strings.Join(problems, "; ")
}

// NodesReady is "" when every named Node exists with condition Ready=True, else which are not.
func (c *Client) NodesReady(ctx context.Context, names []string) string {
	body, err := c.get(ctx, c.Server, "/api/v1/nodes")
	if err != nil {
		return "listing nodes: " + err.Error()
	}
	var list struct {
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Status struct {
				Conditions []struct {
					Type   string `json:"type"`
					Status string `json:"status"`
					Reason string `json:"reason"`
				} `json:"conditions"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return "listing nodes: " + err.Error()
	}
	state := map[string]string{}
	for _, n := range list.Items {
		state[n.Metadata.Name] = "no Ready condition"
		for _, cond := range n.Status.Conditions {
			if cond.Type == "Ready" {
				state[n.Metadata.Name] = "Ready=" + cond.Status
				if cond.Reason != "" && cond.Status != "True" {
					state[n.Metadata.Name] += " (" + cond.Reason + ")"
				}
			}
		}
	}
	var problems []string
	for _, name := range names {
		switch s, ok := state[name]; {
		case !ok:
			problems = append(problems, name+": not registered")
		case s != "Ready=True":
			problems = append(problems, name+": "+s)
		}
	}
	slices.Sort(problems)
	return strings.Join(problems, "; ")
}

// Wait asks check every interval until it reports nothing or timeout passes; progress (may be
// nil) gets every answer. The error carries the last answer.
func Wait(ctx context.Context, timeout, interval time.Duration, check func(context.Context) string, progress func(seen string)) error {
	_, err := wait.Poll{Timeout: timeout, Interval: interval, Attempt: 15 * time.Second, Progress: progress}.
		Until(ctx, func(ctx context.Context) (bool, string, error) {
			problems := check(ctx)
			return problems == "", problems, nil
		})
	if err != nil {
		return fmt.Errorf("not ready %w", err)
	}
	return nil
}
