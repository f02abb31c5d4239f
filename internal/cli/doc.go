// Package cli is the lrpdns command: `lrpdns controller` runs the
// controller of package lrp; `lrpdns verify` checks Hubble flows. It parses
// flags and wires dependencies; the logic lives in the packages it calls.
package cli
