package node

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"fmt"
	"time"
)

// kubeconfigArchive is what MachineService/Kubeconfig streams: a gzip'd tar holding one file named
// "kubeconfig", an admin kubeconfig for the cluster endpoint.
func kubeconfigArchive(clusterName, endpoint string, caPEM, certPEM, keyPEM []byte) ([]byte, error) {
	user := "admin@" + clusterName
	b64 := base64.StdEncoding.EncodeToString
	doc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: %[1]s
  cluster:
    server: %[2]s
    certificate-authority-data: %[3]s
users:
- name: %[4]s
  user:
    client-certificate-data: %[5]s
    client-key-data: %[6]s
contexts:
- name: %[4]s
  context:
    cluster: %[1]s
    namespace: default
    user: %[4]s
current-context: %[4]s
`, clusterName, endpoint, b64(caPEM), user, b64(certPEM), b64(keyPEM))

	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{Name: "kubeconfig", Mode: 0o600, Size: int64(len(doc)), ModTime: time.Now()}); err != nil {
		return nil, err
	}
	if _, err := tw.Write([]byte(doc)); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
