package keyrelease

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Key Vault's release operation (POST {vault}/keys/{name}/{version}/release), in the REST API since 7.3; 2025-07-01
// is the current documented version, with the same request body: target (the attestation token), nonce, enc.
const KeyVaultAPIVersion = "2025-07-01"

// exportAlgorithms are the enc values this enclave can unwrap: RSA-OAEP with this hash wraps a transient AES-256 key,
// which wraps the key material with RFC 5649. CKM_RSA_AES_KEY_WRAP (OAEP with SHA-1) is not requested.
var exportAlgorithms = map[string]crypto.Hash{
	"RSA_AES_KEY_WRAP_256": crypto.SHA256,
	"RSA_AES_KEY_WRAP_384": crypto.SHA384,
}

// releaseEncryption is the enc this enclave requests.
const releaseEncryption = "RSA_AES_KEY_WRAP_256"

// transientKeyBytes: the transient key is AES-256.
const transientKeyBytes = 32

// releaseKey asks Key Vault to release one key version to the attested wrapping key and unwraps it.
func (r *Releaser) releaseKey(ctx context.Context, accessToken, target string, keyID KeyID, wrappingKey *rsa.PrivateKey) (*rsa.PrivateKey, error) {
	var released *rsa.PrivateKey
	err := r.retry.do(ctx, "releasing "+keyID.String(), func(ctx context.Context) error {
		nonce := make([]byte, 16)
		if _, err := rand.Read(nonce); err != nil {
			return err
		}
		body, err := json.Marshal(map[string]string{
			"target": target,
			"enc":    releaseEncryption,
			"nonce":  base64.RawURLEncoding.EncodeToString(nonce),
		})
		if err != nil {
			return permanent(err)
		}
		endpoint := keyID.String() + "/release?api-version=" + url.QueryEscape(KeyVaultAPIVersion)
		request, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
		if err != nil {
			return permanent(err)
		}
		request.Header.Set("Authorization", "Bearer "+accessToken)
		request.Header.Set("Content-Type", "application/json")
		request.Header.Set("Accept", "application/json")
		response, err := r.client.Do(request)
		if err != nil {
			return err
		}
		answer, err := readResponse(response, "Key Vault ("+keyID.Vault+")", describeKeyVaultError)
		if err != nil {
			return err
		}
		released, err = r.openRelease(answer, keyID, wrappingKey)
		if err != nil {
			return permanent(err)
		}
		return nil
	})
	return released, err
}

