package bootstrap

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// tokenFacts are what the enclave reads from its own token, without verifying it (the enclave has no reason to
// distrust the provider and no trust anchor for it; clients verify): the bound data, to catch a provider or adapter
// that bound something else, and the validity, to schedule the refresh.
type tokenFacts struct {
	issuedAt  time.Time
	expiresAt time.Time
}

func readOwnToken(token string, wantEnclaveHeldData []byte) (tokenFacts, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return tokenFacts{}, errors.New("the attestation token is not a JWT (three dot-separated parts)")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return tokenFacts{}, fmt.Errorf("the attestation token's payload is not base64url: %w", err)
	}
	var claims struct {
		EnclaveHeldData *string `json:"x-ms-sgx-ehd"`
		IssuedAt        *int64  `json:"iat"`
		ExpiresAt       *int64  `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return tokenFacts{}, fmt.Errorf("the attestation token's payload is not the expected JSON: %w", err)
	}
	if claims.EnclaveHeldData == nil || claims.IssuedAt == nil || claims.ExpiresAt == nil {
		return tokenFacts{}, errors.New("the attestation token lacks x-ms-sgx-ehd, iat or exp")
	}
	held, err := base64.RawURLEncoding.DecodeString(*claims.EnclaveHeldData)
	if err != nil {
		return tokenFacts{}, fmt.Errorf("the token's x-ms-sgx-ehd is not base64url: %w", err)
	}
	if !bytes.Equal(held, wantEnclaveHeldData) {
		return tokenFacts{}, errors.New("the token's x-ms-sgx-ehd is not the data this enclave bound")
	}
	facts := tokenFacts{issuedAt: time.Unix(*claims.IssuedAt, 0), expiresAt: time.Unix(*claims.ExpiresAt, 0)}
	if !facts.expiresAt.After(facts.issuedAt) {
		return tokenFacts{}, errors.New("the attestation token expires before it is issued")
	}
	return facts, nil
}
