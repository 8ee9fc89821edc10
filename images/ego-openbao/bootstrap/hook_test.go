package bootstrap

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestOpenBaoHookBuilds compiles the cv_enclave files into a stand-in of OpenBao's main package the way the image
// build does (README.md: the hook file next to main.go, this module replaced in OpenBao's go.mod), then runs it:
// the bootstrap must stay out of other commands and stop the server before OpenBao's main when it cannot attest.
// The stand-ins (testdata/upstream) carry the upstream signatures the two files use, nothing more.
func TestOpenBaoHookBuilds(t *testing.T) {
	module, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	upstream := filepath.Join(module, "testdata", "upstream")
	openbao := filepath.Join(t.TempDir(), "openbao")
	if err := os.CopyFS(openbao, os.DirFS(filepath.Join(upstream, "openbao"))); err != nil {
		t.Fatal(err)
	}
	hook, err := os.ReadFile(filepath.Join(module, "openbaohook", "cv_attested_listener.go"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(openbao, "cv_attested_listener.go"), hook, 0o644); err != nil {
		t.Fatal(err)
	}

	goCommand := func(args ...string) string {
		t.Helper()
		command := exec.Command("go", args...)
		command.Dir = openbao
		command.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local", "GOWORK=off")
		output, err := command.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, output)
		}
		return string(output)
	}
	// The image build's line (README.md), with this checkout in place of /bootstrap.
	goCommand("mod", "edit",
		"-require=confidential-vault.internal/bootstrap@v0.0.0-00010101000000-000000000000",
		"-replace=confidential-vault.internal/bootstrap="+module)
	// Here only: the stand-ins instead of the modules OpenBao's go.mod and `ego-go get` provide in the image.
	goCommand("mod", "edit",
		"-require=github.com/edgelesssys/ego@v1.9.0", "-replace=github.com/edgelesssys/ego="+filepath.Join(upstream, "ego"),
		"-require=github.com/hashicorp/go-hclog@v1.6.3", "-replace=github.com/hashicorp/go-hclog="+filepath.Join(upstream, "go-hclog"),
		"-require=github.com/hashicorp/cli@v1.1.7", "-replace=github.com/hashicorp/cli="+filepath.Join(upstream, "cli"))
	goCommand("vet", "-tags", "cv_enclave", ".")
	goCommand("build", "-tags", "cv_enclave", "-o", "bao", ".")

	run := func(env []string, args ...string) (string, string, int) {
		t.Helper()
		command := exec.Command(filepath.Join(openbao, "bao"), args...)
		command.Env = env
		var stdout, stderr strings.Builder
		command.Stdout, command.Stderr = &stdout, &stderr
		err := command.Run()
		code := 0
		if exitError, ok := err.(*exec.ExitError); ok {
			code = exitError.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return stdout.String(), stderr.String(), code
	}

	for _, args := range [][]string{{"status"}, {"server", "-dev"}, {"server", "-dev", "-dev-root-token-id=x"}} {
		stdout, stderr, code := run(nil, args...)
		if code != 0 || !strings.Contains(stdout, fmt.Sprintf("openbao stand-in ran %q", args)) || stderr != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q: the bootstrap must leave this command alone", args, code, stdout, stderr)
		}
	}

	// A dev command line that names a configuration file never reaches OpenBao (dev mode would merge it).
	if stdout, stderr, code := run(nil, "server", "-dev", "-config=/tmp/dev.hcl"); code == 0 ||
		strings.Contains(stdout, "openbao stand-in ran") || !strings.Contains(stderr, "the dev server takes no configuration file") {
		t.Errorf("dev server with a host file: exit %d, stdout %q, stderr %q; want a refusal", code, stdout, stderr)
	}

	// The chart's command line: the host's file is dropped for the measured one before anything else happens.
	stdout, stderr, code := run([]string{EnvListenerNames + "=vault.example.com"}, "server", "-config=/tmp/storageconfig.hcl")
	if code == 0 || strings.Contains(stdout, "openbao stand-in ran") {
		t.Errorf("the server started without an attestation provider: exit %d, stdout %q", code, stdout)
	}
	for _, want := range []string{
		"attested-listener: ignoring -config=/tmp/storageconfig.hcl from the host",
		"attested-listener: running bao server -config=" + MeasuredConfigPath + " -config=" + FileStorageConfigPath,
		"attested-listener: refusing to start OpenBao: CV_MAA_URL is not set",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr %q does not say %q", stderr, want)
		}
	}

	// Every server launch removes the variables through which OpenBao would take its seal from the environment.
	hostSeal := []string{"BAO_SEAL_TYPE=static", "VAULT_SEAL_TYPE=transit", "BAO_STATIC_SEAL_CURRENT_KEY=" + strings.Repeat("ab", 32),
		"BAO_STATIC_SEAL_CURRENT_KEY_ID=host", "BAO_STATIC_SEAL_PREVIOUS_KEY=x", "BAO_STATIC_SEAL_PREVIOUS_KEY_ID=y"}
	stdout, stderr, code = run(hostSeal, "server", "-dev")
	if code != 0 || !strings.Contains(stdout, `seal environment: []`) {
		t.Errorf("the dev server saw the host's seal variables: exit %d, stdout %q", code, stdout)
	}
	for _, variable := range hostSeal {
		name, _, _ := strings.Cut(variable, "=")
		if !strings.Contains(stderr, "attested-listener: ignoring "+name+" from the host") {
			t.Errorf("stderr %q does not say that %s was dropped", stderr, name)
		}
	}

	// A seal key from the host: the measured static seal joins the configuration, and the key release needs SGX.
	attested := append([]string{
		EnvListenerNames + "=vault.example.com", EnvSimulation + "=1", EnvSealKeyID + "=https://kv-test.vault.azure.net/keys/openbao-seal/" + strings.Repeat("0a", 16),
		"AZURE_CLIENT_ID=55555555-5555-5555-5555-555555555555", "AZURE_TENANT_ID=33333333-3333-3333-3333-333333333333",
		"AZURE_FEDERATED_TOKEN_FILE=/var/run/secrets/azure/tokens/azure-identity-token", "AZURE_AUTHORITY_HOST=https://login.microsoftonline.com/",
	}, hostSeal...)
	stdout, stderr, code = run(attested, "server", "-config=/tmp/storageconfig.hcl")
	if code == 0 || strings.Contains(stdout, "openbao stand-in ran") {
		t.Errorf("attested unseal started in simulation: exit %d, stdout %q", code, stdout)
	}
	for _, want := range []string{
		"attested-listener: ignoring BAO_SEAL_TYPE from the host",
		"attested-listener: running bao server -config=" + MeasuredConfigPath + " -config=" + FileStorageConfigPath +
			" -config=" + AttestedUnsealConfigPath,
		"attested-listener: refusing to start OpenBao: " + EnvSealKeyID + " is set, but attested unseal needs SGX",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr %q does not say %q", stderr, want)
		}
	}

	// A command line that would run OpenBao with the host's file (dev mode switched off) stops before anything runs.
	stdout, stderr, code = run(nil, "server", "-dev=false", "-config=/tmp/evil.hcl")
	if code == 0 || strings.Contains(stdout, "openbao stand-in ran") {
		t.Errorf("-dev=false started the server: exit %d, stdout %q", code, stdout)
	}
	if !strings.Contains(stderr, "attested-listener: refusing to start OpenBao: `bao server` runs only the measured "+
		"configuration "+MeasuredConfigPath) || !strings.Contains(stderr, "flag -dev is not allowed") {
		t.Errorf("stderr %q does not say why the server did not start", stderr)
	}
}
