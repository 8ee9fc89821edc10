// Package fakekeyvault stands in for Entra ID's token endpoint and Azure Key Vault's release operation in tests: one
// TLS server on 127.0.0.1 whose certificate, and the certificate that signs its release answers, come from a CA the
// test trusts. Releases have the shape Key Vault documents and Microsoft's sample client reads: {"value":
// JWS}, payload response.key.key with kid, kty, n, e and key_hsm = base64url({"ciphertext": RSA-OAEP(transient AES
// key) || RFC 5649 wrap of the PKCS#8 private key}). The key it wraps to is the first encryption key of the JSON Web
// Key Set in the target token's x-ms-runtime claim (keys), where Key Vault documents it: MAA fills x-ms-runtime
// only from runtime data of type JSON, so a token over Binary data (x-ms-sgx-ehd alone) is refused. Never part of
// the enclave binary.
//
// What is not documented and therefore assumed here: the status and message of a release whose attestation does not
// satisfy the key's policy (403, as for a missing role), and the JWS signing certificate naming the vault's host.
package fakekeyvault

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Endpoint names the two services the fake plays.
type Endpoint string

const (
	Token   Endpoint = "token"
	Release Endpoint = "release"
)

// Answer is a canned HTTP answer (Inject), instead of the service's normal behaviour.
type Answer struct {
	Status int
	Header http.Header
	Body   string
	// Hang closes the connection without an answer (a network error for the client).
	Hang bool
}

// Request is what the fake received.
type Request struct {
	Endpoint      Endpoint
	Path          string
	Query         url.Values
	Authorization string
	Form          url.Values        // token requests
	Body          map[string]string // release requests
	// TargetKeyID is the kid of the key a release wrapped to (from the target's x-ms-runtime.keys).
	TargetKeyID string
}

// ReleaseParts are the pieces of one release answer; Tamper may change any of them before the answer is built.
type ReleaseParts struct {
	KeyID, KeyType, N, E string
	// KeyMaterial is what gets wrapped: the PKCS#8 DER of the released key.
	KeyMaterial []byte
	// TransientKey is the AES key that wraps KeyMaterial (RFC 5649); OAEPHash wraps it to the target's key.
	TransientKey []byte
	OAEPHash     crypto.Hash
	// KeyHSM replaces the built key_hsm when not empty; OmitKeyHSM leaves key_hsm out.
	KeyHSM     string
	OmitKeyHSM bool
	// Algorithm, Signer and Chain sign the JWS (x5c = Chain).
	Algorithm        string
	Signer           crypto.Signer
	Chain            [][]byte
	CorruptSignature bool
}

// Service is the fake. Fields set by New are read-only; Policy, MAAKey and Tamper may be set before requests.
type Service struct {
	URL                                  string
	Roots                                *x509.CertPool
	TenantID, ClientID                   string
	FederatedToken, AccessToken, KeyName string

	// MAAKey, when set, must verify the release target's RS256 signature (the provider's signing key).
	MAAKey *rsa.PublicKey
	// Policy decides a release from the target's claims; an error refuses it (403). Nil accepts every target.
	Policy func(claims map[string]any) error
	// Tamper changes a release answer's pieces before it is built.
	Tamper func(*ReleaseParts)

	server   *httptest.Server
	ca       *x509.Certificate
	caKey    crypto.Signer
	leafKey  crypto.Signer
	leafDER  []byte
	mu       sync.Mutex
	keys     map[string]*rsa.PrivateKey
	injected map[Endpoint][]Answer
	requests []Request
}

// New starts the fake; Close stops it.
func New() (*Service, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTemplate := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "fake Key Vault test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, caKey.Public(), caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	leafKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	leafDER, err := IssueCertificate(ca, caKey, leafKey.Public(), "127.0.0.1")
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	s := &Service{
		Roots:          roots,
		TenantID:       "72f988bf-86f1-41af-91ab-2d7cd011db47",
		ClientID:       "3f9ab4a1-5c3e-4d7b-9a63-1c2b8e0d4f57",
		FederatedToken: "eyJhbGciOiJSUzI1NiJ9.projected-service-account-token.signature",
		AccessToken:    "entra-access-token-for-key-vault",
		KeyName:        "openbao-seal",
		ca:             ca,
		caKey:          caKey,
		leafKey:        leafKey,
		leafDER:        leafDER,
		keys:           map[string]*rsa.PrivateKey{},
		injected:       map[Endpoint][]Answer{},
	}
	s.server = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.server.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}}}
	s.server.StartTLS()
	s.URL = s.server.URL
	return s, nil
}

// Close stops the server.
func (s *Service) Close() { s.server.Close() }

