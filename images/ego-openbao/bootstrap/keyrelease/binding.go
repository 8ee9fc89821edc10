package keyrelease

import (
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
)

// The enclave attests two documents, each as the runtime data of one MAA attestation:
//
//  1. For Key Vault, the wrapping key as a JSON Web Key Set, the form Key Vault documents for a release target, as
//     runtime data of type JSON (maa.go), so that the token carries it as x-ms-runtime, where Key Vault reads it:
//     {"keys":[{"kty":"RSA","kid":"<thumbprint>","key_ops":["encrypt"],"n":"…","e":"AQAB"}]}
//  2. For clients, the listener binding, version 3 (bootstrap.Binding; ../README.md), through EGo's
//     CreateAzureAttestationToken (type Binary: x-ms-sgx-ehd, which clients read). With attested unseal it names the
//     seal key (seal_key_id, previous_seal_key_id), the wrapping key's thumbprint (release_jwk_thumbprint, the kid
//     above) and the CA key derived from the released key (ca_spki_sha256).
//
// Two documents because the CA key is derived from the released key: it is known only after the release, so the
// release cannot attest it.

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
