package bootstrap

import (
	"slices"
	"strings"
	"testing"
)

func noEnvironment(string) (string, bool) { return "", false }

func TestPlanLaunchRunsTheServerWithTheMeasuredConfigurationOnly(t *testing.T) {
	measured := "-config=" + MeasuredConfigPath
	fileStorage := "-config=" + FileStorageConfigPath
	cases := []struct {
		args    []string
		want    []string
		ignored []string
	}{
		// The chart's standalone command (docker-entrypoint.sh drops its leading `bao`).
		{[]string{"server", "-config=/tmp/storageconfig.hcl"}, []string{"server", measured, fileStorage}, []string{"/tmp/storageconfig.hcl"}},
		{
			[]string{"server", "-config", "/a.hcl", "--config=/b", "-log-level", "debug", "--log-format=json"},
			[]string{"server", measured, fileStorage, "-log-level=debug", "-log-format=json"},
			[]string{"/a.hcl", "/b"},
		},
		{[]string{"server"}, []string{"server", measured, fileStorage}, nil},
		// A value that looks like a flag is a value, as in Go's flag package: neither dev mode nor a second config.
		{[]string{"server", "-log-level", "-dev"}, []string{"server", measured, fileStorage, "-log-level=-dev"}, nil},
		{[]string{"server", "-config", "-dev"}, []string{"server", measured, fileStorage}, []string{"-dev"}},
	}
	for _, c := range cases {
		plan, err := PlanLaunch(c.args, noEnvironment)
		if err != nil {
			t.Errorf("%q: %v", c.args, err)
			continue
		}
		if plan.Launch != MeasuredServer || !slices.Equal(plan.Args, c.want) || !slices.Equal(plan.IgnoredConfigs, c.ignored) {
			t.Errorf("%q: got %+v, want the measured server with %q, ignoring %q", c.args, plan, c.want, c.ignored)
		}
	}
}

func TestPlanLaunchLeavesDevModeAndOtherCommandsAlone(t *testing.T) {
	cases := map[Launch][][]string{
		DevServer: {
			{"server", "-dev"}, // the chart's dev command
			{"server", "-dev", "-dev-root-token-id=x", "-dev-listen-address", "[::]:8200"},
			{"server", "-dev-tls"},                    // implies -dev
			{"server", "-dev=false", "-dev-ha"},       // so does -dev-ha
			{"server", "-dev", "-dev=0", "-dev=true"}, // the last value counts
		},
		OtherCommand: {
			{"status"}, {"operator", "unseal"}, {"version"}, {"-v"}, {},
			{"server", "-h"}, {"server", "--help"}, {"-help"},
			{"server", "-log-level", "-h"}, // hashicorp/cli sees -h anywhere and prints help instead
		},
	}
	for want, lines := range cases {
		for _, args := range lines {
			plan, err := PlanLaunch(args, noEnvironment)
			if err != nil || plan.Launch != want || !slices.Equal(plan.Args, args) || plan.IgnoredConfigs != nil {
				t.Errorf("%q: got %+v, %v; want launch %d with the arguments unchanged", args, plan, err, want)
			}
		}
	}
}

func TestPlanLaunchRefusesHostConfigurationForTheDevServer(t *testing.T) {
	// OpenBao merges -config files and BAO_CONFIG_PATH into dev mode's configuration (command/server.go, v2.6.2):
	// the genuine enclave would otherwise run on storage, listener and seal the host chose.
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"server", "-dev", "-config=/tmp/x.hcl"}, nil, "-config=/tmp/x.hcl: the dev server takes no configuration file"},
		{[]string{"server", "-dev", "-dev-skip-init", "-config", "/tmp/x.hcl"}, nil, "-config=/tmp/x.hcl"},
		{[]string{"server", "-dev"}, map[string]string{"BAO_CONFIG_PATH": "/tmp/x.hcl"}, "BAO_CONFIG_PATH is set"},
		{[]string{"server", "-dev-tls"}, map[string]string{"VAULT_CONFIG_PATH": "/tmp"}, "VAULT_CONFIG_PATH is set"},
	} {
		lookup := func(name string) (string, bool) { value, set := tc.env[name]; return value, set }
		plan, err := PlanLaunch(tc.args, lookup)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q with %v: got %+v, %v; want a refusal naming %q", tc.args, tc.env, plan, err, tc.want)
		}
	}
}

