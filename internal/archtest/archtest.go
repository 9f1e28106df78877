// Package archtest holds tests of fmgate's structure: the rules docs/architecture.md states
// that the compiler does not enforce.
package archtest
