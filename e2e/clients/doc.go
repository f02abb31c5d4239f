// Package clients holds the e2e suite's resolver clients that are not Go:
// resolve.js, Node.js's dns.Resolver (c-ares). The suite embeds the script;
// the tests here run it against a real DNS server.
package clients
