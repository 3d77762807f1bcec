//! Endpoints by address: one syntax in the library and on the command line.
//!
//! | address | what | needs |
//! |---|---|---|
//! | `unix:PATH` | procwire framing on a Unix stream socket at `PATH` | nothing |
//! | `tcp://HOST:PORT` | procwire framing over TCP, authenticated, with heartbeats | feature `tcp` |
//! | `zmq+tcp://HOST:PORT` | ZeroMQ over TCP | feature `zmq` |
//! | `zmq+ipc://PATH` | ZeroMQ over a Unix socket | feature `zmq` |
//!
//! [`listen`] and [`connect`] give the same [`Duplex`] as a local channel, so
//! RPC ([`rpc`](crate::rpc)) and everything else built on channels works
//! across them unchanged. An empty host (`tcp://:7000`) means loopback.
//!
//! ```
//! # fn main() -> procwire::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let addr = format!("unix:{}", dir.path().join("s").display());
//! let listener = procwire::listen(&addr)?;
//! let client = std::thread::spawn(move || -> procwire::Result<String> {
//!     let ch = procwire::connect::<String, String>(&addr)?;
//!     ch.request("Heavy lifting".into())
//! });
//! let server = listener.accept::<String, String>()?;
//! let job = server.recv()?;
//! server.send(format!("{job} accomplished!"))?;
//! assert_eq!(client.join().unwrap()?, "Heavy lifting accomplished!");
//! # Ok(())
//! # }
//! ```
//!
//! # TCP
//!
//! `tcp://` connections are encrypted and authenticated end to end: a
//! Noise `NNpsk0` handshake (the `snow` crate) keyed by a shared key proves
//! that both sides know it before any message, and every frame after it
//! travels sealed with ChaCha20-Poly1305 under keys from ephemeral
//! Diffie-Hellman (forward secrecy), with a counter per direction, so a
//! frame changed, dropped, reordered or replayed on the way ends the
//! session with an integrity error. The key is the content of the file
//! named by `PROCWIRE_KEY_FILE` (one trailing newline ignored; the file
//! must not be readable by group or others) or the value of
//! `PROCWIRE_KEY` (which every process of the same user can read), at
//! least 16 bytes, never a command-line argument; or [`Net::key`]. Make
//! keys with `head -c 32 /dev/urandom`: a weak key can be guessed offline
//! from one recorded handshake. The wire format (section 11) says exactly
//! what is guaranteed.
//!
//! **Without a key, `tcp://` is refused** unless asked for with
//! [`Net::no_key`], and then on loopback only, where every local user can
//! connect: for local work, `unix:` endpoints are owner-only.
//!
//! Each side sends a heartbeat every [`Net::heartbeat`] interval; a peer
//! that sends nothing (it froze, vanished, or the network failed) ends the
//! connection with an error that says so, in `recv` and `send` alike. The
//! bound: a silent peer is reported within **three of its intervals plus
//! half a second** of scheduling delay (the watcher gives up after 2¾
//! intervals of silence and looks every quarter interval; the test suite
//! asserts this bound with a 200 ms heartbeat).
//!
//! # ZeroMQ
//!
//! At a `zmq+tcp://` or `zmq+ipc://` address, [`connect`] opens a DEALER
//! and [`listen`] binds a ROUTER whose every new peer (a DEALER, or a REQ
//! behind its delimiter) is a connection to [`accept`](Listener::accept),
//! its messages and the replies routed by its envelope; a peer in another
//! language speaks to it with its own DEALER or ROUTER (wire format
//! section 12). Each connection, and each listener for all its peers, runs
//! on a thread of its own that ends with it, carrying messages between the
//! socket and the duplex (two hand-overs a message:
//! `procwire::zmq` sockets are faster). A peer accepted
//! outlives the listener; a listener keeps at most 128 new peers waiting
//! for `accept`, and drops the messages of one more. Dropping a
//! connection (or the last of a listener and its peers) waits, up to 5 s,
//! until what was sent on it is written: a process may exit right after.
//!
//! ```
//! # fn main() -> procwire::Result<()> {
//! # #[cfg(feature = "zmq")] {
//! let listener = procwire::listen("zmq+tcp://127.0.0.1:0")?;
//! let ch = procwire::connect::<String, String>(&listener.endpoint().to_string())?;
//! ch.send("Heavy lifting".into())?; // a ROUTER hears of a peer when it speaks
//! let peer = listener.accept::<String, String>()?;
//! let job = peer.recv()?;
//! peer.send(format!("{job} accomplished!"))?;
//! assert_eq!(ch.recv()?, "Heavy lifting accomplished!");
//! # }
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind, Result};
use crate::{Duplex, UnixListener};

