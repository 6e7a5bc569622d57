package kubeenv

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki holds the paths of the files written by writePKI.
type pki struct {
	caCert, serverCert, serverKey, adminCert, adminKey, saKey, saPub, tokens string
	dnsToken                                                                 string
}

type keyPair struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// writePKI generates a throwaway CA, serving and admin certs, the
// service-account key pair and the static token file under dir.
func writePKI(dir string) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &pki{
		caCert:     filepath.Join(dir, "ca.crt"),
		serverCert: filepath.Join(dir, "apiserver.crt"),
		serverKey:  filepath.Join(dir, "apiserver.key"),
		adminCert:  filepath.Join(dir, "admin.crt"),
		adminKey:   filepath.Join(dir, "admin.key"),
		saKey:      filepath.Join(dir, "sa.key"),
		saPub:      filepath.Join(dir, "sa.pub"),
		tokens:     filepath.Join(dir, "tokens.csv"),
	}

	ca, err := newCert(nil, pkix.Name{CommonName: "nodedns-e2e-ca"}, certCA)
	if err != nil {
		return nil, err
	}
	server, err := newCert(ca, pkix.Name{CommonName: "kube-apiserver"}, certServer)
	if err != nil {
		return nil, err
	}
	admin, err := newCert(ca, pkix.Name{CommonName: "e2e-admin", Organization: []string{"system:masters"}}, certClient)
	if err != nil {
		return nil, err
	}
	for _, f := range []struct {
		kp        *keyPair
		cert, key string
	}{
		{ca, p.caCert, ""},
		{server, p.serverCert, p.serverKey},
		{admin, p.adminCert, p.adminKey},
	} {
		if err := writePEM(f.cert, "CERTIFICATE", f.kp.cert.Raw); err != nil {
			return nil, err
		}
		if f.key == "" {
			continue
		}
		der, err := x509.MarshalPKCS8PrivateKey(f.kp.key)
		if err != nil {
			return nil, err
		}
		if err := writePEM(f.key, "PRIVATE KEY", der); err != nil {
			return nil, err
		}
	}

	// Service-account tokens are RS256 by default, so the key must be RSA.
	sa, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	if err := writePEM(p.saKey, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(sa)); err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	if err != nil {
		return nil, err
	}
	if err := writePEM(p.saPub, "PUBLIC KEY", pub); err != nil {
		return nil, err
	}

	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return nil, err
	}
	p.dnsToken = hex.EncodeToString(tok)
	// token,user,uid: no groups, so only the ClusterRoleBinding grants anything.
	line := fmt.Sprintf("%s,%s,%s\n", p.dnsToken, DNSUser, DNSUser+"-uid")
	if err := os.WriteFile(p.tokens, []byte(line), 0o600); err != nil {
		return nil, err
	}
	return p, nil
}

type certKind int

const (
	certCA certKind = iota
	certServer
	certClient
)

func newCert(parent *keyPair, subject pkix.Name, kind certKind) (*keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      subject,
		// Backdated so small clock differences never make it "not yet valid".
		NotBefore: now.Add(-time.Hour),
		NotAfter:  now.Add(7 * 24 * time.Hour),
		KeyUsage:  x509.KeyUsageDigitalSignature,
	}
	switch kind {
	case certCA:
		tmpl.IsCA = true
		tmpl.BasicConstraintsValid = true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	case certServer:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	case certClient:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	signerCert, signerKey := tmpl, crypto.Signer(key)
	if parent != nil {
		signerCert, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signerKey)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &keyPair{cert: cert, key: key}, nil
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}
