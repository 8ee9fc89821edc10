package keyrelease

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"

	"confidential-vault.internal/bootstrap"
)

// Settings the host supplies (listed as fromHost in enclave.json). The Key Vault key is the host's choice, which is
// why the enclave binds it into its attestation (binding version 3) and clients compare it with the stack's: README.md,
// "Another vault".
const (
	// EnvSealKeyID is the Key Vault key whose release unseals OpenBao, with its version:
	// https://<vault>.vault.azure.net/keys/<name>/<version>. Unset: no attested unseal (Shamir). The launch plan
	// (bootstrap.PlanLaunch) adds the static seal's measured configuration exactly when it is set: one name for both.
	EnvSealKeyID = bootstrap.EnvSealKeyID
	// EnvSealPreviousKeyID is the version being rotated away from (same vault and name), while OpenBao still has data
	// sealed with it; unset outside a rotation.
	EnvSealPreviousKeyID = "CV_SEAL_PREVIOUS_KEY_ID"
)

// What the AKS workload identity webhook injects into a pod whose service account is federated with an identity.
const (
	EnvAzureClientID           = "AZURE_CLIENT_ID"
	EnvAzureTenantID           = "AZURE_TENANT_ID"
	EnvAzureFederatedTokenFile = "AZURE_FEDERATED_TOKEN_FILE"
	EnvAzureAuthorityHost      = "AZURE_AUTHORITY_HOST"
)

// FederatedTokenDir is where the webhook projects the service account token, and the only directory the
// enclave mounts for it (hostfs, read-only). AZURE_FEDERATED_TOKEN_FILE must lie in it: the enclave sends the file's
// content to AZURE_AUTHORITY_HOST, both the host's choice, so the path must not reach the enclave's own files.
const FederatedTokenDir = "/var/run/secrets/azure/tokens"

// KeyID names one version of a Key Vault key, in the form Key Vault writes into the key's kid.
type KeyID struct {
	// Vault is the vault's base URL: https://<vault>.vault.azure.net (lower case, no trailing slash).
	Vault string
	// Name is the key's name, lower case: Key Vault names are case-insensitive.
	Name    string
	Version string
}

// String is the key identifier: https://<vault>.vault.azure.net/keys/<name>/<version>.
func (k KeyID) String() string {
	return k.Vault + "/keys/" + k.Name + "/" + k.Version
}

var (
	keyNamePattern    = regexp.MustCompile(`^[0-9A-Za-z-]{1,127}$`)
	keyVersionPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)
	// A vault or Managed HSM name as Azure allows it (3 to 24 characters: letters, digits, dashes; a letter first,
	// no dash last, no two dashes in a row), followed by the public cloud's DNS suffix of its data plane. Sovereign
	// clouds (vault.azure.cn, vault.usgovcloudapi.net, …) are not supported by the program, so not accepted here.
	keyVaultHostPattern = regexp.MustCompile(`^([a-z](?:-?[a-z0-9])+)\.(vault|managedhsm)\.azure\.net$`)
)

// keyIDForm is the only form a key id may have; no port, user, query or fragment.
const keyIDForm = "https://<vault>.vault.azure.net/keys/<name>/<version> or https://<hsm>.managedhsm.azure.net/keys/<name>/<version>"

// ParseKeyID accepts a Key Vault or Managed HSM key URL with its version (keyIDForm) and nothing else: the host is
// where the enclave sends its attestation and from where it takes the key, so only Azure's key services may be
// named; the version is required, so the key the enclave attests is exactly the key it used.
func ParseKeyID(raw string) (KeyID, error) {
	return parseKeyID(raw, func(host string) bool {
		match := keyVaultHostPattern.FindStringSubmatch(host)
		return match != nil && len(match[1]) >= 3 && len(match[1]) <= 24
	})
}

// parseKeyID is ParseKeyID with the host rule given: the tests' fake Key Vault listens on 127.0.0.1.
func parseKeyID(raw string, hostAllowed func(string) bool) (KeyID, error) {
	parsed, err := url.Parse(raw)
	if err != nil {
		return KeyID{}, errors.New("not a URL")
	}
	if parsed.Scheme != "https" || parsed.Host == "" || parsed.User != nil || parsed.RawQuery != "" ||
		parsed.ForceQuery || parsed.Fragment != "" || parsed.Opaque != "" || strings.Contains(raw, "#") {
		return KeyID{}, errors.New("must be " + keyIDForm)
	}
	host := strings.ToLower(parsed.Host)
	if !hostAllowed(host) {
		return KeyID{}, fmt.Errorf("host %q is not a Key Vault or Managed HSM of Azure's public cloud (no port): "+
			"must be %s", parsed.Host, keyIDForm)
	}
	parts := strings.Split(strings.TrimPrefix(parsed.EscapedPath(), "/"), "/")
	if len(parts) != 3 || parts[0] != "keys" {
		return KeyID{}, errors.New("must be " + keyIDForm + " (with the version)")
	}
	if !keyNamePattern.MatchString(parts[1]) {
		return KeyID{}, fmt.Errorf("key name %q: 1 to 127 letters, digits and dashes", parts[1])
	}
	if !keyVersionPattern.MatchString(parts[2]) {
		return KeyID{}, fmt.Errorf("key version %q: 32 lower-case hex digits", parts[2])
	}
	// Key Vault matches key names without regard to case: one spelling, so that the host cannot make the same key
	// look like another to the store identity record and the listener CA, which both derive from the key id.
	return KeyID{Vault: "https://" + host, Name: strings.ToLower(parts[1]), Version: parts[2]}, nil
}

