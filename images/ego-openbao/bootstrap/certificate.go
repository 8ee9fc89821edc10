package bootstrap

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"math/big"
	"time"
)

// The private OID arc of this project: 1.2.840.113556.1.8000.2554 is Microsoft's arc for GUID-derived OIDs, free to
// use without registration; the GUID dd1caea5-be85-4595-b067-cfd3b385a5e8 split as that arc prescribes gives the
// seven numbers after it. (2.25.<uuid> would need a 128-bit arc, which Go's asn1.ObjectIdentifier cannot hold.)
var oidArc = asn1.ObjectIdentifier{1, 2, 840, 113556, 1, 8000, 2554, 56604, 44709, 48773, 17813, 45159, 13620147, 8758760}

// Extensions of the listener certificate, all non-critical (other TLS clients ignore them):
//   - OIDAttestationToken: DER UTF8String, the MAA token (JWT compact serialisation) binding the certificate's key.
//   - OIDSimulation: DER UTF8String, a note that the enclave runs in simulation (OE_SIMULATION=1): nothing attested.
//   - OIDIssuerCertificate: the DER of the certificate's issuer, the enclave's self-signed CA certificate for the
//     same key, which clients pin (scripts/verify.py writes it as their CA file).
//
// A listener certificate carries exactly one of the first two, and the third.
var (
	OIDAttestationToken  = append(append(asn1.ObjectIdentifier{}, oidArc...), 1)
	OIDSimulation        = append(append(asn1.ObjectIdentifier{}, oidArc...), 2)
	OIDIssuerCertificate = append(append(asn1.ObjectIdentifier{}, oidArc...), 3)
)

// SimulationNote is the text of the simulation extension.
const SimulationNote = "OE_SIMULATION=1: this enclave runs without SGX; nothing about it is attested"

// CertificateLifetime bounds how long a client's pinned CA certificate stays valid. Every refresh issues a new CA
// certificate and leaf with the same key and names, so a leaf issued later still verifies against a CA
// certificate pinned earlier, until that one expires; then, or after a restart (a new key), clients verify again.
const CertificateLifetime = 30 * 24 * time.Hour

// clockSkew backdates NotBefore so that clients whose clocks run behind accept a fresh certificate.
const clockSkew = time.Hour

// issueCertificate returns the listener certificate (DER), issued by a CA certificate self-signed with the
// listener key, which is what clients pin. A leaf cannot be its own pinned issuer across refreshes: Go rejects a
// chain in which a certificate's issuer has the same subject, key and names as the certificate itself. The leaf
// carries the evidence (the token, or the simulation note when token is empty) and a copy of its issuer.
func issueCertificate(key crypto.Signer, config Config, token string, now time.Time) ([]byte, error) {
	var evidence pkix.Extension
	switch {
	case token != "":
		value, err := asn1.MarshalWithParams(token, "utf8")
		if err != nil {
			return nil, fmt.Errorf("encoding the attestation token: %w", err)
		}
		evidence = pkix.Extension{Id: OIDAttestationToken, Value: value}
	case config.Simulation:
		value, err := asn1.MarshalWithParams(SimulationNote, "utf8")
		if err != nil {
			return nil, fmt.Errorf("encoding the simulation note: %w", err)
		}
		evidence = pkix.Extension{Id: OIDSimulation, Value: value}
	default:
		return nil, fmt.Errorf("no attestation token, and not a simulation")
	}

	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, fmt.Errorf("encoding the listener public key: %w", err)
	}
	spkiDigest := sha256.Sum256(spki)
	keyID := spkiDigest[:20]
	// Names stay the same for every refresh (the issuer's subject is how a new leaf finds a pinned CA certificate);
	// the key's digest in them tells one enclave's certificates from another's.
	fingerprint := hex.EncodeToString(spkiDigest[:8])
	notBefore, notAfter := now.Add(-clockSkew), now.Add(CertificateLifetime)

	caSerial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	caTemplate := &x509.Certificate{
		SerialNumber:          caSerial,
		Subject:               pkix.Name{CommonName: "OpenBao attested listener CA " + fingerprint},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          keyID,
		AuthorityKeyId:        keyID,
	}
	issuer, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("issuing the listener CA certificate: %w", err)
	}

	leafSerial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	leafTemplate := &x509.Certificate{
		SerialNumber:          leafSerial,
		Subject:               pkix.Name{CommonName: "OpenBao attested listener " + fingerprint},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              config.DNSNames,
		IPAddresses:           config.IPAddresses,
		ExtraExtensions:       []pkix.Extension{evidence, {Id: OIDIssuerCertificate, Value: issuer}},
	}
	leaf, err := x509.CreateCertificate(rand.Reader, leafTemplate, caTemplate, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("issuing the listener certificate: %w", err)
	}
	return leaf, nil
}

func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("drawing a serial number: %w", err)
	}
	return serial, nil
}