#[cfg(all(feature = "tcp", feature = "unstable"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "tcp", feature = "unstable"))))]
pub mod auth;
#[cfg(all(feature = "tcp", not(feature = "unstable")))]
pub(crate) mod auth;
#[cfg(feature = "tcp")]
pub(crate) mod handshakes;
mod net;
#[cfg(feature = "tcp")]
pub(crate) mod tcp;
pub use net::{Key, Net, Retry};
#[cfg(feature = "nats")]
pub(crate) use net::{secret_file, secret_file_whole};

/// A parsed address (see the [module docs](self)).
///
/// # Examples
///
/// ```
/// use procwire::Endpoint;
///
/// let e: Endpoint = "unix:/tmp/app.sock".parse()?;
/// assert_eq!(e.to_string(), "unix:/tmp/app.sock");
/// assert!("ftp://x".parse::<Endpoint>().is_err());
/// # Ok::<(), procwire::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Endpoint {
    /// `unix:PATH`
    Unix(PathBuf),
    /// `tcp://HOST:PORT`
    Tcp(HostPort),
    /// `zmq+tcp://HOST:PORT`
    ZmqTcp(HostPort),
    /// `zmq+ipc://PATH`
    ZmqIpc(PathBuf),
    /// `nats://HOST:PORT/SUBJECT`
    Nats(NatsAddr),
}

/// A NATS server and a subject on it (`nats://HOST:PORT/SUBJECT`).
///
/// # Examples
///
/// ```
/// let e: procwire::Endpoint = "nats://127.0.0.1:4222/jobs.resize".parse()?;
/// let procwire::Endpoint::Nats(n) = e else { unreachable!() };
/// assert_eq!((n.server.port, n.subject.as_str()), (4222, "jobs.resize"));
/// assert!("nats://127.0.0.1:4222/jobs.*".parse::<procwire::Endpoint>().is_err()); // no wildcards
/// # Ok::<(), procwire::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsAddr {
    /// The server (an empty host is loopback).
    pub server: HostPort,
    /// The subject: dot-separated tokens, without wildcards.
    pub subject: String,
}

impl NatsAddr {
    fn parse(rest: &str, whole: &str) -> Result<NatsAddr> {
        let bad = |why: &str| Error::new(ErrorKind::InvalidInput, format!("`{whole}`: {why}"));
        let (server, subject) = rest
            .split_once('/')
            .ok_or_else(|| bad("no /SUBJECT after the server"))?;
        let server = HostPort::parse(server, whole)?;
        let token_ok = |t: &str| {
            !t.is_empty()
                && !t
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '*' | '>'))
        };
        if !subject.split('.').all(token_ok) {
            return Err(bad(
                "a subject is dot-separated tokens, none empty, without spaces or the wildcards * and >",
            ));
        }
        Ok(NatsAddr {
            server,
            subject: subject.to_string(),
        })
    }
}

impl fmt::Display for NatsAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nats://{}/{}", self.server, self.subject)
    }
}

/// A host and a port; an empty host is loopback.
///
/// # Examples
///
/// ```
/// let e: procwire::Endpoint = "tcp://:7000".parse()?;
/// let procwire::Endpoint::Tcp(hp) = e else { unreachable!() };
/// assert_eq!((hp.host.as_str(), hp.port), ("127.0.0.1", 7000)); // empty host: loopback
/// # Ok::<(), procwire::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    /// A name, an IPv4 address, or an IPv6 address without brackets.
    pub host: String,
    /// The port (0 when listening: any free port).
    pub port: u16,
}

