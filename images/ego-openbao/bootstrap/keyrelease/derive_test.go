package keyrelease

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"math/big"
	"testing"

	"confidential-vault.internal/bootstrap/fakekeyvault"
)

// RFC 7638 section 3.1: the example key and its published thumbprint.
func TestThumbprintMatchesRFC7638(t *testing.T) {
	n, err := base64.RawURLEncoding.DecodeString("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
	if err != nil {
		t.Fatal(err)
	}
	key := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537}
	if got := Thumbprint(key); got != "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs" {
		t.Errorf("Thumbprint = %s, want RFC 7638's NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs", got)
	}
}

// The seal key depends on the key, not on how Key Vault encodes it: PKCS#8 or PKCS#1, d mod φ(n) or d mod λ(n),
// p and q in either order.
func TestSealKeyIsIndependentOfTheReleasedEncoding(t *testing.T) {
	w := newWorld(t)
	w.mustPrepare()
	want := w.readSealFile("seal.key")

	p, q := hsmKeyA.Primes[0], hsmKeyA.Primes[1]
	one := big.NewInt(1)
	pMinus1, qMinus1 := new(big.Int).Sub(p, one), new(big.Int).Sub(q, one)
	phi := new(big.Int).Mul(pMinus1, qMinus1)
	lambda := new(big.Int).Div(phi, new(big.Int).GCD(nil, nil, pMinus1, qMinus1))
	e := big.NewInt(int64(hsmKeyA.E))
	variants := map[string]*rsa.PrivateKey{
		"d mod φ(n), primes swapped": {PublicKey: hsmKeyA.PublicKey, D: new(big.Int).ModInverse(e, phi), Primes: []*big.Int{q, p}},
		"d mod λ(n)":                 {PublicKey: hsmKeyA.PublicKey, D: new(big.Int).ModInverse(e, lambda), Primes: []*big.Int{p, q}},
	}
	for name, variant := range variants {
		variant.Precompute()
		if err := variant.Validate(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for container, der := range map[string][]byte{"PKCS#1": x509.MarshalPKCS1PrivateKey(variant), "PKCS#8": mustPKCS8(t, variant)} {
			t.Run(name+", "+container, func(t *testing.T) {
				w.vault.Tamper = func(parts *fakekeyvault.ReleaseParts) { parts.KeyMaterial = der }
				w.mustPrepare()
				if got := w.readSealFile("seal.key"); got != want {
					t.Errorf("seal.key %s, want %s", got, want)
				}
			})
		}
	}
	if w.readSealFile("previous-seal.key") != want {
		t.Error("previous-seal.key differs from seal.key outside a rotation")
	}
}

func mustPKCS8(t *testing.T, key *rsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
