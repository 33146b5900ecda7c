package main

import "golang.org/x/crypto/acme"

func newACMEClient(directory string) *acme.Client { return &acme.Client{DirectoryURL: directory} }
