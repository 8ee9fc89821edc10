package bootstrap

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"confidential-vault.internal/bootstrap/measured"
)

// MeasuredConfigPath is where the bootstrap writes the OpenBao server configuration compiled into the binary
// (measured.Server, part of MRENCLAVE; measuredfiles.go). The server the bootstrap prepares reads this file (and,
// for attested unseal, AttestedUnsealConfigPath) and no other: the host's -config is dropped.
const MeasuredConfigPath = "/etc/openbao/openbao.hcl"

// AttestedUnsealConfigPath is the second measured file (measured.StaticSeal): the `seal "static"` stanza that reads
// the key the enclave derives from the Key Vault release (keyrelease). The measured server adds it to
// MeasuredConfigPath, and OpenBao merges the two, exactly when the host names a seal key (EnvSealKeyID); without it
// OpenBao has no seal stanza and unseals with Shamir shares.
const AttestedUnsealConfigPath = "/etc/openbao/seal-static.hcl"

// The measured storage configurations (measured.FileStorage, measured.PostgreSQLStorage), one of which the measured server adds to
// MeasuredConfigPath as the host's EnvStorage names. Both are measured; the barrier encrypts whatever reaches either,
// so the host's choice decides where the ciphertext lives (availability), never who can read it (README.md, Storage).
const (
	FileStorageConfigPath       = "/etc/openbao/storage-file.hcl"
	PostgreSQLStorageConfigPath = "/etc/openbao/storage-postgresql.hcl"
)

// EnvStorage names the storage of the measured server: "file" (the default when unset, as before the choice
// existed) or "postgresql". Anything else stops the launch.
const EnvStorage = "CV_STORAGE"

// StorageConfigs maps each value of EnvStorage to its measured configuration.
var StorageConfigs = map[string]string{"file": FileStorageConfigPath, "postgresql": PostgreSQLStorageConfigPath}

// EnvSealKeyID is the Key Vault key (with version) whose release unseals OpenBao: keyrelease.EnvSealKeyID, whose
// ConfigFromEnv returns a configuration exactly when this variable is non-empty. Defined here because the launch
// plan chooses the configuration from it and keyrelease imports this package.
const EnvSealKeyID = "CV_SEAL_KEY_ID"

// SealVariables are the environment variables through which OpenBao v2.6.2 takes its seal from the environment
// instead of the measured configuration: BAO_SEAL_TYPE (VAULT_SEAL_TYPE as fallback) replaces the configured seal
// type, or creates a seal where the configuration has none (command/server.go setSeal), and the static seal lets a
// non-empty BAO_STATIC_SEAL_* replace its configured keys and ids (go-kms-wrapping wrappers/static v2.2.0). Every
// server launch removes them before OpenBao's main: with any of them from the host, OpenBao could seal its data with
// a key the host knows. (enclave.json forwards none of them; this holds even if a later change did.) For attested
// unseal, keyrelease then sets the static seal's key ids itself.
var SealVariables = []string{
	"BAO_SEAL_TYPE", "VAULT_SEAL_TYPE",
	"BAO_STATIC_SEAL_CURRENT_KEY", "BAO_STATIC_SEAL_CURRENT_KEY_ID",
	"BAO_STATIC_SEAL_PREVIOUS_KEY", "BAO_STATIC_SEAL_PREVIOUS_KEY_ID",
}

// Launch is what a command line starts inside the enclave.
type Launch int

const (
	// OtherCommand: not the server (status, version, help, ...). It runs unchanged and without the bootstrap.
	OtherCommand Launch = iota
	// DevServer: `bao server -dev ...`, OpenBao's in-memory development server. It runs unchanged and without the
	// bootstrap: no attested certificate, so verifying clients refuse it. Dev mode would merge -config files (and
	// BAO_CONFIG_PATH) into its own configuration, so a dev command line that names one is refused: the dev server
	// always starts on its own in-memory storage and listener.
	DevServer
	// MeasuredServer: every other `bao server`. It runs with the measured configuration only (MeasuredConfigPath,
	// plus AttestedUnsealConfigPath for attested unseal), behind the attested listener.
	MeasuredServer
)

