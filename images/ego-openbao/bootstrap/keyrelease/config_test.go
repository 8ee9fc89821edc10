package keyrelease

import (
	"strings"
	"testing"
)

func environment(values map[string]string) func(string) string {
	return func(name string) string { return values[name] }
}

func workloadIdentity(extra map[string]string) map[string]string {
	values := map[string]string{
		EnvAzureClientID:           "3f9ab4a1-5c3e-4d7b-9a63-1c2b8e0d4f57",
		EnvAzureTenantID:           "72f988bf-86f1-41af-91ab-2d7cd011db47",
		EnvAzureFederatedTokenFile: "/var/run/secrets/azure/tokens/azure-identity-token",
		EnvAzureAuthorityHost:      "https://login.microsoftonline.com/",
	}
	for name, value := range extra {
		values[name] = value
	}
	return values
}

func TestConfigFromEnvReadsTheKeyAndTheWorkloadIdentity(t *testing.T) {
	config, err := ConfigFromEnv(environment(workloadIdentity(map[string]string{
		EnvSealKeyID:         "https://CV-Prod.vault.azure.net/keys/openbao-seal/" + versionB,
		EnvSealPreviousKeyID: "https://cv-prod.vault.azure.net/keys/openbao-seal/" + versionA,
	})))
	if err != nil {
		t.Fatal(err)
	}
	if got := config.Key.String(); got != "https://cv-prod.vault.azure.net/keys/openbao-seal/"+versionB {
		t.Errorf("key %q, want the host in lower case as Key Vault writes kid", got)
	}
	if config.Previous == nil || config.Previous.Version != versionA {
		t.Errorf("previous %v, want version %s", config.Previous, versionA)
	}
	if config.AuthorityHost != "https://login.microsoftonline.com" || config.TenantID != "72f988bf-86f1-41af-91ab-2d7cd011db47" ||
		config.FederatedTokenFile != "/var/run/secrets/azure/tokens/azure-identity-token" {
		t.Errorf("config %+v", config)
	}
}

func TestConfigFromEnvWithoutAKeyMeansShamir(t *testing.T) {
	config, err := ConfigFromEnv(environment(workloadIdentity(nil)))
	if config != nil || err != nil {
		t.Errorf("ConfigFromEnv = %v, %v; want nil, nil (no attested unseal)", config, err)
	}
	_, err = ConfigFromEnv(environment(map[string]string{EnvSealPreviousKeyID: "https://kv-test.vault.azure.net/keys/k/" + versionA}))
	if err == nil || !strings.Contains(err.Error(), "CV_SEAL_PREVIOUS_KEY_ID is set without CV_SEAL_KEY_ID") {
		t.Errorf("previous without current: err = %v", err)
	}
}

