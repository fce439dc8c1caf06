package node

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	stdx509 "crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"

	talosx509 "github.com/siderolabs/crypto/x509"
	"github.com/siderolabs/talos/pkg/machinery/role"
)

// issue signs a leaf for pub with the CA, valid from an hour ago for a year.
func issue(ca *talosx509.CertificateAuthority, template *stdx509.Certificate, pub crypto.PublicKey) ([]byte, error) {
	signer, ok := ca.Key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("CA key of type %T cannot sign", ca.Key)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return nil, err
	}
	template.SerialNumber = serial
	template.NotBefore = time.Now().Add(-time.Hour)
	template.NotAfter = time.Now().Add(365 * 24 * time.Hour)
	return stdx509.CreateCertificate(rand.Reader, template, ca.Crt, pub, signer)
}

// serverCert is the configured node's API certificate: signed by the machine CA, with the node's
// address as IP SAN, as machined issues it (the client verifies the endpoint against it).
func serverCert(ca *talosx509.CertificateAuthority, address net.IP, hostname string) (tls.Certificate, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	template := &stdx509.Certificate{
		Subject:     pkix.Name{CommonName: hostname},
		DNSNames:    []string{hostname},
		IPAddresses: []net.IP{address},
		KeyUsage:    stdx509.KeyUsageDigitalSignature,
		ExtKeyUsage: []stdx509.ExtKeyUsage{stdx509.ExtKeyUsageServerAuth},
	}
	der, err := issue(ca, template, pub)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}, nil
}

// maintenanceCert is self-signed, as in Talos maintenance mode; clients there skip verification.
func maintenanceCert(address net.IP) (tls.Certificate, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	template := &stdx509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "maintenance-service.talos.dev"},
		IPAddresses:  []net.IP{address, net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     stdx509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []stdx509.ExtKeyUsage{stdx509.ExtKeyUsageServerAuth},
	}
	der, err := stdx509.CreateCertificate(rand.Reader, template, template, pub, priv)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}, nil
}

// kubeAdminCert is the kubeconfig's client certificate, from the cluster (Kubernetes) CA.
func kubeAdminCert(ca *talosx509.CertificateAuthority) (certPEM, keyPEM []byte, err error) {
	return kubeClientCert(ca, "admin", "system:masters")
}

// kubeClientCert is a client certificate from the cluster CA: the API server takes the common
// name as user and the organizations as groups.
func kubeClientCert(ca *talosx509.CertificateAuthority, user string, groups ...string) (certPEM, keyPEM []byte, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := issue(ca, &stdx509.Certificate{
		Subject:     pkix.Name{CommonName: user, Organization: groups},
		KeyUsage:    stdx509.KeyUsageDigitalSignature,
		ExtKeyUsage: []stdx509.ExtKeyUsage{stdx509.ExtKeyUsageClientAuth},
	}, pub)
	if err != nil {
		return nil, nil, err
	}
	return pemPair(der, priv)
}

// pemPair is a certificate (DER) and its private key, PEM-encoded (the key as PKCS #8).
func pemPair(der []byte, priv any) (crtPEM, keyPEM []byte, err error) {
	keyDER, err := stdx509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// clientCertificate is a Talos API client certificate signed by the machine CA, its roles in O=,
// valid for ttl from now, as Talos 1.11's GenerateClientConfiguration issues it. Unlike
// machinery 1.14's secrets bundle, which refuses an empty role set, Talos 1.11 issues a
// certificate without roles too (which its authorizer then refuses).
func clientCertificate(machineCA *talosx509.PEMEncodedCertificateAndKey, roles role.Set, ttl time.Duration) (*talosx509.PEMEncodedCertificateAndKey, error) {
	ca, err := talosx509.NewCertificateAuthorityFromCertificateAndKey(machineCA)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	pair, err := talosx509.NewKeyPair(ca,
		talosx509.Organization(roles.Strings()...),
		talosx509.NotBefore(now),
		talosx509.NotAfter(now.Add(ttl)),
		talosx509.KeyUsage(stdx509.KeyUsageDigitalSignature),
		talosx509.ExtKeyUsage([]stdx509.ExtKeyUsage{stdx509.ExtKeyUsageClientAuth}),
	)
	if err != nil {
		return nil, err
	}
	return talosx509.NewCertificateAndKeyFromKeyPair(pair), nil
}
