// Package bootstrap gives OpenBao's TLS listener a key born inside the enclave and a certificate that carries the
// proof: a Microsoft Azure Attestation (MAA) token whose enclave-held data (x-ms-sgx-ehd) names that key.
//
// It runs in the enclave before OpenBao's main (see openbaohook/) and writes the key and the certificate to the
// enclave's in-memory file system, where the measured OpenBao configuration points its listener. Clients check the
// token with scripts/verify.py before they trust the certificate. README.md in this directory is the contract.
package bootstrap

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Where the measured OpenBao configuration expects the listener's files (tls_cert_file, tls_key_file). They are
// constants, not settings: the host must not choose where the key goes (a hostfs path would hand it over). The
// directory lies in the enclave's in-memory root, which enclave.json must leave unmounted.
const (
	ListenerDir     = "/run/bao-tls"
	CertificatePath = ListenerDir + "/listener.crt"
	KeyPath         = ListenerDir + "/listener.key"
)

// Settings the host supplies through the environment (listed as fromHost in enclave.json). None of them can make a
// client trust something it should not: README.md, "What the host decides".
const (
	// EnvMAAURL is the attestation provider, e.g. https://sharedweu.weu.attest.azure.net.
	EnvMAAURL = "CV_MAA_URL"
	// EnvListenerNames are the certificate's subject alternative names, comma-separated (DNS names or IP addresses).
	EnvListenerNames = "CV_LISTENER_NAMES"
	// EnvSimulation is EGo's switch for running without SGX ("1"); ego-host reads it too.
	EnvSimulation = "OE_SIMULATION"
)

// Config is what the bootstrap needs from the host.
type Config struct {
	// MAAURL is the attestation provider's base URL without a trailing slash (empty in simulation).
	MAAURL string
	// DNSNames and IPAddresses become the certificate's subject alternative names.
	DNSNames    []string
	IPAddresses []net.IP
	// Simulation: no SGX, so no attestation; the certificate says so instead of carrying a token.
	Simulation bool
}

// ConfigFromEnv reads the host's settings and reports every problem at once, each with its variable's name.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	var config Config
	var problems []string

	switch simulation := getenv(EnvSimulation); simulation {
	case "", "0":
	case "1":
		config.Simulation = true
	default:
		problems = append(problems, fmt.Sprintf("%s=%q: expected 1 (simulation) or 0/unset", EnvSimulation, simulation))
	}

	if raw := getenv(EnvMAAURL); raw != "" {
		normalised, err := parseMAAURL(raw)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s=%q: %v", EnvMAAURL, raw, err))
		}
		config.MAAURL = normalised
	} else if !config.Simulation {
		problems = append(problems, fmt.Sprintf("%s is not set: the attestation provider's URL (https://...)", EnvMAAURL))
	}

	names := getenv(EnvListenerNames)
	seen := map[string]bool{}
	for _, entry := range strings.Split(names, ",") {
		name := strings.ToLower(strings.TrimSpace(entry))
		if name == "" || seen[name] {
			continue
		}
		seen[name] = true
		if ip := net.ParseIP(name); ip != nil {
			config.IPAddresses = append(config.IPAddresses, ip)
		} else if validDNSName(name) {
			config.DNSNames = append(config.DNSNames, name)
		} else {
			problems = append(problems, fmt.Sprintf("%s: %q is neither a DNS name nor an IP address", EnvListenerNames, name))
		}
	}
	if len(config.DNSNames) == 0 && len(config.IPAddresses) == 0 {
		problems = append(problems, fmt.Sprintf("%s names no host: give the listener's names, comma-separated", EnvListenerNames))
	}

	if len(problems) > 0 {
		return Config{}, errors.New(strings.Join(problems, "; "))
	}
	return config, nil
}

// parseMAAURL accepts an https URL with a host and nothing after it; the token's issuer is this URL, so it is
// returned in the form MAA writes there (no trailing slash).
func parseMAAURL(raw string) (string, error) {
	parsed, err := url.Parse(raw)
	if err != nil {
		return "", errors.New("not a URL")
	}
	switch {
	case parsed.Scheme != "https":
		return "", errors.New("must be an https:// URL")
	case parsed.Host == "" || parsed.User != nil:
		return "", errors.New("must name a host and nothing else (https://<provider>.<region>.attest.azure.net)")
	case (parsed.Path != "" && parsed.Path != "/") || parsed.RawQuery != "" || parsed.Fragment != "":
		return "", errors.New("must not have a path, query or fragment")
	}
	return "https://" + parsed.Host, nil
}

func validDNSName(name string) bool {
	if len(name) > 253 {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, char := range label {
			if (char < 'a' || char > 'z') && (char < '0' || char > '9') && char != '-' {
				return false
			}
		}
	}
	return true
}
