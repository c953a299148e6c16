// Package apidocs holds the test that runs every curl example of docs/api.md against real users,
// products, orders and payments processes, behind a stand-in for the gateway's /api routes. It
// has no other code.
package apidocs
