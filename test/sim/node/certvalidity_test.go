package node

import (
	"crypto/tls"
	stdx509 "crypto/x509"
	"strings"
	"testing"
	"time"

	talosx509 "github.com/siderolabs/crypto/x509"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"github.com/siderolabs/talos/pkg/machinery/role"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// TestAConfiguredNodeRefusesAClientCertificateOutsideItsValidity: Talos' apid serves mutual TLS
// with siderolabs/crypto's tls.Mutual, Go's RequireAndVerifyClientCert and no clock of its own
// (talos internal/app/apid/pkg/provider/provider.go ServerConfig; crypto tls/tls.go), so Go
// verifies the client's chain at the node's time and refuses the handshake with the alert
// "expired certificate", for a certificate past its not-after and for one before its not-before
// alike (x509.Expired is both; crypto/tls handshake_server.go processCertsFromClient). The
// client reads it as Unavailable, as it reads a node that is down. The os:admin role does not
// help: the call never reaches the authorizer.
func TestAConfiguredNodeRefusesAClientCertificateOutsideItsValidity(t *testing.T) {
	n, cl := startNode(t), newCluster(t, "lab")
	if err := apply(t, insecure(t, n), n, cl.controlPlane); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, tc := range []struct {
		name                string
		notBefore, notAfter time.Time
		want                string
	}{
		{"valid for the hour", now.Add(-5 * time.Minute), now.Add(time.Hour), ""},
		{"expired yesterday", now.Add(-366 * 24 * time.Hour), now.Add(-24 * time.Hour), "tls: expired certificate"},
		{"valid only from tomorrow", now.Add(24 * time.Hour), now.Add(48 * time.Hour), "tls: expired certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, err := talosx509.NewCertificateAuthorityFromCertificateAndKey(cl.bundle.Certs.OS)
			if err != nil {
				t.Fatal(err)
			}
			pair, err := talosx509.NewKeyPair(ca,
				talosx509.Organization(string(role.Admin)),
				talosx509.NotBefore(tc.notBefore),
				talosx509.NotAfter(tc.notAfter),
				talosx509.KeyUsage(stdx509.KeyUsageDigitalSignature),
				talosx509.ExtKeyUsage([]stdx509.ExtKeyUsage{stdx509.ExtKeyUsageClientAuth}),
			)
			if err != nil {
				t.Fatal(err)
			}
			c := mutual(t, n, clientconfig.NewConfig("admin", nil, cl.bundle.Certs.OS.Crt, talosx509.NewCertificateAndKeyFromKeyPair(pair)))
			_, err = c.MachineClient.Version(ctx(t, n), &emptypb.Empty{})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("a valid os:admin certificate was refused: %v", err)
			case tc.want == "":
				return
			case status.Code(err) != codes.Unavailable:
				t.Fatalf("got %v, want the call refused as Unavailable", err)
			}
			// Over TLS 1.3 the client finishes its side of the handshake before the node judges its
			// certificate, so gRPC may write first and see the node's close ("broken pipe") rather
			// than the alert. Reading from a plain TLS connection always gets the alert itself.
			roots := stdx509.NewCertPool()
			roots.AppendCertsFromPEM(cl.bundle.Certs.OS.Crt)
			conn, err := tls.Dial("tcp", n.Addr(), &tls.Config{
				Certificates: []tls.Certificate{*pair.Certificate},
				RootCAs:      roots,
				ServerName:   n.address.String(),
			})
			if err == nil {
				_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, err = conn.Read(make([]byte, 1))
				_ = conn.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want the handshake refused with %q", err, tc.want)
			}
		})
	}
}
