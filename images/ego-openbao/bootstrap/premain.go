package bootstrap

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
)

// FileSystemRoot is the root of the enclave's file system: "/". Only TestOpenBaoHookBuilds and
// TestRefusesMarbleRunPremain change it (`go build -ldflags -X`), so that the hook binary they run on a developer's
// machine writes its measured files, and looks for MarbleRun's host mount, under a temporary directory. The image
// build passes no -X for it (tests/test_ego_openbao_image.py checks the Dockerfile's ldflags).
var FileSystemRoot = "/"

// MarbleRunHostFSPath is where EGo v1.9.0 mounts the host's whole file system when it runs MarbleRun's premain
// (ego/premain/core/core.go, marblerunHostFSDirectory); nothing else in EGo creates it.
const MarbleRunHostFSPath = "/edg/hostfs"

// EnclaveConfigEnvironment is every variable enclave.json's `env` names (TestEnclaveEnvironmentMatchesEnclaveJSON
// compares the two): the measured list of what may reach the enclave from the host, plus HOME, which enclave.json
// sets itself. README.md ("Environment from the host") says for each what it can influence and why that is safe.
var EnclaveConfigEnvironment = []string{
	"BAO_K8S_POD_NAME", "BAO_K8S_NAMESPACE", "BAO_API_ADDR", "BAO_CLUSTER_ADDR", "HOME",
	"BAO_LOG_LEVEL", "BAO_LOG_FORMAT",
	"VAULT_DEV_ROOT_TOKEN_ID", "VAULT_DEV_LISTEN_ADDRESS", "BAO_DEV_ROOT_TOKEN_ID",
	"CV_MAA_URL", "CV_LISTENER_NAMES", "OE_SIMULATION", "CV_STORAGE", "BAO_PG_CONNECTION_URL",
	"CV_SEAL_KEY_ID", "CV_SEAL_PREVIOUS_KEY_ID",
	"AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST",
	"KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT",
}

// EGoEnvironment is what EGo v1.9.0 itself puts into the environment of every genuine enclave, besides enclave.json:
//   - OE_IS_ENCLAVE=1: Edgeless RT injects it (src/ert/enclave/args.c, ert_init_args).
//   - EDG_CWD: ego-host sets it to its working directory (erthost.cpp), and EGo's premain copies every host variable
//     that starts with EDG_ into the enclave (ego/premain/core/core.go, addEnvVars). Its only reader is that premain
//     (the base of relative hostfs sources; enclave.json has none), so its value is harmless. Every other EDG_
//     variable is refused: none is needed, and EDG_EGO_PREMAIN/EDG_MARBLE_* steer the premain.
//   - EGOMAXTHREADS, GOMAXPROCS: EGo's enclave entry sets them from the enclave's thread count (src/enc.cpp,
//     _set_concurrency_limits) after the premain; nothing from the host can set them first.
var EGoEnvironment = []string{"OE_IS_ENCLAVE", "EDG_CWD", "EGOMAXTHREADS", "GOMAXPROCS"}

// marbleRunPrefixes are the variables of MarbleRun's premain: EDG_EGO_PREMAIN turns it on (value "1"), EDG_MARBLE_*
// tell it which coordinator to ask, and it sets MARBLE_* from the coordinator's answer. Present at all means someone
// tried: refused whatever the value.
var marbleRunPrefixes = []string{"EDG_EGO_PREMAIN", "EDG_MARBLE_", "MARBLE_"}

// RefuseHostSteering is the first thing the hook runs, before the launch plan, the key release, the listener and
// OpenBao. EGo v1.9.0 runs MarbleRun's premain whenever the host sets EDG_EGO_PREMAIN=1: it mounts the host's file
// system at /edg/hostfs and takes files (over the measured configuration), environment and arguments from a
// coordinator it does not verify. That code has already run when this is called, so this cannot undo it; it refuses
// to go on, which keeps every secret out of such an enclave (the key release and the listener come later).
//
// It reports, by name only (values can be secrets), every MarbleRun variable, every variable neither enclave.json nor
// EGo puts there (EnclaveConfigEnvironment, EGoEnvironment), and /edg/hostfs if it exists under root or cannot be
// ruled out. environ is os.Environ(); stat is os.Stat.
func RefuseHostSteering(environ []string, root string, stat func(string) (fs.FileInfo, error)) error {
	var problems []string
	var unexpected []string
	for _, entry := range environ {
		name, _, _ := strings.Cut(entry, "=")
		switch {
		case slices.ContainsFunc(marbleRunPrefixes, func(prefix string) bool { return strings.HasPrefix(name, prefix) }):
			problems = append(problems, fmt.Sprintf("%s is set: EGo ran (or was asked to run) MarbleRun's premain, "+
				"which replaces the measured configuration with an unverified coordinator's", name))
		case !slices.Contains(EnclaveConfigEnvironment, name) && !slices.Contains(EGoEnvironment, name):
			unexpected = append(unexpected, name)
		}
	}
	if len(unexpected) > 0 {
		slices.Sort(unexpected)
		problems = append(problems, fmt.Sprintf("%s: not forwarded by the measured enclave.json, so something other than "+
			"EGo's launch put it there", strings.Join(slices.Compact(unexpected), ", ")))
	}
	hostFS := filepath.Join(root, MarbleRunHostFSPath)
	if _, err := stat(hostFS); err == nil {
		problems = append(problems, fmt.Sprintf("%s exists: MarbleRun's premain mounted the host's file system", MarbleRunHostFSPath))
	} else if !errors.Is(err, fs.ErrNotExist) {
		problems = append(problems, fmt.Sprintf("cannot rule out %s (MarbleRun's mount of the host's file system): %v",
			MarbleRunHostFSPath, err))
	}
	if len(problems) > 0 {
		return fmt.Errorf("the enclave was started in a way its measured configuration does not allow: %s",
			strings.Join(problems, "; "))
	}
	return nil
}
