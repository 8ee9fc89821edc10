package keyrelease

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// KeyVaultScope is the scope of an Entra token for Key Vault's data plane (public cloud).
const KeyVaultScope = "https://vault.azure.net/.default"

// entraToken exchanges the pod's projected service account token (AKS workload identity) for an Entra access token
// for Key Vault: OAuth 2.0 client credentials with a client assertion (RFC 7523, jwt-bearer). The token grants only
// what the identity's role assignment allows: release of this one key, which Key Vault still gates on attestation.
func (r *Releaser) entraToken(ctx context.Context) (string, error) {
	var token string
	err := r.retry.do(ctx, "getting an Entra token for Key Vault", func(ctx context.Context) error {
		// Read on every attempt: the webhook's projected token is renewed while the pod runs.
		assertion, err := os.ReadFile(r.config.FederatedTokenFile)
		if err != nil {
			return permanent(fmt.Errorf("reading %s=%s: %w", EnvAzureFederatedTokenFile, r.config.FederatedTokenFile, err))
		}
		form := url.Values{
			"client_id":             {r.config.ClientID},
			"scope":                 {KeyVaultScope},
			"grant_type":            {"client_credentials"},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
			"client_assertion":      {strings.TrimSpace(string(assertion))},
		}
		endpoint := r.config.AuthorityHost + "/" + url.PathEscape(r.config.TenantID) + "/oauth2/v2.0/token"
		request, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewBufferString(form.Encode()))
		if err != nil {
			return permanent(err)
		}
		request.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		request.Header.Set("Accept", "application/json")
		response, err := r.client.Do(request)
		if err != nil {
			return err
		}
		body, err := readResponse(response, "Entra ("+endpoint+")", describeEntraError)
		if err != nil {
			return err
		}
		var answer struct {
			TokenType   string `json:"token_type"`
			AccessToken string `json:"access_token"`
		}
		if err := json.Unmarshal(body, &answer); err != nil {
			return permanent(fmt.Errorf("Entra's answer is not the expected JSON: %w", err))
		}
		if !strings.EqualFold(answer.TokenType, "Bearer") || answer.AccessToken == "" {
			return permanent(errors.New("Entra's answer has no bearer access_token"))
		}
		token = answer.AccessToken
		return nil
	})
	return token, err
}

// describeEntraError reads Entra's OAuth error (error, error_description with its AADSTS code).
func describeEntraError(serviceError *ServiceError, body []byte) {
	var answer struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal(body, &answer) == nil {
		serviceError.Code, serviceError.Message = answer.Error, shorten(answer.Description)
	}
	if serviceError.Status == http.StatusBadRequest || serviceError.Status == http.StatusUnauthorized {
		serviceError.Hint = fmt.Sprintf("check that the identity %s has a federated credential for this pod's "+
			"service account", EnvAzureClientID)
	}
}