// Plan is the command line OpenBao's main gets, what was dropped from the host's, and what the environment loses.
type Plan struct {
	Launch Launch
	// Args replace os.Args[1:] (the host's arguments unless Launch is MeasuredServer).
	Args []string
	// IgnoredConfigs are the host's -config values, which MeasuredServer does not read.
	IgnoredConfigs []string
	// Storage: a MeasuredServer's storage (a key of StorageConfigs), whose configuration Args name.
	Storage string
	// AttestedUnseal: a MeasuredServer that unseals with the released key (the host named one in EnvSealKeyID), so
	// Args name AttestedUnsealConfigPath too and the hook runs keyrelease before OpenBao's main.
	AttestedUnseal bool
	// Unset are the variables to remove from the environment before OpenBao's main: SealVariables on every server
	// launch (the dev server included), nothing for other commands.
	Unset []string
}

// The flags of `bao server` in OpenBao v2.6.2 (command/server.go Flags, command/log_flags.go addLogFlags) and
// whether each takes a value. The command also accepts the client flags of FlagSetHTTP (-address, -ca-cert, ...),
// which a server does not use: they are unknown here, which only ever means "refused".
var serverFlagTakesValue = map[string]bool{
	"config": true, "exit-on-core-shutdown": false, "recovery": false,
	"combine-logs": false, "log-level": true, "log-format": true, "log-file": true,
	"log-rotate-bytes": true, "log-rotate-duration": true, "log-rotate-max-files": true,
	"dev": false, "dev-tls": false, "dev-tls-cert-dir": true, "dev-root-token-id": true,
	"dev-listen-address": true, "dev-no-store-token": false, "dev-plugin-dir": true, "dev-plugin-init": false,
	"dev-ha": false, "dev-latency": true, "dev-latency-jitter": true, "dev-leased-kv": false, "dev-kv-v1": false,
	"dev-auto-seal": false, "dev-skip-init": false, "dev-three-node": false, "dev-cluster-json": true,
	"test-verify-only": false, "test-server-config": false,
}

// The boolean flags any of which turns on dev mode (ServerCommand.Run: -dev, or one of these implies it), unless
// -recovery, which OpenBao checks first.
var devModeFlags = []string{"dev", "dev-tls", "dev-ha", "dev-leased-kv", "dev-three-node", "dev-auto-seal", "dev-kv-v1"}

// The flags the measured server keeps from the host: log verbosity and format only (the host reads the log anyway).
var measuredServerKeeps = map[string]bool{"log-level": true, "log-format": true}

// Environment variables through which OpenBao would read further configuration files (BAO_ first, then VAULT_).
var configPathVariables = []string{"BAO_CONFIG_PATH", "VAULT_CONFIG_PATH"}