func TestPlanLaunchRefusesWhatWouldChangeTheServer(t *testing.T) {
	cases := []struct {
		args []string
		env  map[string]string
		want []string
	}{
		// Dev mode off, so the server would start with the host's file: what ShouldRun let through before.
		{args: []string{"server", "-dev=false", "-config=/tmp/evil.hcl"}, want: []string{"flag -dev is not allowed"}},
		{args: []string{"server", "-config=/x", "-dev-root-token-id=x"}, want: []string{"flag -dev-root-token-id is not allowed"}},
		{args: []string{"server", "-config=/x", "-dev-skip-init"}, want: []string{"flag -dev-skip-init is not allowed"}},
		// OpenBao checks -recovery before dev mode: recovery mode reads the host's config.
		{
			args: []string{"server", "-dev", "-recovery", "-config=/x"},
			want: []string{"flag -dev is not allowed", "flag -recovery is not allowed"},
		},
		{args: []string{"server", "-config=/x", "-log-file=/openbao/data/log"}, want: []string{"flag -log-file is not allowed"}},
		{args: []string{"server", "-config=/x", "-address=http://x"}, want: []string{"flag -address is not a flag of `bao server`"}},
		// Go's flag package stops at the first non-flag: what follows would be ignored, not parsed.
		{args: []string{"server", "-config=/x", "stray", "-recovery"}, want: []string{`argument "stray"`}},
		{args: []string{"server", "-config=/x", "--", "-dev"}, want: []string{`argument "--"`}},
		{args: []string{"server", "-dev=maybe"}, want: []string{"flag -dev=maybe: not a boolean"}},
		{args: []string{"server", "-config"}, want: []string{"flag -config needs a value"}},
		{args: []string{"server", "---config=/x"}, want: []string{`bad flag syntax "---config=/x"`}},
		// hashicorp/cli runs the first non-flag argument as the command, and -version before it does not stop it.
		{args: []string{"-version", "server", "-config=/x"}, want: []string{"arguments before `server`"}},
		{args: []string{"", "server", "-config=/x"}, want: []string{"arguments before `server`"}},
		// OpenBao adds the files these name to the -config list.
		{args: []string{"server"}, env: map[string]string{"BAO_CONFIG_PATH": ""}, want: []string{"BAO_CONFIG_PATH is set"}},
		{args: []string{"server"}, env: map[string]string{"VAULT_CONFIG_PATH": "/x"}, want: []string{"VAULT_CONFIG_PATH is set"}},
	}
	for _, c := range cases {
		lookup := func(name string) (string, bool) { value, set := c.env[name]; return value, set }
		plan, err := PlanLaunch(c.args, lookup)
		if err == nil {
			t.Errorf("%q: accepted as %+v", c.args, plan)
			continue
		}
		for _, want := range c.want {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%q: error %q does not say %q", c.args, err, want)
			}
		}
		if !strings.Contains(err.Error(), MeasuredConfigPath) && !strings.Contains(err.Error(), "before `server`") {
			t.Errorf("%q: error %q does not name the measured configuration", c.args, err)
		}
	}
}

// FuzzPlanLaunch: whatever the host passes, a measured server's command line names only the measured file, keeps
// only log flags, and is read again as the same measured server (no value turns into a flag, help or dev mode).
// `go test` runs the seeds; `go test -fuzz FuzzPlanLaunch` searches further.
func FuzzPlanLaunch(f *testing.F) {
	for _, seed := range []string{
		"server -config=/tmp/storageconfig.hcl", "server -log-level -dev", "server -log-level=-h -config -x",
		"server -dev", "server -dev=false -config=/x", "server -log-format --", "server -config=a,b -log-level=debug",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		args := strings.Split(line, " ")
		plan, err := PlanLaunch(args, noEnvironment)
		if err != nil || plan.Launch != MeasuredServer {
			return
		}
		if len(plan.Args) < 3 || plan.Args[0] != "server" || plan.Args[1] != "-config="+MeasuredConfigPath ||
			plan.Args[2] != "-config="+FileStorageConfigPath {
			t.Fatalf("%q: measured command line %q", args, plan.Args)
		}
		for _, arg := range plan.Args[3:] {
			if !strings.HasPrefix(arg, "-log-level=") && !strings.HasPrefix(arg, "-log-format=") {
				t.Fatalf("%q: kept %q", args, arg)
			}
		}
		again, err := PlanLaunch(plan.Args, noEnvironment)
		if err != nil || again.Launch != MeasuredServer || !slices.Equal(again.Args, plan.Args) {
			t.Fatalf("%q: the rewritten %q reads as %+v, %v", args, plan.Args, again, err)
		}
	})
}

