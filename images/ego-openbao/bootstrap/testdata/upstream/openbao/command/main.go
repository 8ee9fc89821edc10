// Package command stands in for openbao/openbao v2.6.2 command/main.go: Run(args []string) int.
package command

import (
	"fmt"
	"os"
	"strings"

	"github.com/openbao/openbao/command/server"
	"github.com/openbao/openbao/helper/configutil"
)

// Run prints which command ran and, for `server`, the seal variables it finds in its environment (what OpenBao's
// setSeal and static seal would read) and opens the configured TCP listener through the factory map.
func Run(args []string) int {
	fmt.Printf("openbao stand-in ran %q\n", args)
	if len(args) > 0 && args[0] == "server" {
		var seal []string
		for _, variable := range os.Environ() {
			if strings.Contains(variable, "SEAL") {
				seal = append(seal, variable)
			}
		}
		fmt.Printf("seal environment: %q\n", seal)
	}
	if len(args) > 0 && args[0] == "server" {
		_, _, _, err := server.BuiltinListeners["tcp"](&configutil.Listener{Type: "tcp"}, nil, nil)
		fmt.Printf("tcp listener: %v\n", err)
	}
	return 0
}
