module github.com/tardis-runtime/tardis

go 1.26.8

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/checkpoint-restore/go-criu/v7 v7.2.0
	github.com/google/go-cmp v0.7.0
	github.com/rogpeppe/go-internal v1.16.0
	golang.org/x/sys v0.50.0
	google.golang.org/protobuf v1.34.2
)

require golang.org/x/tools v0.35.0 // indirect