// The variables through which OpenBao v2.6.2 would take its seal from the environment (command/server.go setSeal;
// go-kms-wrapping wrappers/static v2.2.0), written out here rather than read from SealVariables.
var hostSealVariables = []string{
	"BAO_SEAL_TYPE", "VAULT_SEAL_TYPE", "BAO_STATIC_SEAL_CURRENT_KEY", "BAO_STATIC_SEAL_CURRENT_KEY_ID",
	"BAO_STATIC_SEAL_PREVIOUS_KEY", "BAO_STATIC_SEAL_PREVIOUS_KEY_ID",
}

func TestPlanLaunchClearsTheSealEnvironmentOnEveryServerLaunch(t *testing.T) {
	withKey := func(name string) (string, bool) {
		if name == EnvSealKeyID {
			return "https://kv-test.vault.azure.net/keys/openbao-seal/0123456789abcdef0123456789abcdef", true
		}
		return "", false
	}
	servers := []struct {
		args   []string
		lookup func(string) (string, bool)
		launch Launch
	}{
		{[]string{"server", "-config=/tmp/storageconfig.hcl"}, noEnvironment, MeasuredServer},
		{[]string{"server", "-config=/tmp/storageconfig.hcl"}, withKey, MeasuredServer},
		{[]string{"server"}, noEnvironment, MeasuredServer},
		{[]string{"server", "-dev"}, noEnvironment, DevServer},
		{[]string{"server", "-dev-tls"}, withKey, DevServer},
	}
	for _, c := range servers {
		plan, err := PlanLaunch(c.args, c.lookup)
		if err != nil || plan.Launch != c.launch {
			t.Errorf("%q: %+v, %v", c.args, plan, err)
			continue
		}
		if !slices.Equal(plan.Unset, hostSealVariables) {
			t.Errorf("%q: unsets %q, want every seal variable %q", c.args, plan.Unset, hostSealVariables)
		}
	}
	for _, args := range [][]string{{"status"}, {"operator", "init"}, {"server", "-h"}} {
		if plan, err := PlanLaunch(args, noEnvironment); err != nil || plan.Unset != nil {
			t.Errorf("%q: %+v, %v; a client command keeps its environment", args, plan, err)
		}
	}
}

func TestPlanLaunchAddsTheStaticSealExactlyWhenASealKeyIsNamed(t *testing.T) {
	measured := "-config=" + MeasuredConfigPath
	fileStorage := "-config=" + FileStorageConfigPath
	staticSeal := "-config=/etc/openbao/seal-static.hcl"
	cases := []struct {
		env      map[string]string
		attested bool
		want     []string
	}{
		{env: nil, want: []string{"server", measured, fileStorage, "-log-level=info"}},
		{env: map[string]string{EnvSealKeyID: ""}, want: []string{"server", measured, fileStorage, "-log-level=info"}},
		{env: map[string]string{"CV_SEAL_PREVIOUS_KEY_ID": "x"}, want: []string{"server", measured, fileStorage, "-log-level=info"}},
		{
			env:      map[string]string{"CV_SEAL_KEY_ID": "https://kv-test.vault.azure.net/keys/openbao-seal/0a"},
			attested: true,
			want:     []string{"server", measured, fileStorage, staticSeal, "-log-level=info"},
		},
	}
	for _, c := range cases {
		lookup := func(name string) (string, bool) { value, set := c.env[name]; return value, set }
		plan, err := PlanLaunch([]string{"server", "-config=/tmp/storageconfig.hcl", "-log-level=info"}, lookup)
		if err != nil {
			t.Fatalf("%v: %v", c.env, err)
		}
		if plan.AttestedUnseal != c.attested || !slices.Equal(plan.Args, c.want) {
			t.Errorf("%v: attested %v, args %q; want %v, %q", c.env, plan.AttestedUnseal, plan.Args, c.attested, c.want)
		}
		// The host's -config never selects the seal: it is dropped whatever it names.
		host, err := PlanLaunch([]string{"server", "-config=" + AttestedUnsealConfigPath, "-log-level=info"}, lookup)
		if err != nil || !slices.Equal(host.Args, c.want) {
			t.Errorf("%v: the host's -config=%s gave %q, %v", c.env, AttestedUnsealConfigPath, host.Args, err)
		}
	}
}

