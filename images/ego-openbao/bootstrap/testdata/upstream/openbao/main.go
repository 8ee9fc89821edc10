// Stand-in for openbao/openbao v2.6.2 main.go (package main at the repository root).
package main

import (
	"os"

	"github.com/openbao/openbao/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