impl HostPort {
    fn parse(s: &str, whole: &str) -> Result<HostPort> {
        let bad = |why: &str| Error::new(ErrorKind::InvalidInput, format!("`{whole}`: {why}"));
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, p) = rest
                .split_once("]:")
                .ok_or_else(|| bad("an IPv6 address is written [ADDR]:PORT"))?;
            (h, p)
        } else {
            s.rsplit_once(':').ok_or_else(|| bad("no :PORT"))?
        };
        if host.contains(['/', ' ']) {
            return Err(bad("the host contains `/` or a space"));
        }
        let port = port
            .parse::<u16>()
            .map_err(|_| bad("the port is not a number from 0 to 65535"))?;
        let host = match host {
            "" => "127.0.0.1".to_string(),
            h => h.to_string(),
        };
        Ok(HostPort { host, port })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for Endpoint {
    type Err = Error;

    fn from_str(s: &str) -> Result<Endpoint> {
        let path = |p: &str| -> Result<PathBuf> {
            if p.is_empty() {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("`{s}`: the path is empty"),
                ));
            }
            Ok(PathBuf::from(p))
        };
        if let Some(p) = s.strip_prefix("unix:") {
            Ok(Endpoint::Unix(path(p)?))
        } else if let Some(hp) = s.strip_prefix("tcp://") {
            Ok(Endpoint::Tcp(HostPort::parse(hp, s)?))
        } else if let Some(hp) = s.strip_prefix("zmq+tcp://") {
            Ok(Endpoint::ZmqTcp(HostPort::parse(hp, s)?))
        } else if let Some(p) = s.strip_prefix("zmq+ipc://") {
            Ok(Endpoint::ZmqIpc(path(p)?))
        } else if let Some(rest) = s.strip_prefix("nats://") {
            Ok(Endpoint::Nats(NatsAddr::parse(rest, s)?))
        } else {
            Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "`{s}` is not an endpoint: write unix:PATH, tcp://HOST:PORT, \
                     zmq+tcp://HOST:PORT, zmq+ipc://PATH or nats://HOST:PORT/SUBJECT"
                ),
            ))
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Tcp(hp) => write!(f, "tcp://{hp}"),
            Endpoint::ZmqTcp(hp) => write!(f, "zmq+tcp://{hp}"),
            Endpoint::ZmqIpc(p) => write!(f, "zmq+ipc://{}", p.display()),
            Endpoint::Nats(n) => n.fmt(f),
        }
    }
}

/// A listening endpoint: [`accept`](Listener::accept) gives a channel per
/// peer that connects.
///
/// # Examples
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let addr = format!("unix:{}", dir.path().join("s").display());
/// let listener = procwire::listen(&addr)?;
/// let client = std::thread::spawn(move || {
///     let ch: procwire::Duplex<String, String> = procwire::connect(&addr)?;
///     ch.request("ping".into())
/// });
/// let server: procwire::Duplex<String, String> = listener.accept()?;
/// let ping = server.recv()?;
/// server.send(format!("{ping}: pong"))?;
/// assert_eq!(client.join().unwrap()?, "ping: pong");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Listener {
    inner: Inner,
    net: Net,
}

#[derive(Debug)]
pub(crate) enum Inner {
    Unix(UnixListener),
    #[cfg(feature = "tcp")]
    Tcp(tcp::TcpAcceptor),
    #[cfg(feature = "zmq")]
    Zmq(crate::remote::zmq::endpoints::Acceptor),
}

impl Listener {
    /// Waits for the next peer and gives a channel to it (on `tcp://`, one
    /// that has passed the handshake).
    pub fn accept<Out, In>(&self) -> Result<Duplex<Out, In>>
    where
        Out: Serialize + DeserializeOwned,
        In: Serialize + DeserializeOwned,
    {
        self.accept_deadline(None)
    }

    /// Like [`accept`](Listener::accept), for at most `timeout`
    /// ([`ErrorKind::Timeout`] then).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let listener = procwire::listen(&format!("unix:{}", dir.path().join("s").display()))?;
    /// let e = listener.accept_timeout::<(), ()>(Duration::from_millis(50)).unwrap_err();
    /// assert_eq!(e.kind(), procwire::ErrorKind::Timeout); // nobody came
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn accept_timeout<Out, In>(&self, timeout: Duration) -> Result<Duplex<Out, In>>
    where
        Out: Serialize + DeserializeOwned,
        In: Serialize + DeserializeOwned,
    {
        self.accept_deadline(crate::channel::gate::deadline_after(timeout))
    }