// IssueCertificate issues a certificate for host (an IP address or a DNS name) under the fake's CA.
func (s *Service) IssueCertificate(publicKey crypto.PublicKey, host string) ([]byte, error) {
	return IssueCertificate(s.ca, s.caKey, publicKey, host)
}

// IssueCertificate issues a one-day leaf certificate for host under ca.
func IssueCertificate(ca *x509.Certificate, caKey crypto.Signer, publicKey crypto.PublicKey, host string) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, err
	}
	template := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip := net.ParseIP(host); ip != nil {
		template.IPAddresses = []net.IP{ip}
	} else {
		template.DNSNames = []string{host}
	}
	return x509.CreateCertificate(rand.Reader, template, ca, publicKey, caKey)
}

// AddKey makes key releasable as version, and returns its key id.
func (s *Service) AddKey(version string, key *rsa.PrivateKey) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[version] = key
	return s.KeyID(version)
}

// KeyID is the key id of a version, as Key Vault writes it.
func (s *Service) KeyID(version string) string {
	return s.URL + "/keys/" + s.KeyName + "/" + version
}

// Inject queues canned answers for the next requests to endpoint.
func (s *Service) Inject(endpoint Endpoint, answers ...Answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.injected[endpoint] = append(s.injected[endpoint], answers...)
}

// Requests returns the requests so far.
func (s *Service) Requests(endpoint Endpoint) []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	var matching []Request
	for _, request := range s.requests {
		if request.Endpoint == endpoint {
			matching = append(matching, request)
		}
	}
	return matching
}

func (s *Service) serve(w http.ResponseWriter, r *http.Request) {
	endpoint := Release
	if strings.HasSuffix(r.URL.Path, "/oauth2/v2.0/token") {
		endpoint = Token
	}
	recorded := Request{Endpoint: endpoint, Path: r.URL.Path, Query: r.URL.Query(), Authorization: r.Header.Get("Authorization")}
	var parseErr error
	if endpoint == Token {
		parseErr = r.ParseForm()
		recorded.Form = r.PostForm
	} else {
		parseErr = json.NewDecoder(r.Body).Decode(&recorded.Body)
	}
	s.mu.Lock()
	index := len(s.requests)
	s.requests = append(s.requests, recorded)
	var canned *Answer
	if queue := s.injected[endpoint]; len(queue) > 0 {
		canned, s.injected[endpoint] = &queue[0], queue[1:]
	}
	s.mu.Unlock()

	if canned != nil {
		if canned.Hang {
			if hijacker, ok := w.(http.Hijacker); ok {
				if connection, _, err := hijacker.Hijack(); err == nil {
					connection.Close()
					return
				}
			}
			panic(http.ErrAbortHandler)
		}
		for name, values := range canned.Header {
			w.Header()[name] = values
		}
		w.WriteHeader(canned.Status)
		fmt.Fprint(w, canned.Body)
		return
	}
	if parseErr != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_request", "error_description": parseErr.Error()})
		return
	}
	if endpoint == Token {
		s.serveToken(w, r, recorded)
	} else {
		s.serveRelease(w, r, recorded, index)
	}
}

func (s *Service) serveToken(w http.ResponseWriter, r *http.Request, request Request) {
	form := request.Form
	switch {
	case r.Method != http.MethodPost || r.URL.Path != "/"+s.TenantID+"/oauth2/v2.0/token":
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "invalid_tenant", "error_description": "AADSTS90002: Tenant not found."})
	case form.Get("grant_type") != "client_credentials" ||
		form.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" ||
		form.Get("scope") != "https://vault.azure.net/.default":
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_request", "error_description": "AADSTS900144: malformed request."})
	case form.Get("client_id") != s.ClientID || form.Get("client_assertion") != s.FederatedToken:
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "invalid_client",
			"error_description": "AADSTS700213: No matching federated identity record found for presented assertion."})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"token_type": "Bearer", "expires_in": 3599, "access_token": s.AccessToken})
	}
}

func keyVaultError(w http.ResponseWriter, status int, code, inner, message string) {
	body := map[string]any{"code": code, "message": message}
	if inner != "" {
		body["innererror"] = map[string]string{"code": inner}
	}
	writeJSON(w, status, map[string]any{"error": body})
}

