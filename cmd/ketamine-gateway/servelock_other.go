//go:build !unix

package main

// lockServe is the unix lock of one serve per SQLite file; none here.
func lockServe(string) (func(), error) { return func() {}, nil }
