package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// The writes a drain needs (cordon, eviction, uncordon), as kubectl drain makes them
// (k8s.io/kubectl/pkg/drain): a merge patch of spec.unschedulable, the Eviction subresource of
// each pod that is neither a mirror pod nor a DaemonSet's.

// APIError is an API server's refusal: the HTTP status, the Status message and its causes (an
// eviction refused by a PodDisruptionBudget names the budget in a cause).
type APIError struct {
	Code    int
	Message string
	Causes  []string
}

func (e *APIError) Error() string {
	if len(e.Causes) > 0 {
		return fmt.Sprintf("%d %s (%s)", e.Code, e.Message, strings.Join(e.Causes, "; "))
	}
	return fmt.Sprintf("%d %s", e.Code, e.Message)
}

// send makes one request to base; a non-2xx answer is an *APIError.
func (c *Client) send(ctx context.Context, base, method, path, contentType string, body any) ([]byte, error) {
	var reader io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		reader = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(base, "/")+path, reader)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", contentType)
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
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode/100 == 2 {
		return data, nil
	}
	var status struct {
		Message string `json:"message"`
		Details struct {
			Causes []struct {
				Message string `json:"message"`
			} `json:"causes"`
		} `json:"details"`
	}
	apiErr := &APIError{Code: resp.StatusCode, Message: resp.Status}
	if json.Unmarshal(data, &status) == nil && status.Message != "" {
		apiErr.Message = status.Message
		for _, cause := range status.Details.Causes {
			apiErr.Causes = append(apiErr.Causes, cause.Message)
		}
	}
	return nil, apiErr
}

// sendAny is send to each API server in bases in turn until one answers (a refusal is an answer).
func (c *Client) sendAny(ctx context.Context, bases []string, method, path, contentType string, body any) ([]byte, error) {
	if len(bases) == 0 {
		bases = []string{c.Server}
	}
	var errs []string
	for _, base := range bases {
		data, err := c.send(ctx, base, method, path, contentType, body)
		var opErr *net.OpError
		if err == nil || (!errors.As(err, &opErr) && !errors.Is(err, context.DeadlineExceeded)) {
			return data, err
		}
		errs = append(errs, fmt.Sprintf("%s: %s", base, err))
	}
	return nil, errors.New("no API server answered: " + strings.Join(errs, "; "))
}

// SetUnschedulable cordons (true) or uncordons (false) a Node, as kubectl cordon does.
func (c *Client) SetUnschedulable(ctx context.Context, bases []string, name string, unschedulable bool) error {
	patch := map[string]any{"spec": map[string]any{"unschedulable": unschedulable}}
	if _, err := c.sendAny(ctx, bases, http.MethodPatch, "/api/v1/nodes/"+url.PathEscape(name), "application/merge-patch+json", patch); err != nil {
		verb := "cordoning"
		if !unschedulable {
			verb = "uncordoning"
		}
		return fmt.Errorf("%s Node %s: %w", verb, name, err)
	}
	return nil
}

// DrainPod is a pod a drain must move off its node.
type DrainPod struct {
	Namespace, Name, UID string
	// Terminating: its deletion started (an eviction went through); the kubelet finishes it.
	Terminating bool
}

func (p DrainPod) String() string { return p.Namespace + "/" + p.Name }

// PodsToDrain are the pods bound to a Node that a drain evicts: all but mirror pods (the kubelet
// owns them; the API server would only recreate them) and pods of a DaemonSet (its controller
// ignores the cordon and would start them again), as kubectl drain --ignore-daemonsets skips them.
// Pods of no controller and pods with emptyDir volumes are evicted too, as Talos' own drain does.
func (c *Client) PodsToDrain(ctx context.Context, bases []string, node string) ([]DrainPod, error) {
	body, err := c.getAny(ctx, bases, "/api/v1/pods?fieldSelector="+url.QueryEscape("spec.nodeName="+node))
	if err != nil {
		return nil, fmt.Errorf("listing the pods of Node %s: %w", node, err)
	}
	var list struct {
		Items []struct {
			Metadata struct {
				Name              string            `json:"name"`
				Namespace         string            `json:"namespace"`
				UID               string            `json:"uid"`
				Annotations       map[string]string `json:"annotations"`
				DeletionTimestamp *string           `json:"deletionTimestamp"`
				OwnerReferences   []struct {
					Kind       string `json:"kind"`
					Controller bool   `json:"controller"`
				} `json:"ownerReferences"`
			} `json:"metadata"`
		} `json:"items"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("listing the pods of Node %s: %w", node, err)
	}
	var out []DrainPod
	for _, p := range list.Items {
		if _, mirror := p.Metadata.Annotations["kubernetes.io/config.mirror"]; mirror {
			continue
		}
		daemon := false
		for _, ref := range p.Metadata.OwnerReferences {
			daemon = daemon || (ref.Controller && ref.Kind == "DaemonSet")
		}
		if daemon {
			continue
		}
		out = append(out, DrainPod{Namespace: p.Metadata.Namespace, Name: p.Metadata.Name, UID: p.Metadata.UID, Terminating: p.Metadata.DeletionTimestamp != nil})
	}
	return out, nil
}

// Evict asks the API server to evict a pod (policy/v1 Eviction, the pod's own grace period). The
// API server refuses with 429 while a PodDisruptionBudget allows no disruption (the budget is
// named in the error's causes); a pod already gone is not an error.
func (c *Client) Evict(ctx context.Context, bases []string, pod DrainPod) error {
	eviction := map[string]any{
		"apiVersion": "policy/v1", "kind": "Eviction",
		"metadata":      map[string]string{"name": pod.Name, "namespace": pod.Namespace},
		"deleteOptions": map[string]any{"preconditions": map[string]string{"uid": pod.UID}},
	}
	path := "/api/v1/namespaces/" + url.PathEscape(pod.Namespace) + "/pods/" + url.PathEscape(pod.Name) + "/eviction"
	_, err := c.sendAny(ctx, bases, http.MethodPost, path, "application/json", eviction)
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.Code == http.StatusNotFound {
		return nil
	}
	return err
}

// BlockingBudget is the name of the PodDisruptionBudget an eviction's refusal names, "" when it
// names none (registry/core/pod/storage/eviction.go: "The disruption budget <name> ...").
func BlockingBudget(err error) string {
	var apiErr *APIError
	if !errors.As(err, &apiErr) {
		return ""
	}
	for _, cause := range apiErr.Causes {
		if rest, ok := strings.CutPrefix(cause, "The disruption budget "); ok {
			name, _, _ := strings.Cut(rest, " ")
			return name
		}
	}
	return ""
}

// Send makes one request to the API server at base with a JSON body (a merge patch for PATCH)
// and returns the answer; a refusal is an *APIError.
func (c *Client) Send(ctx context.Context, base, method, path string, body any) ([]byte, error) {
	contentType := "application/json"
	if method == http.MethodPatch {
		contentType = "application/merge-patch+json"
	}
	return c.send(ctx, base, method, path, contentType, body)
}

// DeleteNode deletes a Node, as kubectl delete node does; a Node already gone is not an error.
// The pod garbage collector then deletes the pods still bound to it.
func (c *Client) DeleteNode(ctx context.Context, bases []string, name string) error {
	_, err := c.sendAny(ctx, bases, http.MethodDelete, "/api/v1/nodes/"+url.PathEscape(name), "", nil)
	var apiErr *APIError
	if err == nil || (errors.As(err, &apiErr) && apiErr.Code == http.StatusNotFound) {
		return nil
	}
	return fmt.Errorf("deleting Node %s: %w", name, err)
}