func (s *Service) serveRelease(w http.ResponseWriter, r *http.Request, request Request, index int) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if r.Method != http.MethodPost || len(parts) != 4 || parts[0] != "keys" || parts[1] != s.KeyName || parts[3] != "release" {
		keyVaultError(w, http.StatusNotFound, "NotFound", "", "no such operation")
		return
	}
	if request.Authorization != "Bearer "+s.AccessToken {
		keyVaultError(w, http.StatusUnauthorized, "Unauthorized", "", "AKV10000: Request is missing a Bearer or PoP token.")
		return
	}
	if request.Query.Get("api-version") == "" {
		keyVaultError(w, http.StatusBadRequest, "BadParameter", "", "api-version is required")
		return
	}
	s.mu.Lock()
	key := s.keys[parts[2]]
	s.mu.Unlock()
	if key == nil {
		keyVaultError(w, http.StatusNotFound, "KeyNotFound", "", "A key with (name/id) "+parts[1]+"/"+parts[2]+" was not found in this key vault.")
		return
	}
	oaepHash := map[string]crypto.Hash{"RSA_AES_KEY_WRAP_256": crypto.SHA256, "RSA_AES_KEY_WRAP_384": crypto.SHA384}[request.Body["enc"]]
	if oaepHash == 0 {
		keyVaultError(w, http.StatusBadRequest, "BadParameter", "", "unsupported enc")
		return
	}
	claims, wrappingKey, keyID, err := s.readTarget(request.Body["target"])
	if err != nil {
		keyVaultError(w, http.StatusBadRequest, "BadParameter", "", "Target environment attestation statement: "+err.Error())
		return
	}
	s.mu.Lock()
	s.requests[index].TargetKeyID = keyID
	s.mu.Unlock()
	if s.Policy != nil {
		if err := s.Policy(claims); err != nil {
			keyVaultError(w, http.StatusForbidden, "Forbidden", "AccessDenied",
				"Target environment attestation statement cannot be verified: "+err.Error())
			return
		}
	}
	value, err := s.buildRelease(key, s.KeyID(parts[2]), wrappingKey, oaepHash)
	if err != nil {
		keyVaultError(w, http.StatusInternalServerError, "InternalError", "", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"value": value})
}

// readTarget reads the attestation token: its claims, and the first encryption key (with its kid) of the JSON Web
// Key Set in x-ms-runtime.keys (the key Key Vault wraps the released key to).
func (s *Service) readTarget(token string) (map[string]any, *rsa.PublicKey, string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, nil, "", errors.New("not a JWT")
	}
	if s.MAAKey != nil {
		signature, err := base64.RawURLEncoding.DecodeString(parts[2])
		digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
		if err != nil || rsa.VerifyPKCS1v15(s.MAAKey, crypto.SHA256, digest[:], signature) != nil {
			return nil, nil, "", errors.New("signature does not verify")
		}
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, nil, "", err
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, nil, "", err
	}
	var target struct {
		Runtime *struct {
			Keys []struct {
				KeyID   string   `json:"kid"`
				KeyType string   `json:"kty"`
				Use     string   `json:"use"`
				KeyOps  []string `json:"key_ops"`
				N, E    string
			} `json:"keys"`
		} `json:"x-ms-runtime"`
	}
	if err := json.Unmarshal(payload, &target); err != nil {
		return nil, nil, "", errors.New("x-ms-runtime.keys is not a JSON Web Key Set")
	}
	if target.Runtime == nil {
		return nil, nil, "", errors.New("the token has no x-ms-runtime claim (runtime data of type JSON)")
	}
	for _, key := range target.Runtime.Keys {
		encrypts := key.Use == "enc"
		for _, operation := range key.KeyOps {
			encrypts = encrypts || operation == "encrypt"
		}
		if key.KeyType != "RSA" || !encrypts {
			continue
		}
		n, errN := base64.RawURLEncoding.DecodeString(key.N)
		e, errE := base64.RawURLEncoding.DecodeString(key.E)
		if errN != nil || errE != nil || len(e) > 4 {
			return nil, nil, "", errors.New("the key's n or e is not base64url")
		}
		exponent := int(binary.BigEndian.Uint32(append(make([]byte, 4-len(e)), e...)))
		return claims, &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exponent}, key.KeyID, nil
	}
	return nil, nil, "", errors.New("no RSA encryption key in x-ms-runtime.keys")
}

