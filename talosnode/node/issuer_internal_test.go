package node

import (
	stdx509 "crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/role"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func parsed(t *testing.T, b64 string) *stdx509.Certificate {
	t.Helper()
	der, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(der)
	if block == nil {
		t.Fatal("no PEM block")
	}
	crt, err := stdx509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return crt
}

// TestTheIssuerMintsShortLivedCertificatesOfItsRolesAndRenewsThemInTime: a minted certificate
// is the CA's, carries the roles as organizations, is valid from ClockSkew back for an hour, is
// reused while it has what the caller needs left, and replaced when it has not. One issuer per CA.
func TestTheIssuerMintsShortLivedCertificatesOfItsRolesAndRenewsThemInTime(t *testing.T) {
	b, err := secrets.NewBundle(secrets.NewClock(), config.TalosVersion1_11)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.StdEncoding.EncodeToString
	i, err := NewIssuer(enc(b.Certs.OS.Crt), enc(b.Certs.OS.Key), role.MakeSet(role.Admin))
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := NewIssuer(enc(b.Certs.OS.Crt), enc(b.Certs.OS.Key), role.MakeSet(role.Admin)); again != i {
		t.Error("a second issuer of the same CA and roles in one process")
	}
	if reader, _ := NewIssuer(enc(b.Certs.OS.Crt), enc(b.Certs.OS.Key), role.MakeSet(role.Reader)); reader == i {
		t.Error("the os:reader issuer is the os:admin one")
	}

	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	i.now = func() time.Time { return now }
	i.current = Credentials{} // minted at NewIssuer's real clock: start afresh at the fake one
	first := i.Credentials(0)
	crt := parsed(t, first.ClientCertificate)
	ca := parsed(t, enc(b.Certs.OS.Crt))
	if err := crt.CheckSignatureFrom(ca); err != nil {
		t.Errorf("not signed by the machine CA: %v", err)
	}
	if first.CACertificate != enc(b.Certs.OS.Crt) {
		t.Error("the credentials' CA is not the machine CA")
	}
	if !slices.Equal(crt.Subject.Organization, []string{string(role.Admin)}) {
		t.Errorf("organizations %v, want [os:admin]", crt.Subject.Organization)
	}
	if !crt.NotBefore.Equal(now.Add(-ClockSkew)) || !crt.NotAfter.Equal(now.Add(MintedLifetime)) {
		t.Errorf("valid %s to %s, want %s to %s", crt.NotBefore, crt.NotAfter, now.Add(-ClockSkew), now.Add(MintedLifetime))
	}

	now = now.Add(40 * time.Minute)
	if got := i.Credentials(15 * time.Minute); got != first {
		t.Error("a certificate with 20 minutes left was replaced for a call that needs 15")
	}
	now = now.Add(10 * time.Minute)
	renewed := i.Credentials(15 * time.Minute)
	if renewed == first {
		t.Fatal("a certificate with 10 minutes left was kept for a call that needs 15")
	}
	if got := parsed(t, renewed.ClientCertificate).NotAfter; !got.Equal(now.Add(MintedLifetime)) {
		t.Errorf("renewed not-after %s, want %s", got, now.Add(MintedLifetime))
	}
	long := i.Credentials(3 * time.Hour)
	if got := parsed(t, long.ClientCertificate).NotAfter; !got.Equal(now.Add(3*time.Hour + ClockSkew)) {
		t.Errorf("a certificate for a 3h wait is valid until %s, want %s", got, now.Add(3*time.Hour+ClockSkew))
	}
}

func TestAnIssuerOfSomethingOtherThanACAIsRefusedNamingWhy(t *testing.T) {
	b, err := secrets.NewBundle(secrets.NewClock(), config.TalosVersion1_11)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.StdEncoding.EncodeToString
	for _, tc := range []struct{ name, crt, key, want string }{
		{"not base64", "%%%", enc(b.Certs.OS.Key), "cert is not base64"},
		{"the key of another CA", enc(b.Certs.OS.Crt), enc(b.Certs.K8s.Key), "not a certificate authority with its key"},
		{"empty", "", "", "not a certificate authority with its key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewIssuer(tc.crt, tc.key, role.MakeSet(role.Admin)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// TestACertificateTheNodeRefusesIsAnAnswer: a node whose clock puts the certificate outside its
// validity refuses the handshake with the alert the simulator's test shows (gRPC: Unavailable);
// a wait does not ask again for that, as it does for a node that is down.
func TestACertificateTheNodeRefusesIsAnAnswer(t *testing.T) {
	refused := &Error{Phase: "version", Err: status.Error(codes.Unavailable,
		`connection error: desc = "error reading server preface: remote error: tls: expired certificate"`)}
	if refused.NotAnswering() {
		t.Error("a refused certificate reads as a node not answering")
	}
	down := &Error{Phase: "version", Err: status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:50000: connect: connection refused"`)}
	if !down.NotAnswering() {
		t.Error("a refused connection reads as an answer")
	}
}
