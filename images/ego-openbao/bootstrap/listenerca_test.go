package bootstrap

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"math/big"
	"strings"
	"testing"
)

// FIPS 186-5 A.2.1, computed here with math/big and the curve's base point multiplication, independently of
// CAKeyFromSeed: d = (c mod (n-1)) + 1, Q = d·G. The edge seeds land on d = 1 and d = n-1.
func TestCAKeyFromSeedFollowsFIPS186A21(t *testing.T) {
	n := elliptic.P256().Params().N
	nMinus1 := new(big.Int).Sub(n, big.NewInt(1))
	pad := func(value *big.Int) []byte { return value.FillBytes(make([]byte, CAKeySeedBytes)) }
	seeds := map[string][]byte{
		"zero":     make([]byte, CAKeySeedBytes),
		"n-1":      pad(nMinus1),
		"n-2":      pad(new(big.Int).Sub(n, big.NewInt(2))),
		"all ones": bytes.Repeat([]byte{0xff}, CAKeySeedBytes),
		"pattern":  bytes.Repeat([]byte{0x5a, 0xc3}, CAKeySeedBytes/2),
	}
	for name, seed := range seeds {
		t.Run(name, func(t *testing.T) {
			key, err := CAKeyFromSeed(seed)
			if err != nil {
				t.Fatal(err)
			}
			d := new(big.Int).SetBytes(seed)
			d.Mod(d, nMinus1).Add(d, big.NewInt(1))
			x, y := elliptic.P256().ScalarBaseMult(d.FillBytes(make([]byte, 32)))
			want := &ecdsa.PublicKey{Curve: elliptic.P256(), X: x, Y: y}
			if key.D.Cmp(d) != 0 || !key.PublicKey.Equal(want) {
				t.Errorf("key d=%x, want %x", key.D, d)
			}
		})
	}
	if _, err := CAKeyFromSeed(make([]byte, 32)); err == nil {
		t.Error("a 32-byte seed was accepted: A.2.1 needs at least N+64 bits")
	}
}

// What replicas and restarts rely on: one key, one CA certificate, byte for byte.
func TestTheCACertificateIsAFunctionOfTheKey(t *testing.T) {
	key, err := CAKeyFromSeed(bytes.Repeat([]byte{7}, CAKeySeedBytes))
	if err != nil {
		t.Fatal(err)
	}
	first, err := issueCACertificate(key)
	if err != nil {
		t.Fatal(err)
	}
	again, err := CAKeyFromSeed(bytes.Repeat([]byte{7}, CAKeySeedBytes))
	if err != nil {
		t.Fatal(err)
	}
	second, err := issueCACertificate(again)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Error("the same key gave two different CA certificates")
	}
	ca, err := x509.ParseCertificate(first)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256(ca.RawSubjectPublicKeyInfo)
	if ca.Subject.CommonName != "OpenBao attested listener CA "+hex.EncodeToString(digest[:8]) || ca.SerialNumber.Sign() <= 0 ||
		!strings.HasPrefix(ca.SignatureAlgorithm.String(), "ECDSA-SHA256") {
		t.Errorf("CA certificate %q serial %v %v", ca.Subject.CommonName, ca.SerialNumber, ca.SignatureAlgorithm)
	}
}

// Binding version 3 as a client recomputes it, after the bootstrap has read OpenBao's health: an initialised, unsealed
// store. An unchanged state costs no token.
func TestObserveStoreBindsInitializedAndClusterID(t *testing.T) {
	dir := t.TempDir()
	provider := newProvider()
	listener, err := StartWith(testConfig, provider, dir, discard, Identity{
		SealKeyID:            "https://kv.vault.azure.net/keys/seal/0123456789abcdef0123456789abcdef",
		PreviousSealKeyID:    "https://kv.vault.azure.net/keys/seal/fedcba9876543210fedcba9876543210",
		ReleaseJWKThumbprint: "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, state := range []StoreState{{}, {Initialized: true, ClusterID: testClusterID}, {Initialized: true, ClusterID: testClusterID}} {
		if _, err := listener.ObserveStore(state); err != nil {
			t.Fatal(err)
		}
	}
	bound := provider.BoundData()
	if len(bound) != 2 {
		t.Fatalf("%d tokens, want 2 (the start and the one store change)", len(bound))
	}
	certificate, key := readListener(t, dir)
	issuer := issuerOf(t, certificate)
	leafDigest := sha256.Sum256(certificate.RawSubjectPublicKeyInfo)
	caDigest := sha256.Sum256(issuer.RawSubjectPublicKeyInfo)
	want := `{"v":3,"purpose":"confidential-vault/openbao-listener","listener_spki_sha256":"` + hex.EncodeToString(leafDigest[:]) +
		`","ca_spki_sha256":"` + hex.EncodeToString(caDigest[:]) +
		`","seal_key_id":"https://kv.vault.azure.net/keys/seal/0123456789abcdef0123456789abcdef"` +
		`,"previous_seal_key_id":"https://kv.vault.azure.net/keys/seal/fedcba9876543210fedcba9876543210"` +
		`,"release_jwk_thumbprint":"NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs","initialized":true,"cluster_id":"` + testClusterID + `"}`
	token, _ := extensionText(t, certificate, OIDAttestationToken)
	claims := verifyRS256(t, token, &signingKey().PublicKey)
	if held := claims["x-ms-sgx-ehd"]; held != base64URL(want) || string(bound[1]) != want {
		t.Errorf("served token binds %s, want\n%s", bound[1], want)
	}
	if !key.PublicKey.Equal(certificate.PublicKey) {
		t.Error("listener.key does not belong to the reissued certificate")
	}
}