func (s *Service) buildRelease(key *rsa.PrivateKey, keyID string, wrappingKey *rsa.PublicKey, oaepHash crypto.Hash) (string, error) {
	material, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", err
	}
	transientKey := make([]byte, 32)
	if _, err := rand.Read(transientKey); err != nil {
		return "", err
	}
	parts := ReleaseParts{
		KeyID:        keyID,
		KeyType:      "RSA-HSM",
		N:            base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
		E:            base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
		KeyMaterial:  material,
		TransientKey: transientKey,
		OAEPHash:     oaepHash,
		Algorithm:    "RS256",
		Signer:       s.leafKey,
		Chain:        [][]byte{s.leafDER, s.ca.Raw},
	}
	if s.Tamper != nil {
		s.Tamper(&parts)
	}
	if parts.KeyHSM == "" {
		wrappedTransient, err := rsa.EncryptOAEP(parts.OAEPHash.New(), rand.Reader, wrappingKey, parts.TransientKey, nil)
		if err != nil {
			return "", err
		}
		wrappedMaterial, err := wrapPad(parts.TransientKey, parts.KeyMaterial)
		if err != nil {
			return "", err
		}
		blob, err := json.Marshal(map[string]any{
			"schema_version": "1.0",
			"header":         map[string]string{"kid": keyID, "alg": "dir", "enc": "CKM_RSA_AES_KEY_WRAP"},
			"ciphertext":     base64.RawURLEncoding.EncodeToString(append(wrappedTransient, wrappedMaterial...)),
			"generator":      "fakekeyvault",
		})
		if err != nil {
			return "", err
		}
		parts.KeyHSM = base64.RawURLEncoding.EncodeToString(blob)
	}
	now := time.Now().Unix()
	payload, err := json.Marshal(map[string]any{
		"request": map[string]any{"api-version": "2025-07-01", "enc": "RSA_AES_KEY_WRAP_256", "kid": keyID},
		"response": map[string]any{"key": map[string]any{
			"attributes": map[string]any{"created": now, "enabled": true, "exportable": true, "updated": now,
				"recoverableDays": 90, "recoveryLevel": "Recoverable"},
			"key":            releasedJWK(parts),
			"release_policy": map[string]any{"contentType": "application/json; charset=utf-8; version=1.0", "data": ""},
		}},
	})
	if err != nil {
		return "", err
	}
	return Sign(parts.Signer, parts.Algorithm, parts.Chain, payload, parts.CorruptSignature)
}

func releasedJWK(parts ReleaseParts) map[string]any {
	jwk := map[string]any{"kid": parts.KeyID, "kty": parts.KeyType, "key_ops": []string{"encrypt", "decrypt"},
		"n": parts.N, "e": parts.E, "key_hsm": parts.KeyHSM}
	if parts.OmitKeyHSM {
		delete(jwk, "key_hsm")
	}
	return jwk
}

// Sign returns a compact JWS (RS256 or ES256) with x5c = chain.
func Sign(signer crypto.Signer, algorithm string, chain [][]byte, payload []byte, corrupt bool) (string, error) {
	var x5c []string
	for _, der := range chain {
		x5c = append(x5c, base64.StdEncoding.EncodeToString(der))
	}
	header, err := json.Marshal(map[string]any{"alg": algorithm, "x5c": x5c})
	if err != nil {
		return "", err
	}
	input := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(payload)
	digest := sha256.Sum256([]byte(input))
	var signature []byte
	switch algorithm {
	case "RS256":
		signature, err = signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	case "ES256":
		var der []byte
		if der, err = signer.Sign(rand.Reader, digest[:], crypto.SHA256); err == nil {
			signature, err = rawECDSASignature(der)
		}
	default:
		err = fmt.Errorf("the fake signs RS256 and ES256, not %s", algorithm)
	}
	if err != nil {
		return "", err
	}
	if corrupt {
		signature[len(signature)/2] ^= 1
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(signature), nil
}

// rawECDSASignature turns an ASN.1 P-256 signature into JWS form (r || s, 32 bytes each).
func rawECDSASignature(der []byte) ([]byte, error) {
	var signature struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &signature); err != nil {
		return nil, err
	}
	raw := make([]byte, 64)
	signature.R.FillBytes(raw[:32])
	signature.S.FillBytes(raw[32:])
	return raw, nil
}

// wrapPad is RFC 5649 key wrap with padding, written independently of the enclave's implementation (which the
// tests check against the RFC's vectors) so that the fake does not test the code with itself.
func wrapPad(kek, plaintext []byte) ([]byte, error) {
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	aiv := []byte{0xa6, 0x59, 0x59, 0xa6, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(aiv[4:], uint32(len(plaintext)))
	padded := append(bytes.Clone(plaintext), make([]byte, (8-len(plaintext)%8)%8)...)
	if len(padded) == 8 {
		out := append(aiv, padded...)
		block.Encrypt(out, out)
		return out, nil
	}
	// RFC 3394 section 2.2.1, the index-based form, over the padded plaintext with the alternative initial value.
	n := len(padded) / 8
	a := aiv
	r := make([][]byte, n)
	for i := range r {
		r[i] = padded[8*i : 8*i+8]
	}
	b := make([]byte, 16)
	for j := 0; j <= 5; j++ {
		for i := 0; i < n; i++ {
			copy(b, a)
			copy(b[8:], r[i])
			block.Encrypt(b, b)
			t := uint64(n*j + i + 1)
			a = binary.BigEndian.AppendUint64(nil, binary.BigEndian.Uint64(b[:8])^t)
			r[i] = bytes.Clone(b[8:])
		}
	}
	return append(a, bytes.Join(r, nil)...), nil
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}