// describeKeyVaultError reads Key Vault's error object and says what a refusal usually means.
func describeKeyVaultError(serviceError *ServiceError, body []byte) {
	var answer struct {
		Error struct {
			Code       string `json:"code"`
			Message    string `json:"message"`
			InnerError *struct {
				Code string `json:"code"`
			} `json:"innererror"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &answer) == nil {
		serviceError.Code, serviceError.Message = answer.Error.Code, shorten(answer.Error.Message)
		if answer.Error.InnerError != nil && answer.Error.InnerError.Code != "" {
			serviceError.Code += "/" + answer.Error.InnerError.Code
		}
	}
	switch serviceError.Status {
	case http.StatusUnauthorized:
		serviceError.Hint = "Key Vault did not accept the Entra token"
	case http.StatusForbidden:
		serviceError.Hint = "the release was refused: the identity needs the role Key Vault Crypto Service Release " +
			"User on this key, and this enclave's attestation must satisfy the key's release policy"
	}
}

// releaseResult is the payload of Key Vault's signed release answer: the released key as a JSON Web Key whose
// key_hsm holds the wrapped private key.
type releaseResult struct {
	Response struct {
		Key struct {
			Key struct {
				KeyID  string `json:"kid"`
				Type   string `json:"kty"`
				N      string `json:"n"`
				E      string `json:"e"`
				KeyHSM string `json:"key_hsm"`
			} `json:"key"`
		} `json:"key"`
	} `json:"response"`
}

// openRelease checks Key Vault's answer {"value":"<JWS>"} and returns the released private key.
func (r *Releaser) openRelease(answer []byte, keyID KeyID, wrappingKey *rsa.PrivateKey) (*rsa.PrivateKey, error) {
	var envelope struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(answer, &envelope); err != nil || envelope.Value == "" {
		return nil, errors.New("Key Vault's answer is not {\"value\": \"<signed release>\"}")
	}
	vault, err := url.Parse(keyID.Vault)
	if err != nil {
		return nil, err
	}
	payload, err := verifyJWS(envelope.Value, vault.Hostname(), r.roots, r.now())
	if err != nil {
		return nil, fmt.Errorf("Key Vault's signed release: %w", err)
	}
	var result releaseResult
	if err := json.Unmarshal(payload, &result); err != nil {
		return nil, fmt.Errorf("Key Vault's signed release is not the expected JSON: %w", err)
	}
	key := result.Response.Key.Key
	if !strings.EqualFold(key.KeyID, keyID.String()) {
		return nil, fmt.Errorf("Key Vault released %q, not the requested %s", key.KeyID, keyID)
	}
	if key.Type != "RSA-HSM" && key.Type != "RSA" {
		return nil, fmt.Errorf("the released key is of type %q: attested unseal needs an RSA-HSM key", key.Type)
	}
	ciphertext, err := keyHSMCiphertext(key.KeyHSM)
	if err != nil {
		return nil, err
	}
	der, err := unwrapReleasedKey(ciphertext, wrappingKey, exportAlgorithms[releaseEncryption])
	if err != nil {
		return nil, err
	}
	defer clear(der)
	released, err := parseReleasedKey(der)
	if err != nil {
		return nil, err
	}
	if err := publicKeyMatches(key.N, key.E, &released.PublicKey); err != nil {
		return nil, err
	}
	return released, nil
}

// keyHSMCiphertext decodes key_hsm: base64url of {"ciphertext": "<base64url>", …}.
func keyHSMCiphertext(keyHSM string) ([]byte, error) {
	if keyHSM == "" {
		return nil, errors.New("the released key has no key_hsm")
	}
	decoded, err := decodeBase64URL(keyHSM)
	if err != nil {
		return nil, fmt.Errorf("the released key's key_hsm is not base64url: %w", err)
	}
	var blob struct {
		Ciphertext string `json:"ciphertext"`
	}
	if err := json.Unmarshal(decoded, &blob); err != nil || blob.Ciphertext == "" {
		return nil, errors.New("the released key's key_hsm is not {\"ciphertext\": …}")
	}
	ciphertext, err := decodeBase64URL(blob.Ciphertext)
	if err != nil {
		return nil, fmt.Errorf("the released key's ciphertext is not base64url: %w", err)
	}
	return ciphertext, nil
}

// unwrapReleasedKey undoes RSA_AES_KEY_WRAP_*: the first modulus-size bytes are the transient AES key under
// RSA-OAEP (no label), the rest the key material under RFC 5649 with that key.
func unwrapReleasedKey(ciphertext []byte, wrappingKey *rsa.PrivateKey, hash crypto.Hash) ([]byte, error) {
	size := wrappingKey.Size()
	if len(ciphertext) <= size {
		return nil, fmt.Errorf("the released ciphertext has %d bytes, fewer than the wrapping key's %d plus a wrapped key", len(ciphertext), size)
	}
	transientKey, err := rsa.DecryptOAEP(hash.New(), nil, wrappingKey, ciphertext[:size], nil)
	if err != nil {
		return nil, errors.New("the released ciphertext does not decrypt with this enclave's wrapping key (RSA-OAEP)")
	}
	defer clear(transientKey)
	if len(transientKey) != transientKeyBytes {
		return nil, fmt.Errorf("the transient key has %d bytes, want %d (AES-256)", len(transientKey), transientKeyBytes)
	}
	material, err := UnwrapPad(transientKey, ciphertext[size:])
	if err != nil {
		return nil, fmt.Errorf("the released key material: %w", err)
	}
	return material, nil
}

// parseReleasedKey reads the released private key: PKCS#8 (what Microsoft's sample parses) or PKCS#1 DER.
func parseReleasedKey(der []byte) (*rsa.PrivateKey, error) {
	if parsed, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		key, ok := parsed.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("the released private key is a %T, want RSA", parsed)
		}
		return key, nil
	}
	key, err := x509.ParsePKCS1PrivateKey(der)
	if err != nil {
		return nil, errors.New("the released key material is neither a PKCS#8 nor a PKCS#1 RSA private key")
	}
	return key, nil
}

// jwsAlgorithms are the JWS signature algorithms accepted for Key Vault's release, as x509 algorithms.
var jwsAlgorithms = map[string]x509.SignatureAlgorithm{
	"RS256": x509.SHA256WithRSA, "RS384": x509.SHA384WithRSA, "RS512": x509.SHA512WithRSA,
	"PS256": x509.SHA256WithRSAPSS, "PS384": x509.SHA384WithRSAPSS, "PS512": x509.SHA512WithRSAPSS,
	"ES256": x509.ECDSAWithSHA256, "ES384": x509.ECDSAWithSHA384, "ES512": x509.ECDSAWithSHA512,
}

// verifyJWS checks a compact JWS signed with the key of the first x5c certificate, whose chain must lead to roots
// and name host (the vault): the same trust the TLS connection to the vault rests on, checked over the content
// itself. It returns the payload.
func verifyJWS(jws, host string, roots *x509.CertPool, now time.Time) ([]byte, error) {
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a compact JWS (three dot-separated parts)")
	}
	headerJSON, err := decodeBase64URL(parts[0])
	if err != nil {
		return nil, fmt.Errorf("header is not base64url: %w", err)
	}
	var header struct {
		Algorithm string          `json:"alg"`
		X5C       []string        `json:"x5c"`
		Critical  json.RawMessage `json:"crit"`
	}
	if err := json.Unmarshal(headerJSON, &header); err != nil {
		return nil, fmt.Errorf("header is not JSON: %w", err)
	}
	algorithm, ok := jwsAlgorithms[header.Algorithm]
	if !ok {
		return nil, fmt.Errorf("signature algorithm %q is not accepted", header.Algorithm)
	}
	if header.Critical != nil {
		return nil, errors.New("header has critical extensions (crit), which this verifier does not know")
	}
	if len(header.X5C) == 0 {
		return nil, errors.New("header has no certificate chain (x5c)")
	}
	var chain []*x509.Certificate
	for i, encoded := range header.X5C {
		der, err := base64.StdEncoding.DecodeString(encoded)
		if err != nil {
			return nil, fmt.Errorf("x5c[%d] is not base64: %w", i, err)
		}
		certificate, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("x5c[%d]: %w", i, err)
		}
		chain = append(chain, certificate)
	}
	intermediates := x509.NewCertPool()
	for _, certificate := range chain[1:] {
		intermediates.AddCert(certificate)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{
		DNSName:       host,
		Roots:         roots,
		Intermediates: intermediates,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, fmt.Errorf("the signing certificate: %w", err)
	}
	signature, err := decodeBase64URL(parts[2])
	if err != nil {
		return nil, fmt.Errorf("signature is not base64url: %w", err)
	}
	if publicKey, isECDSA := chain[0].PublicKey.(*ecdsa.PublicKey); isECDSA && strings.HasPrefix(header.Algorithm, "ES") {
		if signature, err = ecdsaSignatureDER(signature, publicKey); err != nil {
			return nil, err
		}
	}
	if err := chain[0].CheckSignature(algorithm, []byte(parts[0]+"."+parts[1]), signature); err != nil {
		return nil, fmt.Errorf("the signature does not verify: %w", err)
	}
	payload, err := decodeBase64URL(parts[1])
	if err != nil {
		return nil, fmt.Errorf("payload is not base64url: %w", err)
	}
	return payload, nil
}

// ecdsaSignatureDER turns a JWS ECDSA signature (r and s, fixed length, concatenated) into ASN.1 DER.
func ecdsaSignatureDER(raw []byte, key *ecdsa.PublicKey) ([]byte, error) {
	size := (key.Curve.Params().BitSize + 7) / 8
	if len(raw) != 2*size {
		return nil, fmt.Errorf("an ECDSA signature of %d bytes, want %d", len(raw), 2*size)
	}
	return asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(raw[:size]), new(big.Int).SetBytes(raw[size:])})
}

// decodeBase64URL accepts base64url with or without padding.
func decodeBase64URL(text string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(text, "="))
}
