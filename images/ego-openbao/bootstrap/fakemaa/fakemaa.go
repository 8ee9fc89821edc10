// Package fakemaa stands in for EGo and Microsoft Azure Attestation in tests: its tokens have the shape MAA gives
// SGX enclaves (RS256, kid, iss = provider URL, x-ms-sgx-* claims), signed with a key the test holds. It plays EGo's
// CreateAzureAttestationToken (runtime data of type Binary: x-ms-sgx-ehd = base64url(data)) and, as an HTTP
// handler, MAA's Attest OpenEnclave operation for reports from GetRemoteReport (runtime data of type JSON: the
// parsed data as x-ms-runtime; Binary as EGo sends it). Never part of the enclave binary.
package fakemaa

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"sync"
	"time"
)

// TokenLifetime is the lifetime of MAA's SGX tokens in Microsoft's published example (exp - iat = 28800 s).
const TokenLifetime = 8 * time.Hour

// APIVersion is the Attest OpenEnclave API version the handler serves (the current one in Microsoft's REST reference).
const APIVersion = "2022-08-01"

// reportMagic starts every report GetRemoteReport makes; the 64 bytes of report data follow it.
const reportMagic = "fakemaa remote report\x00"

// Request is one attestation the provider answered or refused.
type Request struct {
	// DataType is the runtime data's type: "Binary" (EGo's CreateAzureAttestationToken) or what the HTTP request said.
	DataType string
	Data     []byte
}

// Provider implements bootstrap.Enclave, keyrelease.Attester (GetRemoteReport) and, as an http.Handler, MAA's
// POST /attest/OpenEnclave.
type Provider struct {
	Key   *rsa.PrivateKey
	KeyID string
	// Claims are added to every token last, so they can also replace the standard ones (to build bad tokens).
	Claims   map[string]any
	Lifetime time.Duration
	Now      func() time.Time

	mu       sync.Mutex
	err      error
	requests []Request
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

// CreateAzureAttestationToken returns a token for data, as if the quote had been verified at maaURL: what EGo's
// function of that name gets from MAA (runtime data of type Binary).
func (p *Provider) CreateAzureAttestationToken(data []byte, maaURL string) (string, error) {
	if err := p.record("Binary", data); err != nil {
		return "", err
	}
	return p.token(maaURL, map[string]any{"x-ms-sgx-ehd": base64.RawURLEncoding.EncodeToString(data)})
}

// GetRemoteReport returns a stand-in for an SGX report carrying reportData (at most 64 bytes, zero-padded as EGo's).
func (p *Provider) GetRemoteReport(reportData []byte) ([]byte, error) {
	if len(reportData) > 64 {
		return nil, errors.New("report data larger than 64 bytes")
	}
	report := append([]byte(reportMagic), reportData...)
	return append(report, make([]byte, 64-len(reportData))...), nil
}

// ServeHTTP is MAA's Attest OpenEnclave: it checks that the report's first 32 bytes of report data are SHA-256 of
// the decoded runtime data, as MAA does, and answers {"token": JWT}. JSON runtime data becomes the claim
// x-ms-runtime (the parsed object, where Key Vault looks for the release target's keys) and no x-ms-sgx-ehd (the
// SDKs document EnclaveHeldData for Binary runtime data only); Binary data becomes x-ms-sgx-ehd.
func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/attest/OpenEnclave" {
		maaError(w, http.StatusNotFound, "NotFound", "no such operation")
		return
	}
	if version := r.URL.Query().Get("api-version"); version != APIVersion {
		maaError(w, http.StatusBadRequest, "InvalidParameter", fmt.Sprintf("api-version %q is not served here", version))
		return
	}
	var request struct {
		Report      string `json:"report"`
		RuntimeData struct {
			Data     string `json:"data"`
			DataType string `json:"dataType"`
		} `json:"runtimeData"`
	}
	if err := json.NewDecoder(r.Body).Decode(&request); err != nil {
		maaError(w, http.StatusBadRequest, "InvalidParameter", "the request is not JSON")
		return
	}
	report, errReport := base64.RawURLEncoding.DecodeString(request.Report)
	data, errData := base64.RawURLEncoding.DecodeString(request.RuntimeData.Data)
	if errReport != nil || errData != nil {
		maaError(w, http.StatusBadRequest, "InvalidParameter", "report and runtimeData.data must be base64url")
		return
	}
	if len(report) != len(reportMagic)+64 || !bytes.HasPrefix(report, []byte(reportMagic)) {
		maaError(w, http.StatusBadRequest, "InvalidParameter", "the report is not an SGX report")
		return
	}
	digest := sha256.Sum256(data)
	if !bytes.Equal(report[len(reportMagic):len(reportMagic)+32], digest[:]) {
		maaError(w, http.StatusBadRequest, "InvalidParameter", "the report data is not SHA-256 of the runtime data")
		return
	}
	claims := map[string]any{}
	switch request.RuntimeData.DataType {
	case "JSON":
		var runtime any
		if err := json.Unmarshal(data, &runtime); err != nil {
			maaError(w, http.StatusBadRequest, "InvalidParameter", "runtime data of type JSON is not JSON")
			return
		}
		claims["x-ms-runtime"] = runtime
	case "Binary":
		claims["x-ms-sgx-ehd"] = request.RuntimeData.Data
	default:
		maaError(w, http.StatusBadRequest, "InvalidParameter", fmt.Sprintf("dataType %q is neither Binary nor JSON", request.RuntimeData.DataType))
		return
	}
	if err := p.record(request.RuntimeData.DataType, data); err != nil {
		maaError(w, http.StatusServiceUnavailable, "ServiceUnavailable", err.Error())
		return
	}
	token, err := p.token("https://"+r.Host, claims)
	if err != nil {
		maaError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{"token": token})
}

func maaError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": message}})
}

// record notes a request and returns the failure set by Fail.
func (p *Provider) record(dataType string, data []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests = append(p.requests, Request{DataType: dataType, Data: append([]byte(nil), data...)})
	return p.err
}

// token signs the standard claims, then runtime (the runtime data's claims), then p.Claims.
func (p *Provider) token(issuer string, runtime map[string]any) (string, error) {
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
		"iss":      issuer,
		"iat":      issued,
		"nbf":      issued,
		"exp":      issued + int64(lifetime/time.Second),
		"x-ms-ver": "1.0",
	}
	maps.Copy(claims, runtime)
	maps.Copy(claims, p.Claims)
	return Sign(p.Key, p.KeyID, issuer+"/certs", claims)
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
	data := make([][]byte, 0, len(p.requests))
	for _, request := range p.requests {
		data = append(data, request.Data)
	}
	return data
}

// Requests returns every request so far, in order.
func (p *Provider) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.requests...)
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
