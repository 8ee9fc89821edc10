module github.com/edgelesssys/ego

go 1.25