// PlanLaunch decides what the host's command line (os.Args[1:]) starts and, for the server the bootstrap prepares,
// the command line OpenBao runs instead: `server -config=MeasuredConfigPath -config=<storage>` (the measured file
// EnvStorage names) and `-config=AttestedUnsealConfigPath` when EnvSealKeyID is set, plus the host's -log-level and -log-format. Whatever else the host passes to that server
// is refused, with every problem listed. Every server launch also removes SealVariables from the environment.
//
// It reads arguments as OpenBao v2.6.2 does (hashicorp/cli picks the first argument not starting with "-" as the
// command; Go's flag package parses the server's flags until the first non-flag or "--"), and where it cannot be
// sure that OpenBao would start the dev server, it treats the command line as the measured server's.
func PlanLaunch(args []string, lookupEnv func(string) (string, bool)) (Plan, error) {
	unchanged := Plan{Launch: OtherCommand, Args: args}
	command := -1
	for i, arg := range args {
		if arg == "--" {
			break
		}
		if arg == "-h" || arg == "-help" || arg == "--help" {
			return unchanged, nil // hashicorp/cli prints help and runs nothing
		}
		if command < 0 && arg != "" && arg[0] != '-' {
			command = i
		}
	}
	if command < 0 || args[command] != "server" {
		return unchanged, nil
	}
	if command > 0 {
		return Plan{}, fmt.Errorf("arguments before `server` (%q): give the command first", args[:command])
	}

	unset := slices.Clone(SealVariables)
	flags, problems := scanServerFlags(args[1:])
	if len(problems) == 0 && startsDevServer(flags) {
		for _, flag := range flags {
			if flag.name == "config" {
				problems = append(problems, fmt.Sprintf("-config=%s: the dev server takes no configuration file", flag.value))
			}
		}
		for _, name := range configPathVariables {
			if _, set := lookupEnv(name); set {
				problems = append(problems, fmt.Sprintf("%s is set: the dev server would add the files it names", name))
			}
		}
		if len(problems) > 0 {
			return Plan{}, fmt.Errorf("`bao server -dev` runs without host configuration: %s", strings.Join(problems, "; "))
		}
		return Plan{Launch: DevServer, Args: args, Unset: unset}, nil
	}

	plan := Plan{Launch: MeasuredServer, Args: []string{"server", "-config=" + MeasuredConfigPath}, Unset: unset}
	plan.Storage = "file"
	if storage, set := lookupEnv(EnvStorage); set {
		plan.Storage = storage
	}
	if storageConfig, known := StorageConfigs[plan.Storage]; known {
		plan.Args = append(plan.Args, "-config="+storageConfig)
		if plan.Storage == "postgresql" {
			// pgx would take the host's URL as it is: its server, its TLS settings, files it names (dburl.go).
			url, _ := lookupEnv(EnvPostgreSQLURL)
			if err := CheckPostgreSQLURL(url, measured.PostgreSQLHostSuffixes()); err != nil {
				problems = append(problems, err.Error())
			}
		}
	} else {
		problems = append(problems, fmt.Sprintf("%s=%q is not a storage (allowed: file, postgresql)", EnvStorage, plan.Storage))
	}
	if sealKeyID, _ := lookupEnv(EnvSealKeyID); sealKeyID != "" {
		plan.AttestedUnseal = true
		plan.Args = append(plan.Args, "-config="+AttestedUnsealConfigPath)
	}
	for _, flag := range flags {
		switch {
		case flag.name == "config":
			plan.IgnoredConfigs = append(plan.IgnoredConfigs, flag.value)
		case measuredServerKeeps[flag.name]:
			// One token, so that no value can be read as a flag or a command.
			plan.Args = append(plan.Args, "-"+flag.name+"="+flag.value)
		default:
			problems = append(problems, fmt.Sprintf("flag -%s is not allowed", flag.name))
		}
	}
	for _, name := range configPathVariables {
		if _, set := lookupEnv(name); set {
			problems = append(problems, fmt.Sprintf("%s is set: OpenBao would add the files it names", name))
		}
	}
	if len(problems) > 0 {
		return Plan{}, fmt.Errorf("`bao server` runs only the measured configuration %s (allowed: -config, "+
			"which is ignored, -log-level, -log-format): %s", MeasuredConfigPath, strings.Join(problems, "; "))
	}
	return plan, nil
}

type serverFlag struct {
	name, value string
}

// scanServerFlags parses the server's arguments the way Go's flag.FlagSet.Parse does: flags until "--" or the first
// argument that is not one. Anything OpenBao would refuse or not parse at all is a problem here.
func scanServerFlags(args []string) ([]serverFlag, []string) {
	var flags []serverFlag
	var problems []string
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if len(arg) < 2 || arg[0] != '-' || arg == "--" {
			problems = append(problems, fmt.Sprintf("argument %q: the server takes no arguments besides flags", arg))
			break
		}
		name := strings.TrimPrefix(arg[1:], "-")
		if name == "" || name[0] == '-' || name[0] == '=' {
			problems = append(problems, fmt.Sprintf("bad flag syntax %q", arg))
			break
		}
		name, value, hasValue := strings.Cut(name, "=")
		takesValue, known := serverFlagTakesValue[name]
		if !known {
			// Go's flag package stops at an unknown flag, so whether a value follows is unknowable: stop too.
			problems = append(problems, fmt.Sprintf("flag -%s is not a flag of `bao server`", name))
			break
		}
		switch {
		case !takesValue && !hasValue:
			value = "true"
		case !takesValue:
			if _, err := strconv.ParseBool(value); err != nil {
				problems = append(problems, fmt.Sprintf("flag -%s=%s: not a boolean", name, value))
				return flags, problems
			}
		case !hasValue:
			if i+1 == len(args) {
				problems = append(problems, fmt.Sprintf("flag -%s needs a value", name))
				return flags, problems
			}
			i++
			value = args[i]
		}
		flags = append(flags, serverFlag{name: name, value: value})
	}
	return flags, problems
}

// startsDevServer: the last value of each dev-mode flag as OpenBao would hold it, and no -recovery. The values were
// checked by scanServerFlags.
func startsDevServer(flags []serverFlag) bool {
	final := map[string]bool{}
	for _, flag := range flags {
		if !serverFlagTakesValue[flag.name] {
			final[flag.name], _ = strconv.ParseBool(flag.value)
		}
	}
	if final["recovery"] {
		return false
	}
	for _, name := range devModeFlags {
		if final[name] {
			return true
		}
	}
	return false
}
