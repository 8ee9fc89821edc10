package bootstrap

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// The listener CA: the key clients pin (scripts/verify.py writes its certificate as their CA file). With attested
// unseal it is derived from the released seal key (keyrelease/derive.go), so every replica and every restart under
// the same seal key version presents chains to the same CA and a client pins once; rotating the seal key version
// rotates it. With Shamir there is no enclave-only secret to derive it from, so each start makes a fresh one.

// CAKeySeedBytes is the length of the secret a derived CA key is made from: 512 bits, more than the N+64 = 320
// FIPS 186-5 A.2.1 asks for on P-256, so that reducing it modulo n-1 leaves a negligible bias.
const CAKeySeedBytes = 64

// CA certificate validity: fixed, so that the certificate made from one key is the same bytes on every replica and
// start (with the deterministic serial and RFC 6979 signature below), and long, so that a pinned CA file never
// expires. The leaf carries the freshness (CertificateLifetime and the token).
var (
	caNotBefore = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	caNotAfter  = time.Date(2126, 1, 1, 0, 0, 0, 0, time.UTC)
)

// CAKeyFromSeed derives the P-256 listener CA key from secret bytes as FIPS 186-5 A.2.1 does ("extra random bits"):
// d = (c mod (n-1)) + 1 for the seed read as a big-endian integer c. ecdsa.GenerateKey is not used: Go does not
// promise a stable key for a deterministic reader, and a CA that changed with a Go upgrade would break every pin.
func CAKeyFromSeed(seed []byte) (*ecdsa.PrivateKey, error) {
	if len(seed) != CAKeySeedBytes {
		return nil, fmt.Errorf("a CA key seed of %d bytes, want %d", len(seed), CAKeySeedBytes)
	}
	curve := elliptic.P256()
	nMinus1 := new(big.Int).Sub(curve.Params().N, big.NewInt(1))
	d := new(big.Int).SetBytes(seed)
	d.Mod(d, nMinus1).Add(d, big.NewInt(1))
	scalar := d.FillBytes(make([]byte, (curve.Params().BitSize+7)/8))
	defer clear(scalar)
	key, err := ecdsa.ParseRawPrivateKey(curve, scalar)
	if err != nil {
		return nil, fmt.Errorf("building the listener CA key: %w", err)
	}
	return key, nil
}

// newCAKey is a fresh CA key for a start without a derived one (Shamir).
func newCAKey() (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the listener CA key: %w", err)
	}
	return key, nil
}

// issueCACertificate returns the CA certificate (DER) self-signed with key. Every field is a function of the key:
// the serial and the subject come from the key's SPKI digest, the dates are fixed, and the signature is RFC 6979's
// deterministic ECDSA (nil randomness), so replicas and restarts with the same key serve the same bytes.
func issueCACertificate(key *ecdsa.PrivateKey) ([]byte, error) {
	if key == nil || key.Curve != elliptic.P256() {
		return nil, errors.New("the listener CA key must be an ECDSA P-256 key")
	}
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, fmt.Errorf("encoding the listener CA public key: %w", err)
	}
	digest := sha256.Sum256(spki)
	template := &x509.Certificate{
		// 127 bits of the digest: positive and within RFC 5280's 20 octets.
		SerialNumber:          new(big.Int).Rsh(new(big.Int).SetBytes(digest[:16]), 1),
		Subject:               pkix.Name{CommonName: fmt.Sprintf("OpenBao attested listener CA %x", digest[:8])},
		NotBefore:             caNotBefore,
		NotAfter:              caNotAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          digest[:20],
	}
	der, err := x509.CreateCertificate(nil, template, template, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("issuing the listener CA certificate: %w", err)
	}
	return der, nil
}
