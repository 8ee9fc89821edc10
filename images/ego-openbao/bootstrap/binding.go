package bootstrap

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// The enclave-held data this bootstrap binds into its attestation: the bytes given to
// enclave.CreateAzureAttestationToken, which EGo hashes (SHA-256) into the SGX report data and MAA returns,
// base64url-encoded, as the token's x-ms-sgx-ehd claim.
//
// Version 1 is the compact JSON object
//
//	{"v":1,"purpose":"confidential-vault/openbao-listener","listener_spki_sha256":"<64 lower-case hex>"}
//
// with exactly these keys in this order, no white space: the SHA-256 of the listener key's DER
// SubjectPublicKeyInfo. Version 2 (attested unseal, keyrelease.ListenerBinding) adds the seal key's identifier and
// the release's wrapping key; verifiers accept only the versions they know, and version 1 only from stacks that
// unseal with Shamir shares. The purpose keeps these tokens apart from any other data the enclave attests.
const (
	BindingVersion = 1
	BindingPurpose = "confidential-vault/openbao-listener"
)

// Binding is the enclave-held data, version 1. The field order is the canonical key order.
type Binding struct {
	Version            int    `json:"v"`
	Purpose            string `json:"purpose"`
	ListenerSPKISHA256 string `json:"listener_spki_sha256"`
}

// BindingFor returns the canonical enclave-held data for a listener public key.
func BindingFor(publicKey any) ([]byte, error) {
	digest, err := SPKISHA256(publicKey)
	if err != nil {
		return nil, err
	}
	return json.Marshal(Binding{Version: BindingVersion, Purpose: BindingPurpose, ListenerSPKISHA256: digest})
}

// SPKISHA256 is the binding's listener_spki_sha256: SHA-256 of the DER SubjectPublicKeyInfo, lower-case hex.
func SPKISHA256(publicKey any) (string, error) {
	spki, err := x509.MarshalPKIXPublicKey(publicKey)
	if err != nil {
		return "", fmt.Errorf("encoding the listener public key: %w", err)
	}
	digest := sha256.Sum256(spki)
	return hex.EncodeToString(digest[:]), nil
}
