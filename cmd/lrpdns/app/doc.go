// Package app is the lrpdns command: `lrpdns controller` runs the
// controller of package lrp; `lrpdns verify` checks Hubble flows; `lrpdns probe` is the e2e suites' DNS client. It parses
// flags and wires dependencies; the logic lives in the packages it calls.
package app
