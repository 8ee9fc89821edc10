package keyrelease

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"

	"confidential-vault.internal/bootstrap"
)

// The enclave attests two documents, each as the runtime data of one MAA attestation:
//
//  1. For Key Vault, the wrapping key as a JSON Web Key Set, the form Key Vault documents for a release target, as
//     runtime data of type JSON (maa.go), so that the token carries it as x-ms-runtime, where Key Vault reads it:
//     {"keys":[{"kty":"RSA","kid":"<thumbprint>","key_ops":["encrypt"],"n":"…","e":"AQAB"}]}
//  2. For clients, the listener binding, version 2 (bootstrap/README.md has version 1), through EGo's
//     CreateAzureAttestationToken (type Binary: x-ms-sgx-ehd, which clients read):
//     {"v":2,"purpose":"confidential-vault/openbao-listener","listener_spki_sha256":"<64 hex>",
//     "seal_key_id":"https://<vault>.vault.azure.net/keys/<name>/<version>","release_jwk_thumbprint":"<43 base64url>"}
//
// Two documents because the listener key is kept encrypted under a key derived from the released key: it is known
// only after the release, so the release cannot attest it.

// BindingVersionAttestedUnseal is the listener binding version of an enclave that unseals with a released key.
const BindingVersionAttestedUnseal = 2

// ListenerBinding is the listener binding, version 2. The field order is the canonical key order; encoding/json
// writes it compactly, and verifiers re-encode and compare byte for byte, as for version 1.
type ListenerBinding struct {
	Version            int    `json:"v"`
	Purpose            string `json:"purpose"`
	ListenerSPKISHA256 string `json:"listener_spki_sha256"`
	// SealKeyID is the Key Vault key (with version) whose release this enclave unseals with: clients compare it
	// with the stack's key, so a host that points the enclave at another vault is detected.
	SealKeyID string `json:"seal_key_id"`
	// ReleaseJWKThumbprint is the RFC 7638 SHA-256 thumbprint (base64url) of the wrapping key this enclave run had
	// the key released to: the kid in the JSON Web Key Set it attested for Key Vault.
	ReleaseJWKThumbprint string `json:"release_jwk_thumbprint"`
}

// ListenerBindingFor returns the canonical binding for a listener public key, the seal key and the wrapping key.
func ListenerBindingFor(listenerPublicKey *ecdsa.PublicKey, sealKey KeyID, wrappingKey *rsa.PublicKey) ([]byte, error) {
	digest, err := bootstrap.SPKISHA256(listenerPublicKey)
	if err != nil {
		return nil, err
	}
	return json.Marshal(ListenerBinding{
		Version:              BindingVersionAttestedUnseal,
		Purpose:              bootstrap.BindingPurpose,
		ListenerSPKISHA256:   digest,
		SealKeyID:            sealKey.String(),
		ReleaseJWKThumbprint: Thumbprint(wrappingKey),
	})
}

// rsaJWK is an RSA public key as a JSON Web Key (RFC 7517, 7518 section 6.3.1).
type rsaJWK struct {
	KeyType    string   `json:"kty"`
	KeyID      string   `json:"kid,omitempty"`
	Operations []string `json:"key_ops,omitempty"`
	N          string   `json:"n"`
	E          string   `json:"e"`
}

func jwkFor(key *rsa.PublicKey) rsaJWK {
	return rsaJWK{
		KeyType: "RSA",
		N:       base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
		E:       base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
	}
}

// Thumbprint is the RFC 7638 JWK thumbprint (SHA-256, base64url): the hash of the required members in
// lexicographic order, no white space.
func Thumbprint(key *rsa.PublicKey) string {
	jwk := jwkFor(key)
	canonical := `{"e":"` + jwk.E + `","kty":"RSA","n":"` + jwk.N + `"}`
	digest := sha256.Sum256([]byte(canonical))
	return base64.RawURLEncoding.EncodeToString(digest[:])
}

// ReleaseTargetData is the data attested for Key Vault: a JSON Web Key Set with the wrapping key, usable for
// encryption (key_ops), identified by its thumbprint. Key Vault wraps the released key to the first such key.
func ReleaseTargetData(wrappingKey *rsa.PublicKey) ([]byte, error) {
	jwk := jwkFor(wrappingKey)
	jwk.KeyID = Thumbprint(wrappingKey)
	jwk.Operations = []string{"encrypt"}
	return json.Marshal(struct {
		Keys []rsaJWK `json:"keys"`
	}{[]rsaJWK{jwk}})
}

// publicKeyMatches checks the released key's JWK members n and e, when Key Vault sends them, against the private
// key unwrapped for it (numerically: a leading zero octet must not matter).
func publicKeyMatches(n, e string, key *rsa.PublicKey) error {
	if n == "" && e == "" {
		return nil
	}
	modulus, errN := base64.RawURLEncoding.DecodeString(strings.TrimRight(n, "="))
	exponent, errE := base64.RawURLEncoding.DecodeString(strings.TrimRight(e, "="))
	if errN != nil || errE != nil {
		return errors.New("the released key's n or e is not base64url")
	}
	if new(big.Int).SetBytes(modulus).Cmp(key.N) != 0 || new(big.Int).SetBytes(exponent).Cmp(big.NewInt(int64(key.E))) != 0 {
		return errors.New("the unwrapped private key does not belong to the public key Key Vault describes")
	}
	return nil
}
