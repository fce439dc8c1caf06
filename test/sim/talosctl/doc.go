// Package talosctl holds no code: its test drives simulated nodes with the real talosctl (the
// release the project targets, built by npm run setup), so the simulator is checked by a client
// nobody on this project wrote.
package talosctl
