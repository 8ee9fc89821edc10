module github.com/openbao/openbao

go 1.25
