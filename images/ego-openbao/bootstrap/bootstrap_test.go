package bootstrap

import (
	"net"
	"slices"
	"strings"
	"testing"
)

func environment(values map[string]string) func(string) string {
	return func(name string) string { return values[name] }
}

func TestConfigFromEnvReadsTheHostSettings(t *testing.T) {
	config, err := ConfigFromEnv(environment(map[string]string{
		EnvMAAURL:        "https://sharedweu.weu.attest.azure.net/",
		EnvListenerNames: " Vault.Example.COM, openbao,openbao.vault.svc,vault.example.com,127.0.0.1, ::1",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if config.MAAURL != "https://sharedweu.weu.attest.azure.net" {
		t.Errorf("MAAURL = %q, want the URL as MAA writes it into iss (no trailing slash)", config.MAAURL)
	}
	wantNames := []string{"vault.example.com", "openbao", "openbao.vault.svc"}
	if !slices.Equal(config.DNSNames, wantNames) {
		t.Errorf("DNSNames = %q, want %q (lower case, once each, in order)", config.DNSNames, wantNames)
	}
	if len(config.IPAddresses) != 2 || !config.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) ||
		!config.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("IPAddresses = %v, want [127.0.0.1 ::1]", config.IPAddresses)
	}
	if config.Simulation {
		t.Error("Simulation is set without OE_SIMULATION=1")
	}
}

func TestConfigFromEnvInSimulationNeedsNoProvider(t *testing.T) {
	config, err := ConfigFromEnv(environment(map[string]string{EnvSimulation: "1", EnvListenerNames: "openbao"}))
	if err != nil {
		t.Fatal(err)
	}
	if !config.Simulation || config.MAAURL != "" {
		t.Errorf("config = %+v, want a simulation without provider", config)
	}
}

func TestConfigFromEnvListsEveryProblemWithItsVariable(t *testing.T) {
	cases := map[string]struct {
		env  map[string]string
		want []string
	}{
		"nothing set": {
			env:  map[string]string{},
			want: []string{"CV_MAA_URL is not set", "CV_LISTENER_NAMES names no host"},
		},
		"plain http provider, bad name, unclear simulation": {
			env: map[string]string{
				EnvMAAURL: "http://sharedweu.weu.attest.azure.net", EnvListenerNames: "vault.example.com,-bad-.example",
				EnvSimulation: "true",
			},
			want: []string{
				`CV_MAA_URL="http://sharedweu.weu.attest.azure.net": must be an https:// URL`,
				`CV_LISTENER_NAMES: "-bad-.example" is neither a DNS name nor an IP address`,
				`OE_SIMULATION="true": expected 1 (simulation) or 0/unset`,
			},
		},
		"provider with a path": {
			env:  map[string]string{EnvMAAURL: "https://maa.example/attest", EnvListenerNames: "openbao"},
			want: []string{`CV_MAA_URL="https://maa.example/attest": must not have a path, query or fragment`},
		},
		"provider with credentials": {
			env:  map[string]string{EnvMAAURL: "https://user@maa.example", EnvListenerNames: "openbao"},
			want: []string{"must name a host and nothing else"},
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ConfigFromEnv(environment(c.env))
			if err == nil {
				t.Fatal("no error")
			}
			for _, want := range c.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}
