//! `rediss://` against a real TLS server, with a CA made for the test.

mod support;

use std::path::Path;
use std::process::Command;

use kestrel_client::{ErrorKind, Kestrel};
use kestrel_testbed::{free_port, Server};
use support::{block_on, config};

/// A CA and a server certificate for 127.0.0.1, made with the openssl tool in `dir`.
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl tool is needed for the TLS test");
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
    };
    openssl(
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        ]
        .into_iter()
        .chain(["/CN=kestrel-test-ca", "-keyout", "ca.key", "-out", "ca.crt"])
        .collect::<Vec<_>>(),
    );
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
    ]);
}

#[test]
fn rediss_urls_connect_through_tls() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let tls_port = free_port();
    let file = |name: &str| dir.path().join(name).display().to_string();
    let server = Server::builder()
        .module(&["shard-id", "6"])
        .config(format!("tls-port {tls_port}"))
        .config(format!("tls-cert-file {}", file("server.crt")))
        .config(format!("tls-key-file {}", file("server.key")))
        .config(format!("tls-ca-cert-file {}", file("ca.crt")))
        .config("tls-auth-clients no")
        .start();
    let ca = std::fs::read(dir.path().join("ca.crt")).unwrap();
    let url = format!("rediss://127.0.0.1:{tls_port}");

    let trusted = block_on(Kestrel::connect(
        config().url(&url).tls_root_certificate(ca).build().unwrap(),
    ))
    .unwrap();
    let untrusted = block_on(Kestrel::connect(config().url(&url).build().unwrap()));

    assert_eq!(block_on(trusted.get_id()).unwrap().shard_id(), 6);
    assert!(untrusted.is_err());
    assert_ne!(
        untrusted.err().map(|error| error.kind()),
        Some(ErrorKind::Auth)
    );
    drop(server);
}