func TestConfigFromEnvListsEveryProblemWithItsVariable(t *testing.T) {
	cases := map[string]struct {
		env  map[string]string
		want []string
	}{
		"no version, no workload identity": {
			env: map[string]string{EnvSealKeyID: "https://cv-test.vault.azure.net/keys/openbao-seal"},
			want: []string{
				`CV_SEAL_KEY_ID="https://cv-test.vault.azure.net/keys/openbao-seal": must be https://<vault>.vault.azure.net/keys/<name>/<version> or https://<hsm>.managedhsm.azure.net/keys/<name>/<version> (with the version)`,
				`AZURE_CLIENT_ID="": the workload identity's client ID`,
				`AZURE_TENANT_ID="": the Entra tenant`,
				`AZURE_FEDERATED_TOKEN_FILE="": the projected service account token, a file in /var/run/secrets/azure/tokens`,
				`AZURE_AUTHORITY_HOST="": Entra's https URL`,
			},
		},
		"plain http, bad version": {
			env: workloadIdentity(map[string]string{EnvSealKeyID: "http://cv.vault.azure.net/keys/openbao-seal/" + versionA,
				EnvSealPreviousKeyID: "https://cv-test.vault.azure.net/keys/openbao-seal/ABC"}),
			want: []string{`CV_SEAL_KEY_ID="http://cv.vault.azure.net/keys/openbao-seal/` + versionA + `": must be https://`,
				`CV_SEAL_PREVIOUS_KEY_ID="https://cv-test.vault.azure.net/keys/openbao-seal/ABC": key version "ABC": 32 lower-case hex digits`},
		},
		"rotation to another vault": {
			env: workloadIdentity(map[string]string{EnvSealKeyID: "https://cv-test.vault.azure.net/keys/openbao-seal/" + versionB,
				EnvSealPreviousKeyID: "https://elsewhere.vault.azure.net/keys/openbao-seal/" + versionA}),
			want: []string{"a rotation keeps the vault and the key name of CV_SEAL_KEY_ID (https://cv-test.vault.azure.net/keys/openbao-seal)"},
		},
		"rotation to the same version": {
			env: workloadIdentity(map[string]string{EnvSealKeyID: "https://cv-test.vault.azure.net/keys/openbao-seal/" + versionA,
				EnvSealPreviousKeyID: "https://cv-test.vault.azure.net/keys/openbao-seal/" + versionA}),
			want: []string{"the same version as CV_SEAL_KEY_ID"},
		},
		"query, bad name, relative token file, authority with a path": {
			env: workloadIdentity(map[string]string{EnvSealKeyID: "https://cv-test.vault.azure.net/keys/seal_key/" + versionA + "?x=1",
				EnvAzureFederatedTokenFile: "token", EnvAzureAuthorityHost: "https://login.microsoftonline.com/tenant"}),
			want: []string{`CV_SEAL_KEY_ID="https://cv-test.vault.azure.net/keys/seal_key/` + versionA + `?x=1": must be https://`,
				`AZURE_FEDERATED_TOKEN_FILE="token"`, `AZURE_AUTHORITY_HOST="https://login.microsoftonline.com/tenant"`},
		},
		"token file outside the mounted directory": {
			env: workloadIdentity(map[string]string{EnvSealKeyID: "https://cv-test.vault.azure.net/keys/openbao-seal/" + versionA,
				EnvAzureFederatedTokenFile: "/var/run/secrets/azure/tokens/../../../../run/bao-tls/listener.key"}),
			want: []string{`AZURE_FEDERATED_TOKEN_FILE="/var/run/secrets/azure/tokens/../../../../run/bao-tls/listener.key": ` +
				"the projected service account token, a file in /var/run/secrets/azure/tokens"},
		},
		"name with an underscore": {
			env:  workloadIdentity(map[string]string{EnvSealKeyID: "https://cv-test.vault.azure.net/keys/seal_key/" + versionA}),
			want: []string{`key name "seal_key": 1 to 127 letters, digits and dashes`},
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			config, err := ConfigFromEnv(environment(c.env))
			if err == nil {
				t.Fatalf("no error, config %+v", config)
			}
			for _, want := range c.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

// TestKeyIDsNameOnlyAzureKeyServices: the key id decides where the enclave sends its attestation and from where it
// takes the key, so both the current and the previous id must be a Key Vault or Managed HSM key URL of Azure's public
// cloud, nothing that merely looks like one.
func TestKeyIDsNameOnlyAzureKeyServices(t *testing.T) {
	for _, good := range []string{
		"https://cv-prod.vault.azure.net/keys/openbao-seal/" + versionA,
		"https://CV-Prod.Vault.Azure.Net/keys/openbao-seal/" + versionA,
		"https://cv-hsm-1.managedhsm.azure.net/keys/openbao-seal/" + versionA,
		"https://abc.vault.azure.net/keys/k/" + versionA,
		"https://a23456789012345678901234.vault.azure.net/keys/k/" + versionA,
	} {
		if _, err := ParseKeyID(good); err != nil {
			t.Errorf("%s refused: %v", good, err)
		}
	}
	for _, bad := range []string{
		"https://cv-prod.vault.azure.net.evil.com/keys/openbao-seal/" + versionA,
		"https://cv-prod.vault.azure.net.evil.com:443/keys/openbao-seal/" + versionA,
		"https://evilvault.azure.net/keys/openbao-seal/" + versionA,
		"https://cv-prod.evil.com/keys/openbao-seal/" + versionA,
		"https://vault.azure.net/keys/openbao-seal/" + versionA,
		"https://cv-prod.vault.azure.net:443/keys/openbao-seal/" + versionA,
		"https://cv-prod.vault.azure.net:8443/keys/openbao-seal/" + versionA,
		"https://cv-prod.vault.azure.net@evil.com/keys/openbao-seal/" + versionA,
		"https://evil.com@cv-prod.vault.azure.net/keys/openbao-seal/" + versionA,
		"https://evil.com%2F@cv-prod.vault.azure.net/keys/openbao-seal/" + versionA,
		"http://cv-prod.vault.azure.net/keys/openbao-seal/" + versionA,
		"https://cv-prod.vault.azure.net/keys/openbao-seal/" + versionA + "?api-version=7.4",
		"https://cv-prod.vault.azure.net/keys/openbao-seal/" + versionA + "?",
		"https://cv-prod.vault.azure.net/keys/openbao-seal/" + versionA + "#x",
		"https://cv-prod.vault.azure.net/keys/openbao-seal/" + versionA + "#",
		"https://cv.vault.azure.net/keys/openbao-seal/" + versionA,                        // 2 characters
		"https://a234567890123456789012345.vault.azure.net/keys/openbao-seal/" + versionA, // 25 characters
		"https://1cv.vault.azure.net/keys/openbao-seal/" + versionA,
		"https://cv-.vault.azure.net/keys/openbao-seal/" + versionA,
		"https://cv--prod.vault.azure.net/keys/openbao-seal/" + versionA,
		"https://cv_prod.vault.azure.net/keys/openbao-seal/" + versionA,
		"https://cv-prod.vault.azure.cn/keys/openbao-seal/" + versionA,
		"https://cv-prod.vault.usgovcloudapi.net/keys/openbao-seal/" + versionA,
		"https://cv-prod.managedhsm.azure.net.evil.com/keys/openbao-seal/" + versionA,
		"https://127.0.0.1/keys/openbao-seal/" + versionA,
		"https://[::1]/keys/openbao-seal/" + versionA,
		"https://cv-prod.vault.azure.net./keys/openbao-seal/" + versionA,
		"//cv-prod.vault.azure.net/keys/openbao-seal/" + versionA,
	} {
		if _, err := ParseKeyID(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
		// The previous key id follows the same rule (and the same vault and name as the current one).
		_, err := ConfigFromEnv(environment(workloadIdentity(map[string]string{
			EnvSealKeyID: "https://cv-prod.vault.azure.net/keys/openbao-seal/" + versionB, EnvSealPreviousKeyID: bad})))
		if err == nil || !strings.Contains(err.Error(), EnvSealPreviousKeyID) {
			t.Errorf("%s=%s: %v", EnvSealPreviousKeyID, bad, err)
		}
	}
}

// Key Vault names keys without regard to case; a respelt name must give the very key id (and so the same listener CA
// and store identity record) as the name Key Vault wrote, or the host could make the record look like none.
func TestKeyIDsHaveOneSpelling(t *testing.T) {
	canonical, err := ParseKeyID("https://cv-prod.vault.azure.net/keys/openbao-seal/" + versionA)
	if err != nil {
		t.Fatal(err)
	}
	for _, respelt := range []string{
		"https://cv-prod.vault.azure.net/keys/OpenBao-Seal/" + versionA,
		"https://CV-PROD.VAULT.AZURE.NET/keys/OPENBAO-SEAL/" + versionA,
	} {
		got, err := ParseKeyID(respelt)
		if err != nil {
			t.Fatalf("%s refused: %v", respelt, err)
		}
		if got != canonical || got.String() != canonical.String() {
			t.Errorf("%s parsed as %s, want %s", respelt, got, canonical)
		}
	}
}