    fn accept_deadline<Out, In>(
        &self,
        deadline: Option<std::time::Instant>,
    ) -> Result<Duplex<Out, In>>
    where
        Out: Serialize + DeserializeOwned,
        In: Serialize + DeserializeOwned,
    {
        match &self.inner {
            Inner::Unix(l) => {
                if deadline.is_some() {
                    wait_for_peer(std::os::fd::AsFd::as_fd(l), deadline)?;
                }
                let s = l
                    .accept()
                    .map_err(|e| Error::io("accepting a connection", e))?;
                self.net.options.duplex_from(s)
            }
            #[cfg(feature = "tcp")]
            Inner::Tcp(t) => t.accept(&self.net, deadline),
            #[cfg(feature = "zmq")]
            Inner::Zmq(z) => z.accept(&self.net, deadline),
        }
    }

    /// What listens, and the settings of the channels it makes.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn into_parts(self) -> (Inner, Net) {
        (self.inner, self.net)
    }

    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn from_parts(inner: Inner, net: Net) -> Listener {
        Listener { inner, net }
    }

    /// The address peers connect to (with the port the system chose, if it
    /// was 0).
    pub fn endpoint(&self) -> Endpoint {
        match &self.inner {
            Inner::Unix(l) => Endpoint::Unix(l.path().to_path_buf()),
            #[cfg(feature = "tcp")]
            Inner::Tcp(t) => t.endpoint(),
            #[cfg(feature = "zmq")]
            Inner::Zmq(z) => z.endpoint(),
        }
    }
}

/// Waits until `fd` (a listener's, or what stands for one) is readable, or
/// `deadline` passes: [`ErrorKind::Timeout`] then.
pub(crate) fn wait_for_peer(
    fd: std::os::fd::BorrowedFd<'_>,
    deadline: Option<std::time::Instant>,
) -> Result<()> {
    let mut ready = [false];
    let fds = [(fd, crate::sys::Interest::Read)];
    let hit = crate::sys::poll(&fds, deadline, &mut ready)
        .map_err(|e| Error::io("waiting for a connection", e))?;
    if !hit {
        return Err(Error::new(
            ErrorKind::Timeout,
            "no peer connected before the deadline",
        ));
    }
    Ok(())
}

/// Why `addr` (`e`) gives no channel from `listen` or `connect`: NATS
/// subjects are opened with their own module, and a build may lack a
/// feature.
pub(crate) fn no_channel(addr: &str, e: &Endpoint) -> Error {
    if cfg!(feature = "nats") && matches!(e, Endpoint::Nats(_)) {
        return Error::new(
            ErrorKind::InvalidInput,
            format!(
                "`{addr}`: a NATS subject has no listen, accept or connect; open its ends \
                 with procwire::nats"
            ),
        );
    }
    let feature = match e {
        Endpoint::Tcp(_) => "tcp",
        Endpoint::Nats(_) => "nats",
        _ => "zmq",
    };
    Error::new(
        ErrorKind::Unsupported,
        format!("`{e}` needs procwire's `{feature}` feature, which this build lacks"),
    )
}

