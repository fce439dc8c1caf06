package node

import (
	"crypto"
	"crypto/sha256"
	stdx509 "crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	talosx509 "github.com/siderolabs/crypto/x509"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/role"
)

// The provider's own client certificates: the stored talosconfig certificate of the machine
// secrets lives a year (machinery constants TalosAPIDefaultCertificateValidityDuration), and after
// that Talos' apid refuses the handshake (Go's RequireAndVerifyClientCert at the node's clock).
// An Issuer holds the machine CA (its key too) and mints short-lived certificates instead, as
// `talosctl config new` does on a node (machinery config/generate/secrets NewAdminCertificateAndKey).
const (
	// MintedLifetime is how long a minted certificate is valid from now, at least.
	MintedLifetime = time.Hour
	// ClockSkew is how far back a minted certificate's not-before lies, so a node whose clock is
	// a few minutes behind the machine running the provider still takes it.
	ClockSkew = 5 * time.Minute
)

// Issuer mints Talos API client certificates with fixed roles from one machine CA. One per CA and
// role set per process (NewIssuer): a certificate is reused while it has long enough left.
type Issuer struct {
	ca      *talosx509.PEMEncodedCertificateAndKey
	caB64   string
	roles   role.Set
	now     func() time.Time
	mu      sync.Mutex
	current Credentials
	until   time.Time
}

// issuers are this process's issuers, by CA certificate and roles.
var issuers sync.Map

// NewIssuer is the process's issuer of certificates with roles from the machine CA: its
// certificate and key as the machine secrets' certs.os hold them (base64-encoded PEM). The CA is
// checked here (it must parse, its key match, and it sign); errors name what is wrong with it.
func NewIssuer(caCertificate, caKey string, roles role.Set) (*Issuer, error) {
	if roles.Empty() {
		return nil, errors.New("no roles to issue a certificate with")
	}
	crt, err := base64.StdEncoding.DecodeString(caCertificate)
	if err != nil {
		return nil, fmt.Errorf("cert is not base64: %w", err)
	}
	key, err := base64.StdEncoding.DecodeString(caKey)
	if err != nil {
		return nil, fmt.Errorf("key is not base64: %w", err)
	}
	id := sha256.Sum256(append(append(crt, 0), key...))
	k := string(id[:]) + "\x00" + strings.Join(roles.Strings(), ",")
	if got, ok := issuers.Load(k); ok {
		return got.(*Issuer), nil //nolint:forcetypeassert // only *Issuer is stored
	}
	pair := &talosx509.PEMEncodedCertificateAndKey{Crt: crt, Key: key}
	authority, err := talosx509.NewCertificateAuthorityFromCertificateAndKey(pair)
	if err != nil {
		return nil, fmt.Errorf("not a certificate authority with its key: %w", err)
	}
	signer, isSigner := authority.Key.(crypto.Signer)
	pub, comparable := authority.Crt.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	switch {
	case !authority.Crt.IsCA:
		return nil, fmt.Errorf("not a certificate authority with its key: the certificate (CN=%s) is no CA", authority.Crt.Subject.CommonName)
	case !isSigner || !comparable || !pub.Equal(signer.Public()):
		return nil, errors.New("not a certificate authority with its key: the key is not the certificate's")
	}
	i := &Issuer{ca: pair, caB64: caCertificate, roles: roles, now: time.Now}
	if err := i.mint(0); err != nil {
		return nil, err
	}
	got, _ := issuers.LoadOrStore(k, i)
	return got.(*Issuer), nil //nolint:forcetypeassert // only *Issuer is stored
}

// Credentials are a client configuration with a minted certificate valid for at least atLeast
// more (and MintedLifetime at least): the last one minted while it has that long left, else a new
// one. Never stored anywhere but in this process. Should minting fail (it worked at NewIssuer;
// only the system's randomness could fail it), the last one is returned: a node refusing it says so.
func (i *Issuer) Credentials(atLeast time.Duration) Credentials {
	i.mu.Lock()
	defer i.mu.Unlock()
	_ = i.mint(atLeast)
	return i.current
}

func (i *Issuer) mint(atLeast time.Duration) error {
	now := i.now()
	if i.current.ClientKey != "" && i.until.Sub(now) >= atLeast {
		return nil
	}
	lifetime := max(MintedLifetime, atLeast+ClockSkew)
	minted, err := secrets.NewAdminCertificateAndKey(now.Add(-ClockSkew), i.ca, i.roles, ClockSkew+lifetime)
	if err != nil {
		return fmt.Errorf("mint a %s client certificate from the machine CA: %w", strings.Join(i.roles.Strings(), ","), err)
	}
	i.current = Credentials{
		CACertificate:     i.caB64,
		ClientCertificate: base64.StdEncoding.EncodeToString(minted.Crt),
		ClientKey:         base64.StdEncoding.EncodeToString(minted.Key),
	}
	i.until = now.Add(lifetime)
	return nil
}

// CertificateExpiredError is a stored client certificate outside its validity at the machine's
// clock: Talos would refuse the handshake (TLS alert "expired certificate"), so it is not tried.
type CertificateExpiredError struct {
	Subject             string
	NotBefore, NotAfter time.Time
	Now                 time.Time
}

func (e *CertificateExpiredError) Error() string {
	const fix = "give the resource machineSecrets (the talos plugin's machine.Secrets machineSecrets; TalosCluster does) so the provider " +
		"mints its own short-lived certificate from the machine CA, or renew the stack's client certificate"
	if e.Now.Before(e.NotBefore) {
		return fmt.Sprintf("not valid before %s (%s; now %s: is this machine's clock right?); %s",
			e.NotBefore.UTC().Format(time.RFC3339), e.Subject, e.Now.UTC().Format(time.RFC3339), fix)
	}
	return fmt.Sprintf("expired on %s (%s); Talos refuses it; %s", e.NotAfter.UTC().Format(time.RFC3339), e.Subject, fix)
}

// checkValidity refuses a client certificate that is past its not-after or before its
// not-before at now. A certificate that does not decode is left to the client, which says so.
func checkValidity(clientCertificate string, now time.Time) error {
	der, err := base64.StdEncoding.DecodeString(clientCertificate)
	if err != nil {
		return nil //nolint:nilerr // the Talos client reports it
	}
	block, _ := pem.Decode(der)
	if block == nil {
		return nil
	}
	crt, err := stdx509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil //nolint:nilerr // the Talos client reports it
	}
	if now.After(crt.NotAfter) || now.Before(crt.NotBefore) {
		var names []string
		if len(crt.Subject.Organization) > 0 {
			names = append(names, "O="+strings.Join(crt.Subject.Organization, "+"))
		}
		if crt.Subject.CommonName != "" {
			names = append(names, "CN="+crt.Subject.CommonName)
		}
		subject := strings.Join(names, ", ")
		if subject == "" {
			subject = "no subject"
		}
		return &CertificateExpiredError{Subject: subject, NotBefore: crt.NotBefore, NotAfter: crt.NotAfter, Now: now}
	}
	return nil
}
