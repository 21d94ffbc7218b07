// Package tlsconf is the cluster's certificate authority: it creates a CA,
// issues node certificates signed by it, and turns the certificate, key and
// CA files a process is given into the *tls.Config of its servers (which
// require and verify a client certificate from the same CA: mutual TLS) and
// of its clients (which verify the server against the CA).
//
// Every certificate the CA issues is usable as a server and a client
// certificate: a zone node accepts its peers' connections and makes its
// own. A certificate names its holder's role in its Organizational Unit
// (RoleNode, RoleOperator, ...); Role reads it back, so a listener can tell
// a node from the operator's CLI.
//
// Keys are ECDSA P-256; files are PEM. Connections use TLS 1.3 only.
//
// # Caveats
//
// There is no revocation: a certificate stays valid until it expires or the
// cluster gets a new CA. Rotate by issuing a new CA and certificates and
// restarting every process.
package tlsconf
