// Package fakemaa stands in for EGo and Microsoft Azure Attestation in tests: its tokens have the shape MAA gives
// SGX enclaves attested through EGo (RS256, kid, iss = provider URL, x-ms-sgx-* claims, x-ms-sgx-ehd =
// base64url(data)), signed with a key the test holds. Never part of the enclave binary.
package fakemaa

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"sync"
	"time"
)

// TokenLifetime is the lifetime of MAA's SGX tokens in Microsoft's published example (exp - iat = 28800 s).
const TokenLifetime = 8 * time.Hour

// Provider implements bootstrap.Enclave.
type Provider struct {
	Key   *rsa.PrivateKey
	KeyID string
	// Claims are added to every token last, so they can also replace the standard ones (to build bad tokens).
	Claims   map[string]any
	Lifetime time.Duration
	Now      func() time.Time

	mu   sync.Mutex
	err  error
	data [][]byte
}

// SGXClaims are the enclave's measurements as MAA writes them.
func SGXClaims(signerID, uniqueID string, productID, svn int, debuggable bool) map[string]any {
	return map[string]any{
		"x-ms-attestation-type":  "sgx",
		"x-ms-sgx-mrsigner":      signerID,
		"x-ms-sgx-mrenclave":     uniqueID,
		"x-ms-sgx-product-id":    productID,
		"x-ms-sgx-svn":           svn,
		"x-ms-sgx-is-debuggable": debuggable,
	}
}

// CreateAzureAttestationToken returns a token for data, as if the quote had been verified at maaURL.
func (p *Provider) CreateAzureAttestationToken(data []byte, maaURL string) (string, error) {
	p.mu.Lock()
	p.data = append(p.data, append([]byte(nil), data...))
	err := p.err
	p.mu.Unlock()
	if err != nil {
		return "", err
	}
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	lifetime := p.Lifetime
	if lifetime == 0 {
		lifetime = TokenLifetime
	}
	issued := now().Unix()
	claims := map[string]any{
		"iss":          maaURL,
		"iat":          issued,
		"nbf":          issued,
		"exp":          issued + int64(lifetime/time.Second),
		"x-ms-ver":     "1.0",
		"x-ms-sgx-ehd": base64.RawURLEncoding.EncodeToString(data),
	}
	maps.Copy(claims, p.Claims)
	return Sign(p.Key, p.KeyID, maaURL+"/certs", claims)
}

// Fail makes the following requests fail with err (the quote or the provider failed); nil makes them succeed.
func (p *Provider) Fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = err
}

// BoundData returns the data of every request so far, in order.
func (p *Provider) BoundData() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]byte(nil), p.data...)
}

// Sign returns an RS256 JWT (compact serialisation) with MAA's header fields.
func Sign(key *rsa.PrivateKey, keyID, jku string, claims map[string]any) (string, error) {
	header, err := json.Marshal(map[string]string{"alg": "RS256", "jku": jku, "kid": keyID, "typ": "JWT"})
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encoding the claims: %w", err)
	}
	signingInput := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(payload)
	digest := sha256.Sum256([]byte(signingInput))
	signature, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	if err != nil {
		return "", fmt.Errorf("signing: %w", err)
	}
	return signingInput + "." + base64.RawURLEncoding.EncodeToString(signature), nil
}