impl Net {
    /// Listens at `addr` (`unix:`, `tcp://`, `zmq+tcp://` or `zmq+ipc://`;
    /// see [`crate::endpoint`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let addr = format!("unix:{}", dir.path().join("s").display());
    /// let net = procwire::Net::new().codec(procwire::CodecKind::Json);
    /// let listener = net.listen(&addr)?;
    /// let client = std::thread::spawn(move || net.connect::<u32, u32>(&addr)?.request(20));
    /// let server = listener.accept_timeout::<u32, u32>(Duration::from_secs(5))?;
    /// server.send(server.recv()? + 1)?;
    /// assert_eq!(client.join().unwrap()?, 21);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn listen(&self, addr: &str) -> Result<Listener> {
        let endpoint: Endpoint = addr.parse()?;
        let inner = match &endpoint {
            Endpoint::Unix(p) => Inner::Unix(
                UnixListener::bind(p).map_err(|e| Error::io(&format!("listening at {addr}"), e))?,
            ),
            #[cfg(feature = "tcp")]
            Endpoint::Tcp(hp) => Inner::Tcp(tcp::TcpAcceptor::bind(hp, self)?),
            #[cfg(feature = "zmq")]
            Endpoint::ZmqTcp(_) | Endpoint::ZmqIpc(_) => {
                Inner::Zmq(crate::remote::zmq::endpoints::Acceptor::bind(addr, self)?)
            }
            e => return Err(no_channel(addr, e)),
        };
        Ok(Listener {
            inner,
            net: self.clone(),
        })
    }

    /// Connects to `addr` (`unix:`, `tcp://`, `zmq+tcp://` or `zmq+ipc://`;
    /// see [`crate::endpoint`]).
    pub fn connect<Out, In>(&self, addr: &str) -> Result<Duplex<Out, In>>
    where
        Out: Serialize + DeserializeOwned,
        In: Serialize + DeserializeOwned,
    {
        let endpoint: Endpoint = addr.parse()?;
        match &endpoint {
            Endpoint::Unix(p) => {
                let s = crate::Socket::connect(p)
                    .map_err(|e| Error::io(&format!("connecting to {addr}"), e))?;
                self.options.duplex_from(s)
            }
            #[cfg(feature = "tcp")]
            Endpoint::Tcp(hp) => tcp::connect_tcp(hp, self),
            #[cfg(feature = "zmq")]
            Endpoint::ZmqTcp(_) | Endpoint::ZmqIpc(_) => {
                crate::remote::zmq::endpoints::connect(addr, self)
            }
            e => Err(no_channel(addr, e)),
        }
    }
}

/// [`Net::listen`] with the default settings.
///
/// # Examples
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let listener = procwire::listen(&format!("unix:{}", dir.path().join("s").display()))?;
/// assert!(listener.endpoint().to_string().starts_with("unix:"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn listen(addr: &str) -> Result<Listener> {
    Net::new().listen(addr)
}

/// [`Net::connect`] with the default settings.
///
/// # Examples
///
/// ```
/// let e = procwire::connect::<(), ()>("unix:/nonexistent/socket").unwrap_err();
/// assert!(e.to_string().contains("/nonexistent/socket"), "{e}");
/// ```
///
/// # Examples
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let addr = format!("unix:{}", dir.path().join("s").display());
/// let listener = procwire::listen(&addr)?;
/// let ch = procwire::connect::<String, String>(&addr)?;
/// let server = listener.accept::<String, String>()?;
/// ch.send("hello".into())?;
/// assert_eq!(server.recv()?, "hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn connect<Out, In>(addr: &str) -> Result<Duplex<Out, In>>
where
    Out: Serialize + DeserializeOwned,
    In: Serialize + DeserializeOwned,
{
    Net::new().connect(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_print_back() {
        for a in [
            "unix:/tmp/x.sock",
            "tcp://127.0.0.1:7000",
            "tcp://[::1]:7000",
            "tcp://example.org:0",
            "zmq+tcp://127.0.0.1:5555",
            "zmq+ipc:///tmp/z.sock",
        ] {
            let e: Endpoint = a.parse().unwrap();
            assert_eq!(e.to_string(), a);
        }
        let e: Endpoint = "tcp://:7000".parse().unwrap();
        assert_eq!(e.to_string(), "tcp://127.0.0.1:7000");
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        for (a, says) in [
            ("http://x:1", "not an endpoint"),
            ("tcp://x", "no :PORT"),
            ("tcp://x:99999", "the port"),
            ("tcp://[::1:80", "[ADDR]:PORT"),
            ("unix:", "the path is empty"),
        ] {
            let e = a.parse::<Endpoint>().unwrap_err();
            assert!(e.to_string().contains(says), "{a}: {e}");
        }
    }

    #[test]
    fn a_key_is_at_least_16_bytes_and_never_printed() {
        assert!(Key::new(b"short".to_vec()).is_err());
        let k = Key::new(b"sixteen bytes!!!".to_vec()).unwrap();
        assert_eq!(format!("{k:?}"), "Key(16 bytes)");
    }
}