// Config is what the key release needs from the host.
type Config struct {
	Key KeyID
	// Previous is set during a rotation: the version OpenBao's older data is still sealed with.
	Previous *KeyID

	ClientID           string
	TenantID           string
	FederatedTokenFile string
	// AuthorityHost is Entra's base URL without a trailing slash, e.g. https://login.microsoftonline.com.
	AuthorityHost string
}

var (
	guidPattern   = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	tenantPattern = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z.-]{0,252}$`)
)

// ConfigFromEnv reads the host's settings. Without CV_SEAL_KEY_ID it returns nil: attested unseal is off and
// OpenBao is unsealed with Shamir shares. Otherwise it reports every problem at once, each with its variable.
func ConfigFromEnv(getenv func(string) string) (*Config, error) {
	rawKey := getenv(EnvSealKeyID)
	if rawKey == "" {
		if previous := getenv(EnvSealPreviousKeyID); previous != "" {
			return nil, fmt.Errorf("%s is set without %s: a rotation needs the new key version", EnvSealPreviousKeyID, EnvSealKeyID)
		}
		return nil, nil
	}
	var config Config
	var problems []string
	key, err := ParseKeyID(rawKey)
	if err != nil {
		problems = append(problems, fmt.Sprintf("%s=%q: %v", EnvSealKeyID, rawKey, err))
	}
	config.Key = key
	if rawPrevious := getenv(EnvSealPreviousKeyID); rawPrevious != "" {
		previous, err := ParseKeyID(rawPrevious)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s=%q: %v", EnvSealPreviousKeyID, rawPrevious, err))
		case key != (KeyID{}) && (previous.Vault != key.Vault || previous.Name != key.Name):
			problems = append(problems, fmt.Sprintf("%s=%q: a rotation keeps the vault and the key name of %s (%s/keys/%s)",
				EnvSealPreviousKeyID, rawPrevious, EnvSealKeyID, key.Vault, key.Name))
		case previous == key:
			problems = append(problems, fmt.Sprintf("%s=%q: the same version as %s", EnvSealPreviousKeyID, rawPrevious, EnvSealKeyID))
		default:
			config.Previous = &previous
		}
	}

	config.ClientID = getenv(EnvAzureClientID)
	if !guidPattern.MatchString(config.ClientID) {
		problems = append(problems, fmt.Sprintf("%s=%q: the workload identity's client ID (a GUID), injected by the AKS "+
			"workload identity webhook", EnvAzureClientID, config.ClientID))
	}
	config.TenantID = getenv(EnvAzureTenantID)
	if !tenantPattern.MatchString(config.TenantID) {
		problems = append(problems, fmt.Sprintf("%s=%q: the Entra tenant (a GUID or domain name)", EnvAzureTenantID, config.TenantID))
	}
	config.FederatedTokenFile = getenv(EnvAzureFederatedTokenFile)
	if clean := filepath.Clean(config.FederatedTokenFile); !filepath.IsAbs(clean) || filepath.Dir(clean) != FederatedTokenDir {
		problems = append(problems, fmt.Sprintf("%s=%q: the projected service account token, a file in %s",
			EnvAzureFederatedTokenFile, config.FederatedTokenFile, FederatedTokenDir))
	}
	rawAuthority := getenv(EnvAzureAuthorityHost)
	authority, err := url.Parse(rawAuthority)
	if err != nil || authority.Scheme != "https" || authority.Host == "" || authority.User != nil ||
		strings.Trim(authority.Path, "/") != "" || authority.RawQuery != "" || authority.Fragment != "" {
		problems = append(problems, fmt.Sprintf("%s=%q: Entra's https URL, e.g. https://login.microsoftonline.com/",
			EnvAzureAuthorityHost, rawAuthority))
	} else {
		config.AuthorityHost = "https://" + authority.Host
	}

	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return &config, nil
}
