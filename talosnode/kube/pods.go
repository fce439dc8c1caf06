package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
)

// ReadyzAt is nil when the API server at base (https://host:6443) answers /readyz with 200.
func (c *Client) ReadyzAt(ctx context.Context, base string) error {
	_, err := c.get(ctx, base, "/readyz")
	return err
}

// getAny asks each API server in bases in turn and returns the first answer; a refusal from an
// API server (an HTTP status) is an answer too. With no bases, the kubeconfig's server is asked.
func (c *Client) getAny(ctx context.Context, bases []string, path string) ([]byte, error) {
	if len(bases) == 0 {
		bases = []string{c.Server}
	}
	var errs []string
	for _, base := range bases {
		body, err := c.get(ctx, base, path)
		if err == nil {
			return body, nil
		}
		var opErr *net.OpError
		if !errors.As(err, &opErr) && !errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		}
		errs = append(errs, fmt.Sprintf("%s: %s", base, err))
	}
	return nil, errors.New("no API server answered: " + strings.Join(errs, "; "))
}

// ErrNotFound is an object the API server does not have.
var ErrNotFound = errors.New("not found")

// Pod is what the rollout reads of a pod.
type Pod struct {
	Name          string
	ConfigVersion string
	Ready         bool
}

// MirrorPod reads kube-system/<component>-<node>, the mirror pod of a control plane's static pod,
// asking the API servers in bases in turn.
func (c *Client) MirrorPod(ctx context.Context, bases []string, component, node string) (Pod, error) {
	name := component + "-" + node
	body, err := c.getAny(ctx, bases, "/api/v1/namespaces/kube-system/pods/"+name)
	if err != nil {
		if strings.HasPrefix(err.Error(), "404 ") {
			return Pod{}, fmt.Errorf("pod kube-system/%s: %w", name, ErrNotFound)
		}
		return Pod{}, err
	}
	var pod struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
		Status struct {
			Conditions []struct {
				Type   string `json:"type"`
				Status string `json:"status"`
			} `json:"conditions"`
		} `json:"status"`
	}
	if err := json.Unmarshal(body, &pod); err != nil {
		return Pod{}, fmt.Errorf("pod kube-system/%s: %w", name, err)
	}
	out := Pod{Name: "kube-system/" + name, ConfigVersion: pod.Metadata.Annotations["talos.dev/config-version"]}
	for _, cond := range pod.Status.Conditions {
		if cond.Type == "Ready" {
			out.Ready = cond.Status == "True"
		}
	}
	return out, nil
}

// NodeInfo is what the rollout reads of a Node.
type NodeInfo struct {
	KubeletVersion string
	Ready          bool
	Unschedulable  bool
}

// Node reads a Node, asking the API servers in bases in turn.
func (c *Client) Node(ctx context.Context, bases []string, name string) (NodeInfo, error) {
	body, err := c.getAny(ctx, bases, "/api/v1/nodes/"+name)
	if err != nil {
		if strings.HasPrefix(err.Error(), "404 ") {
			return NodeInfo{}, fmt.Errorf("node %s: %w (%s)", name, ErrNotFound, err)
		}
		return NodeInfo{}, err
	}
	var node struct {
		Spec struct {
			Unschedulable bool `json:"unschedulable"`
		} `json:"spec"`
		Status struct {
			NodeInfo struct {
				KubeletVersion string `json:"kubeletVersion"`
			} `json:"nodeInfo"`
			Conditions []struct {
				Type   string `json:"type"`
				Status string `json:"status"`
			} `json:"conditions"`
		} `json:"status"`
	}
	if err := json.Unmarshal(body, &node); err != nil {
		return NodeInfo{}, fmt.Errorf("node %s: %w", name, err)
	}
	out := NodeInfo{KubeletVersion: node.Status.NodeInfo.KubeletVersion, Unschedulable: node.Spec.Unschedulable}
	for _, cond := range node.Status.Conditions {
		if cond.Type == "Ready" {
			out.Ready = cond.Status == "True"
		}
	}
	return out, nil
}
