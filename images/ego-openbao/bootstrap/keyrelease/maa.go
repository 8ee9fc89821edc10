package keyrelease

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
)

// maaAPIVersion is the Attest OpenEnclave API version (the current one in Microsoft's REST reference; EGo v1.9.0
// sends 2020-10-01).
const maaAPIVersion = "2022-08-01"

// attestOpenEnclaveRequest is MAA's AttestOpenEnclaveRequest, with the field names of Microsoft's REST reference
// and of EGo's attestOERequest (internal/attestation/maa.go).
type attestOpenEnclaveRequest struct {
	Report      string      `json:"report"`
	RuntimeData runtimeData `json:"runtimeData"`
}

type runtimeData struct {
	Data     string `json:"data"`
	DataType string `json:"dataType"`
}

// attestJSON does what EGo's CreateAzureAttestationToken does — an SGX report with SHA-256(data) as report data,
// verified by MAA — but sends data as runtime data of type JSON: MAA then returns it, parsed, as the claim
// x-ms-runtime, where Key Vault's release looks for the key to wrap to (x-ms-runtime.keys). data must be a JSON
// object. The token is checked to carry exactly data there.
func (r *Releaser) attestJSON(ctx context.Context, data []byte) (string, error) {
	what := "obtaining an attestation token from " + r.maaURL
	endpoint, err := url.Parse(r.maaURL)
	if err != nil {
		return "", fmt.Errorf("%s: the provider's URL: %w", what, err)
	}
	endpoint = endpoint.ResolveReference(&url.URL{Path: "/attest/OpenEnclave", RawQuery: "api-version=" + maaAPIVersion})
	digest := sha256.Sum256(data)
	report, err := r.attester.GetRemoteReport(digest[:])
	if err != nil {
		return "", fmt.Errorf("%s: getting this enclave's SGX report: %w", what, err)
	}
	body, err := json.Marshal(attestOpenEnclaveRequest{
		Report:      base64.RawURLEncoding.EncodeToString(report),
		RuntimeData: runtimeData{Data: base64.RawURLEncoding.EncodeToString(data), DataType: "JSON"},
	})
	if err != nil {
		return "", err
	}
	var token string
	err = r.retry.do(ctx, what, func(ctx context.Context) error {
		request, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint.String(), bytes.NewReader(body))
		if err != nil {
			return permanent(err)
		}
		request.Header.Set("Content-Type", "application/json")
		response, err := r.client.Do(request)
		if err != nil {
			return err
		}
		answer, err := readResponse(response, "Microsoft Azure Attestation", describeMAAError)
		if err != nil {
			return err
		}
		var envelope struct {
			Token string `json:"token"`
		}
		if err := json.Unmarshal(answer, &envelope); err != nil || envelope.Token == "" {
			return permanent(errors.New("the attestation provider's answer is not {\"token\": \"<JWT>\"}"))
		}
		if err := checkRuntimeData(envelope.Token, data); err != nil {
			return permanent(err)
		}
		token = envelope.Token
		return nil
	})
	return token, err
}

// describeMAAError reads MAA's error object ({"error": {"code", "message"}}).
func describeMAAError(serviceError *ServiceError, body []byte) {
	var answer struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &answer) == nil {
		serviceError.Code, serviceError.Message = answer.Error.Code, shorten(answer.Error.Message)
	}
	if serviceError.Status == http.StatusBadRequest || serviceError.Status == http.StatusUnauthorized {
		serviceError.Hint = "the provider refused this enclave's report (its attestation policy, or an untrusted platform)"
	}
}

// checkRuntimeData reads the token's x-ms-runtime without verifying the token (Key Vault does): a provider that
// bound other data would get a release for a key this enclave does not hold.
func checkRuntimeData(token string, want []byte) error {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return errors.New("the attestation token is not a JWT (three dot-separated parts)")
	}
	payload, err := decodeBase64URL(parts[1])
	if err != nil {
		return fmt.Errorf("the attestation token's payload is not base64url: %w", err)
	}
	var claims struct {
		Runtime json.RawMessage `json:"x-ms-runtime"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return fmt.Errorf("the attestation token's payload is not JSON: %w", err)
	}
	if claims.Runtime == nil || string(claims.Runtime) == "null" {
		return errors.New("the attestation token has no x-ms-runtime (runtime data of type JSON), where Key Vault reads the wrapping key")
	}
	var got, expected any
	if json.Unmarshal(claims.Runtime, &got) != nil || json.Unmarshal(want, &expected) != nil || !reflect.DeepEqual(got, expected) {
		return errors.New("the attestation token's x-ms-runtime is not the wrapping key set this enclave attested")
	}
	return nil
}
