package bootstrap

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestOpenBaoHookBuilds compiles the cv_enclave files into a stand-in of OpenBao's main package the way the image
// build does (buildHook), then runs it: the bootstrap must stay out of other commands and stop the server before
// OpenBao's main when it cannot attest.
func TestOpenBaoHookBuilds(t *testing.T) {
	hook := buildHook(t)
	run := func(env []string, args ...string) (string, string, int) { return hook.run(t, env, args...) }

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

	// The variables through which OpenBao would take its seal from the environment cannot reach a genuine enclave
	// (enclave.json forwards none): present, they mean the launch was steered, and even the dev server stops.
	// (Should enclave.json ever forward one, every server launch still removes them: launch_test.go, plan.Unset.)
	hostSeal := []string{"BAO_SEAL_TYPE=static", "VAULT_SEAL_TYPE=transit", "BAO_STATIC_SEAL_CURRENT_KEY=" + strings.Repeat("ab", 32),
		"BAO_STATIC_SEAL_CURRENT_KEY_ID=host-current-id", "BAO_STATIC_SEAL_PREVIOUS_KEY=" + strings.Repeat("cd", 32),
		"BAO_STATIC_SEAL_PREVIOUS_KEY_ID=host-previous-id"}
	stdout, stderr, code = run(hostSeal, "server", "-dev")
	if code != 1 || strings.Contains(stdout, "openbao stand-in ran") {
		t.Errorf("the dev server started with the host's seal variables: exit %d, stdout %q", code, stdout)
	}
	for _, variable := range hostSeal {
		name, value, _ := strings.Cut(variable, "=")
		if !strings.Contains(stderr, name) || strings.Contains(stderr, value) {
			t.Errorf("stderr %q does not name %s (without its value)", stderr, name)
		}
	}

	// A seal key from the host: the measured static seal joins the configuration, and the key release needs SGX.
	attested := []string{
		EnvListenerNames + "=vault.example.com", EnvSimulation + "=1", EnvSealKeyID + "=https://kv-test.vault.azure.net/keys/openbao-seal/" + strings.Repeat("0a", 16),
		"AZURE_CLIENT_ID=55555555-5555-5555-5555-555555555555", "AZURE_TENANT_ID=33333333-3333-3333-3333-333333333333",
		"AZURE_FEDERATED_TOKEN_FILE=/var/run/secrets/azure/tokens/azure-identity-token", "AZURE_AUTHORITY_HOST=https://login.microsoftonline.com/",
	}
	stdout, stderr, code = run(attested, "server", "-config=/tmp/storageconfig.hcl")
	if code == 0 || strings.Contains(stdout, "openbao stand-in ran") {
		t.Errorf("attested unseal started in simulation: exit %d, stdout %q", code, stdout)
	}
	for _, want := range []string{
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

// hookBinary is the hook compiled into the OpenBao stand-in, built once for every test that runs it.
type hookBinary struct {
	path string
	// root replaces FileSystemRoot (-ldflags -X): the binary writes its measured files, and looks for MarbleRun's
	// host mount, under it instead of the machine's /.
	root string
	// caBundle is what the build embedded as measured.CABundle, standing in for the build image's bundle.
	caBundle []byte
}

var (
	hookOnce  sync.Once
	hookBuilt hookBinary
	hookError error
)

// buildHook compiles the cv_enclave files into a stand-in of OpenBao's main package the way the image build does
// (README.md: the hook file next to main.go, this module replaced in OpenBao's go.mod, the build stage's CA bundle
// copied into measured/ first), from a copy of this module so the CA bundle it writes stays out of the checkout.
// The stand-ins (testdata/upstream) carry the upstream signatures the hook uses, nothing more.
func buildHook(t *testing.T) hookBinary {
	t.Helper()
	hookOnce.Do(func() { hookBuilt, hookError = compileHook() })
	if hookError != nil {
		t.Fatal(hookError)
	}
	// Each test starts from an empty root: a previous test's files or MarbleRun mount must not leak into it.
	entries, err := os.ReadDir(hookBuilt.root)
	if err != nil {
		t.Fatal(err)
	}
	for _, entry := range entries {
		if err := os.RemoveAll(filepath.Join(hookBuilt.root, entry.Name())); err != nil {
			t.Fatal(err)
		}
	}
	return hookBuilt
}

func compileHook() (hookBinary, error) {
	source, err := filepath.Abs(".")
	if err != nil {
		return hookBinary{}, err
	}
	work, err := os.MkdirTemp("", "cv-hook-")
	if err != nil {
		return hookBinary{}, err
	}
	module := filepath.Join(work, "bootstrap")
	openbao := filepath.Join(work, "openbao")
	root := filepath.Join(work, "root")
	if err := os.CopyFS(module, os.DirFS(source)); err != nil {
		return hookBinary{}, err
	}
	if err := os.CopyFS(openbao, os.DirFS(filepath.Join(source, "testdata", "upstream", "openbao"))); err != nil {
		return hookBinary{}, err
	}
	if err := os.Mkdir(root, 0o755); err != nil {
		return hookBinary{}, err
	}
	caBundle, err := testCABundle()
	if err != nil {
		return hookBinary{}, err
	}
	// The Dockerfile's step: the build stage's bundle into measured/, right before the build.
	if err := os.WriteFile(filepath.Join(module, "measured", "ca-certificates.crt"), caBundle, 0o644); err != nil {
		return hookBinary{}, err
	}
	hook, err := os.ReadFile(filepath.Join(module, "openbaohook", "cv_attested_listener.go"))
	if err != nil {
		return hookBinary{}, err
	}
	if err := os.WriteFile(filepath.Join(openbao, "cv_attested_listener.go"), hook, 0o644); err != nil {
		return hookBinary{}, err
	}
	goCommand := func(args ...string) error {
		command := exec.Command("go", args...)
		command.Dir = openbao
		command.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local", "GOWORK=off")
		if output, err := command.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, output)
		}
		return nil
	}
	upstream := filepath.Join(module, "testdata", "upstream")
	for _, args := range [][]string{
		// The image build's line (README.md), with the copy in place of /bootstrap.
		{"mod", "edit", "-require=confidential-vault.internal/bootstrap@v0.0.0-00010101000000-000000000000",
			"-replace=confidential-vault.internal/bootstrap=" + module},
		// Here only: the stand-ins instead of the modules OpenBao's go.mod and `ego-go get` provide in the image.
		{"mod", "edit",
			"-require=github.com/edgelesssys/ego@v1.9.0", "-replace=github.com/edgelesssys/ego=" + filepath.Join(upstream, "ego"),
			"-require=github.com/hashicorp/go-hclog@v1.6.3", "-replace=github.com/hashicorp/go-hclog=" + filepath.Join(upstream, "go-hclog"),
			"-require=github.com/hashicorp/cli@v1.1.7", "-replace=github.com/hashicorp/cli=" + filepath.Join(upstream, "cli")},
		{"vet", "-tags", "cv_enclave", "."},
		{"build", "-tags", "cv_enclave", "-ldflags", "-X confidential-vault.internal/bootstrap.FileSystemRoot=" + root,
			"-o", "bao", "."},
	} {
		if err := goCommand(args...); err != nil {
			return hookBinary{}, err
		}
	}
	return hookBinary{path: filepath.Join(openbao, "bao"), root: root, caBundle: caBundle}, nil
}

// enclaveEnvironment is what EGo puts into every genuine enclave besides enclave.json's variables (EGoEnvironment).
var enclaveEnvironment = []string{"OE_IS_ENCLAVE=1", "EDG_CWD=/openbao", "EGOMAXTHREADS=30", "GOMAXPROCS=26"}

// run starts the hook binary with EGo's variables and env (nothing else from this process), returning its output.
func (h hookBinary) run(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	command := exec.Command(h.path, args...)
	command.Env = append(append([]string{}, enclaveEnvironment...), env...)
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

// testCABundle is one self-signed certificate in PEM, as the build image's bundle is many.
func testCABundle() ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hook test root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}
