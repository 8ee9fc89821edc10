package bootstrap

import (
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// genuineEnvironment is what a genuine enclave of the chart's pod sees: EGo's own variables and enclave.json's.
func genuineEnvironment() []string {
	environ := slices.Clone(enclaveEnvironment)
	for _, name := range EnclaveConfigEnvironment {
		environ = append(environ, name+"=value-of-"+strings.ToLower(name))
	}
	return environ
}

func statNothing(string) (fs.FileInfo, error) { return nil, fs.ErrNotExist }

type dirInfo struct{}

func (dirInfo) Name() string       { return "hostfs" }
func (dirInfo) Size() int64        { return 0 }
func (dirInfo) Mode() fs.FileMode  { return fs.ModeDir | 0o755 }
func (dirInfo) ModTime() time.Time { return time.Time{} }
func (dirInfo) IsDir() bool        { return true }
func (dirInfo) Sys() any           { return nil }

// TestRefusesMarbleRunPremain: every way the host can steer EGo's premain (MarbleRun's variables, its host mount)
// or add a variable enclave.json does not forward stops the enclave, naming the variable and never its value; and
// in the built hook the refusal comes before the measured files, the launch plan, the key release, the listener and
// OpenBao's main.
func TestRefusesMarbleRunPremain(t *testing.T) {
	if err := RefuseHostSteering(genuineEnvironment(), "/", statNothing); err != nil {
		t.Fatalf("a genuine enclave's environment is refused: %v", err)
	}

	secret := "s3cret-value-from-the-host"
	for _, variable := range []string{
		"EDG_EGO_PREMAIN=1", "EDG_EGO_PREMAIN=0", "EDG_EGO_PREMAIN=",
		"EDG_MARBLE_COORDINATOR_ADDR=" + secret, "EDG_MARBLE_TYPE=" + secret, "EDG_MARBLE_UUID_FILE=" + secret,
		"MARBLE_TTLS_CONFIG=" + secret, "MARBLE_PREDEFINED_PRIVATE_KEY=" + secret,
		// Not MarbleRun's, but not forwarded by enclave.json either: EDG_ is copied by EGo whatever its name.
		"EDG_LOG_FORMAT=" + secret, "EDG_EGO_VERBOSE=" + secret,
		// What would change Go, OpenBao or pgx from the environment had a premain set it.
		"GODEBUG=" + secret, "SSL_CERT_FILE=" + secret, "SSL_CERT_DIR=" + secret, "BAO_CONFIG_PATH=" + secret,
		"VAULT_PG_CONNECTION_URL=" + secret, "PGSSLROOTCERT=" + secret, "PGPASSFILE=" + secret, "HOST_IP=" + secret,
	} {
		name, _, _ := strings.Cut(variable, "=")
		err := RefuseHostSteering(append(genuineEnvironment(), variable), "/", statNothing)
		if err == nil {
			t.Errorf("%s: not refused", name)
			continue
		}
		if !strings.Contains(err.Error(), name) || strings.Contains(err.Error(), secret) {
			t.Errorf("%s: the refusal must name the variable, never its value: %v", name, err)
		}
	}

	// The mount MarbleRun's premain makes, looked for under the root it is given.
	var asked []string
	statHostFS := func(path string) (fs.FileInfo, error) {
		asked = append(asked, path)
		return dirInfo{}, nil
	}
	err := RefuseHostSteering(genuineEnvironment(), "/", statHostFS)
	if err == nil || !strings.Contains(err.Error(), "/edg/hostfs exists") || !slices.Equal(asked, []string{"/edg/hostfs"}) {
		t.Errorf("/edg/hostfs: %v (stat asked for %q)", err, asked)
	}
	// A stat that cannot answer is no proof of absence.
	statFails := func(string) (fs.FileInfo, error) { return nil, errors.New("input/output error") }
	if err := RefuseHostSteering(genuineEnvironment(), "/", statFails); err == nil || !strings.Contains(err.Error(), "cannot rule out /edg/hostfs") {
		t.Errorf("a failing stat: %v", err)
	}

	// The built hook: each trigger stops it with exit 1 and one log line, before anything else happens — no measured
	// file written, no launch plan logged, no listener or key release (their log lines), no OpenBao main (stdout).
	attestedServer := []string{
		EnvListenerNames + "=vault.example.com", EnvMAAURL + "=https://127.0.0.1:1",
		EnvSealKeyID + "=https://kv-test.vault.azure.net/keys/openbao-seal/" + strings.Repeat("0a", 16),
		"AZURE_CLIENT_ID=55555555-5555-5555-5555-555555555555", "AZURE_TENANT_ID=33333333-3333-3333-3333-333333333333",
		"AZURE_FEDERATED_TOKEN_FILE=/var/run/secrets/azure/tokens/azure-identity-token", "AZURE_AUTHORITY_HOST=https://127.0.0.1:1",
	}
	for _, trigger := range []struct {
		name, variable string
		hostFS         bool
	}{
		{name: "EDG_EGO_PREMAIN", variable: "EDG_EGO_PREMAIN=1"},
		{name: "EDG_MARBLE_COORDINATOR_ADDR", variable: "EDG_MARBLE_COORDINATOR_ADDR=" + secret},
		{name: "MARBLE_TTLS_CONFIG", variable: "MARBLE_TTLS_CONFIG=" + secret},
		{name: "GODEBUG", variable: "GODEBUG=" + secret},
		{name: "/edg/hostfs", hostFS: true},
	} {
		hook := buildHook(t) // an empty root for each
		if trigger.hostFS {
			if err := os.MkdirAll(filepath.Join(hook.root, MarbleRunHostFSPath), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		env := attestedServer
		if trigger.variable != "" {
			env = append(slices.Clone(attestedServer), trigger.variable)
		}
		stdout, stderr, code := hook.run(t, env, "server", "-config=/tmp/storageconfig.hcl")
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if code != 1 || stdout != "" || len(lines) != 1 ||
			!strings.Contains(lines[0], "attested-listener: refusing to start OpenBao: the enclave was started in a way") ||
			!strings.Contains(lines[0], trigger.name) || strings.Contains(stderr, secret) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 and only the refusal, naming it", trigger.name, code, stdout, stderr)
		}
		if _, err := os.Stat(filepath.Join(hook.root, MeasuredConfigPath)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: the measured files were written before the refusal (%v)", trigger.name, err)
		}
	}

	// And in the source: the refusal is the first statement of the hook's init, so no later edit can move a step
	// (the measured files, the launch plan, the key release, the listener) before it unnoticed.
	files := token.NewFileSet()
	source, err := parser.ParseFile(files, filepath.Join("openbaohook", "cv_attested_listener.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var first []string
	for _, declaration := range source.Decls {
		function, ok := declaration.(*ast.FuncDecl)
		if !ok || function.Name.Name != "init" || function.Recv != nil {
			continue
		}
		ast.Inspect(function.Body, func(node ast.Node) bool {
			if call, ok := node.(*ast.CallExpr); ok {
				if selector, ok := call.Fun.(*ast.SelectorExpr); ok {
					if pkg, ok := selector.X.(*ast.Ident); ok {
						first = append(first, pkg.Name+"."+selector.Sel.Name)
					}
				}
			}
			return true
		})
	}
	// The logger is built first (log.New, and os.Stderr is no call); then nothing but the refusal.
	want := []string{"log.New", "bootstrap.RefuseHostSteering", "os.Environ"}
	if len(first) < len(want) || !slices.Equal(first[:len(want)], want) {
		t.Errorf("the hook's init starts with %q, want %q", first[:min(len(first), 5)], want)
	}
}

// TestEnclaveEnvironmentMatchesEnclaveJSON: the allow-list is enclave.json's `env`, name for name, so forwarding a new
// variable means listing it (and its reason, README.md) here too.
func TestEnclaveEnvironmentMatchesEnclaveJSON(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "enclave.json"))
	if err != nil {
		t.Fatal(err)
	}
	var config struct {
		Env []struct {
			Name string `json:"name"`
		} `json:"env"`
		Files []json.RawMessage `json:"files"`
	}
	if err := json.Unmarshal(raw, &config); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, variable := range config.Env {
		names = append(names, variable.Name)
	}
	slices.Sort(names)
	allowed := slices.Sorted(slices.Values(EnclaveConfigEnvironment))
	if !slices.Equal(names, allowed) {
		t.Errorf("enclave.json env %q, EnclaveConfigEnvironment %q", names, allowed)
	}
	for _, name := range EGoEnvironment {
		if slices.Contains(names, name) {
			t.Errorf("%s is EGo's, not the host's: enclave.json must not forward it", name)
		}
	}
	if len(config.Files) != 0 {
		t.Errorf("enclave.json embeds files: the bootstrap writes the measured files itself (measuredfiles.go)")
	}
}