func TestPlanLaunchAddsTheMeasuredStorageTheHostNames(t *testing.T) {
	cases := []struct {
		env  map[string]string
		want string
	}{
		{nil, FileStorageConfigPath}, // unset: file, as before the choice existed
		{map[string]string{EnvStorage: "file"}, FileStorageConfigPath},
		{map[string]string{EnvStorage: "postgresql", EnvPostgreSQLURL: "postgres://openbao:pw@cv-a.postgres.database.azure.com/openbao?sslmode=verify-full"},
			"/etc/openbao/storage-postgresql.hcl"},
	}
	for _, c := range cases {
		lookup := func(name string) (string, bool) { value, set := c.env[name]; return value, set }
		plan, err := PlanLaunch([]string{"server", "-config=/etc/openbao/storage-postgresql.hcl"}, lookup)
		want := []string{"server", "-config=" + MeasuredConfigPath, "-config=" + c.want}
		if err != nil || !slices.Equal(plan.Args, want) {
			t.Errorf("%v: %q, %v; want %q (the host's -config never chooses the storage)", c.env, plan.Args, err, want)
		}
	}
	for _, storage := range []string{"", "raft", "inmem", "Postgresql", "/tmp/evil.hcl", "file,postgresql"} {
		lookup := func(name string) (string, bool) { return storage, name == EnvStorage }
		_, err := PlanLaunch([]string{"server"}, lookup)
		if err == nil || !strings.Contains(err.Error(), "CV_STORAGE=") {
			t.Errorf("CV_STORAGE=%q: %v; want a refusal", storage, err)
		}
	}
	// The dev server keeps its in-memory storage whatever the host names.
	if plan, err := PlanLaunch([]string{"server", "-dev"}, func(name string) (string, bool) { return "raft", name == EnvStorage }); err != nil ||
		plan.Launch != DevServer {
		t.Errorf("dev server: %+v, %v", plan, err)
	}
}

// TestLaunchPlanChecksThePostgreSQLURL: with storage postgresql the plan refuses a URL the measured rules refuse
// (dburl.go), and says so without the password; with storage file the URL is not read.
func TestLaunchPlanChecksThePostgreSQLURL(t *testing.T) {
	const password = "n0t-in-any-log"
	env := map[string]string{
		EnvStorage:       "postgresql",
		EnvPostgreSQLURL: "postgres://openbao:" + password + "@cv-a.postgres.database.azure.com/openbao?sslmode=disable",
	}
	lookup := func(name string) (string, bool) { value, set := env[name]; return value, set }
	_, err := PlanLaunch([]string{"server", "-config=/tmp/storageconfig.hcl"}, lookup)
	if err == nil || !strings.Contains(err.Error(), "sslmode must be verify-full") || strings.Contains(err.Error(), password) {
		t.Errorf("postgresql with sslmode=disable: %v", err)
	}
	env[EnvPostgreSQLURL] = strings.Replace(env[EnvPostgreSQLURL], "disable", "verify-full", 1)
	if plan, err := PlanLaunch([]string{"server"}, lookup); err != nil || plan.Storage != "postgresql" {
		t.Errorf("postgresql with a good URL: %+v, %v", plan, err)
	}
	env[EnvStorage] = "file"
	env[EnvPostgreSQLURL] = "sslmode=disable"
	if _, err := PlanLaunch([]string{"server"}, lookup); err != nil {
		t.Errorf("storage file read the PostgreSQL URL: %v", err)
	}
}
