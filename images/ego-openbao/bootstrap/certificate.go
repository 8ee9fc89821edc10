package bootstrap

import (
	"crypto/ecdsa"
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

// Extensions of the listener (leaf) certificate, all non-critical (other TLS clients ignore them):
//   - OIDAttestationToken: DER UTF8String, the MAA token (JWT compact serialisation) binding the leaf and CA keys.
//   - OIDSimulation: DER UTF8String, a note that the enclave runs in simulation (OE_SIMULATION=1): nothing attested.
//   - OIDIssuerCertificate: the DER of the leaf's issuer, the listener CA certificate (listenerca.go), which clients
//     pin (scripts/verify.py writes it as their CA file).
//
// A listener certificate carries exactly one of the first two, and the third.
var (
	OIDAttestationToken  = append(append(asn1.ObjectIdentifier{}, oidArc...), 1)
	OIDSimulation        = append(append(asn1.ObjectIdentifier{}, oidArc...), 2)
	OIDIssuerCertificate = append(append(asn1.ObjectIdentifier{}, oidArc...), 3)
)

// SimulationNote is the text of the simulation extension.
const SimulationNote = "OE_SIMULATION=1: this enclave runs without SGX; nothing about it is attested"

// CertificateLifetime is the leaf's validity. Every refresh issues a new leaf for the same per-start key; the CA
// certificate clients pin stays valid for a century (listenerca.go), so only the token's own freshness matters.
const CertificateLifetime = 30 * 24 * time.Hour

// clockSkew backdates NotBefore so that clients whose clocks run behind accept a fresh certificate.
const clockSkew = time.Hour

// issueCertificate returns the listener certificate (DER) for the leaf key, issued by the CA certificate caDER
// (signed with caKey). It carries the evidence (the token, or the simulation note when token is empty) and a copy
// of its issuer.
func issueCertificate(leafKey *ecdsa.PrivateKey, caKey *ecdsa.PrivateKey, caDER []byte, config Config, token string, now time.Time) ([]byte, error) {
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
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("reading the listener CA certificate: %w", err)
	}

	spki, err := x509.MarshalPKIXPublicKey(leafKey.Public())
	if err != nil {
		return nil, fmt.Errorf("encoding the listener public key: %w", err)
	}
	spkiDigest := sha256.Sum256(spki)
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "OpenBao attested listener " + hex.EncodeToString(spkiDigest[:8])},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(CertificateLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		SubjectKeyId:          spkiDigest[:20],
		DNSNames:              config.DNSNames,
		IPAddresses:           config.IPAddresses,
		ExtraExtensions:       []pkix.Extension{evidence, {Id: OIDIssuerCertificate, Value: caDER}},
	}
	leaf, err := x509.CreateCertificate(rand.Reader, template, ca, leafKey.Public(), caKey)
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
