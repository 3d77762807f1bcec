//! The `tcp://` handshake: a Noise `NNpsk0` handshake keyed by the shared
//! key (through the `snow` crate), then one confirmation, before any
//! message; its result is the session that encrypts every frame after it.
//!
//! ```text
//! client -> server  HELLO   = "PWTCP\x02" | flags | Noise message 1 (-> psk, e; payload: heartbeat)
//! server -> client  REPLY   = "PWTCP\x02" | flags | Noise message 2 (<- e, ee; payload: heartbeat)
//!                or REFUSAL = "PWTCP\x02" | 0x80  | reason
//! client -> server  CONFIRM = the first transport message: "procwire ready", encrypted
//! ```
//!
//! Each travels as one wire-format frame (4-byte big-endian length, then the
//! bytes) of at most [`MAX_HANDSHAKE_FRAME`] bytes. `flags` bit 0 says the
//! side has a key; `"PWTCP\x02" | flags` is also the Noise prologue, so a
//! rewritten flag fails the handshake. The heartbeat (4 bytes, big-endian
//! milliseconds, at most [`MAX_HEARTBEAT_MS`]) rides in the encrypted,
//! authenticated payloads: nobody on the path can change it. The key is
//! the pre-shared key of `NNpsk0` (its SHA-256, which is 32 bytes whatever
//! the key's length); a side without a key (loopback only) uses plain
//! `NN`: encrypted, but not authenticated.
//!
//! What it guarantees, with a key: nobody without the key completes a
//! handshake (a wrong key fails message 1 at the server, which refuses it
//! explicitly, or message 2 at the client), and the server queues a
//! connection only after its confirmation decrypts, so a replayed HELLO
//! never reaches `accept`. Every frame after it is encrypted with
//! ChaCha20-Poly1305 under keys from ephemeral Diffie-Hellman (forward
//! secrecy: a key found later does not open recorded sessions) with a
//! counter per direction, so a frame changed, dropped, reordered or
//! replayed ends the session with an integrity error. What it does not: a
//! weak key can be guessed offline from one recorded handshake (make keys
//! with `head -c 32 /dev/urandom`), and traffic analysis still sees sizes
//! and timing.
//!
//! This module is pure: bytes in, bytes out, so that it can be fuzzed.

use sha2::{Digest, Sha256};

/// The largest handshake frame either side accepts.
pub const MAX_HANDSHAKE_FRAME: usize = 256;
/// The longest heartbeat interval a peer may announce: one minute.
pub const MAX_HEARTBEAT_MS: u32 = 60_000;
const MAGIC: &[u8; 6] = b"PWTCP\x02";
const HAS_KEY: u8 = 1;
const REFUSAL: u8 = 0x80;
const WITH_KEY: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";
const WITHOUT_KEY: &str = "Noise_NN_25519_ChaChaPoly_BLAKE2s";
const CONFIRM: &[u8] = b"procwire ready";

/// Why a handshake failed.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refused {
    /// The bytes are not a procwire handshake (or another version of it).
    Garbled(&'static str),
    /// One side has a key and the other has none.
    KeyMismatch {
        /// Whether this side is the one with the key.
        ours: bool,
    },
    /// The peer does not know the key (its message does not decrypt), or
    /// the handshake was tampered with.
    WrongKey,
    /// The server said no, explicitly: the only refusal a client should
    /// not retry.
    ByServer(Reason),
}

/// What a server's explicit refusal says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// The client's key is not the server's.
    WrongKey,
    /// The server requires a key and the client has none.
    KeyRequired,
    /// The server has no key and the client has one.
    NoKeyHere,
}

impl Reason {
    fn byte(self) -> u8 {
        match self {
            Reason::WrongKey => 1,
            Reason::KeyRequired => 2,
            Reason::NoKeyHere => 3,
        }
    }

    fn from_byte(b: u8) -> Option<Reason> {
        Some(match b {
            1 => Reason::WrongKey,
            2 => Reason::KeyRequired,
            3 => Reason::NoKeyHere,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Garbled(why) => write!(f, "not a procwire tcp handshake: {why}"),
            Refused::KeyMismatch { ours: true } => f.write_str(
                "the peer has no key, this side has one (set PROCWIRE_KEY_FILE on both)",
            ),
            Refused::KeyMismatch { ours: false } => {
                f.write_str("the peer requires a key, this side has none (set PROCWIRE_KEY_FILE)")
            }
            Refused::WrongKey => f.write_str(
                "the peer does not know the key (a different key), or the handshake was \
                 tampered with",
            ),
            Refused::ByServer(Reason::WrongKey) => {
                f.write_str("the server refused: it has a different key")
            }
            Refused::ByServer(Reason::KeyRequired) => f.write_str(
                "the server refused: it requires a key and this side has none (set \
                 PROCWIRE_KEY_FILE)",
            ),
            Refused::ByServer(Reason::NoKeyHere) => f.write_str(
                "the server refused: it has no key and this side has one (set \
                 PROCWIRE_KEY_FILE on both)",
            ),
        }
    }
}

/// The session a completed handshake gives: the keys of both directions.
pub struct Session(pub(crate) snow::StatelessTransportState);

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Session(..)")
    }
}

/// A completed handshake.
#[derive(Debug)]
pub struct Accepted {
    /// The peer's heartbeat interval, in milliseconds (authenticated).
    pub peer_heartbeat_ms: u32,
    /// The keys for every frame after the handshake.
    pub session: Session,
}

fn prologue(flags: u8) -> [u8; 7] {
    let mut p = [0u8; 7];
    p[..6].copy_from_slice(MAGIC);
    p[6] = flags;
    p
}

fn psk(key: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"procwire tcp psk v2");
    h.update(key);
    h.finalize().into()
}

/// A fresh handshake state for one side.
fn start(key: Option<&[u8]>, initiator: bool) -> snow::HandshakeState {
    let flags = if key.is_some() { HAS_KEY } else { 0 };
    let prologue = prologue(flags);
    let psk = key.map(psk);
    let pattern = if key.is_some() { WITH_KEY } else { WITHOUT_KEY };
    let fixed = "a fixed, valid configuration";
    let mut b = snow::Builder::new(pattern.parse().expect(fixed))
        .prologue(&prologue)
        .expect(fixed);
    if let Some(psk) = &psk {
        b = b.psk(0, psk).expect(fixed);
    }
    let built = if initiator {
        b.build_initiator()
    } else {
        b.build_responder()
    };
    built.expect(fixed)
}

/// Splits `MAGIC | flags | rest`, checking magic and key agreement.
fn parse(bytes: &[u8], ours: bool) -> Result<&[u8], Refused> {
    let rest = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or(Refused::Garbled("wrong magic or version"))?;
    let (&flags, rest) = rest.split_first().ok_or(Refused::Garbled("no flags"))?;
    if flags == REFUSAL {
        let reason = rest
            .first()
            .copied()
            .and_then(Reason::from_byte)
            .ok_or(Refused::Garbled("an unknown refusal"))?;
        return Err(Refused::ByServer(reason));
    }
    if flags & !HAS_KEY != 0 {
        return Err(Refused::Garbled("unknown flags"));
    }
    if (flags & HAS_KEY != 0) != ours {
        return Err(Refused::KeyMismatch { ours });
    }
    Ok(rest)
}

fn heartbeat_of(payload: &[u8]) -> Result<u32, Refused> {
    let hb: [u8; 4] = payload
        .try_into()
        .map_err(|_| Refused::Garbled("the heartbeat is not 4 bytes"))?;
    match u32::from_be_bytes(hb) {
        0 => Err(Refused::Garbled("a zero heartbeat interval")),
        ms if ms > MAX_HEARTBEAT_MS => Err(Refused::Garbled("a heartbeat interval over 60 s")),
        ms => Ok(ms),
    }
}

fn message(flags: u8, noise: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + 1 + noise.len());
    out.extend_from_slice(MAGIC);
    out.push(flags);
    out.extend_from_slice(noise);
    out
}

/// Why a server did not answer a HELLO, and the REFUSAL to send back, if
/// the client deserves an explicit one.
pub type Rejected = (Refused, Option<Vec<u8>>);

/// The server's side: answers a HELLO with a REPLY (or a REFUSAL), then
/// checks the CONFIRM.
#[derive(Debug)]
pub struct Server {
    key: Option<Vec<u8>>,
    heartbeat_ms: u32,
}

/// A server that replied and waits for the client's confirmation.
pub struct Replied {
    transport: snow::StatelessTransportState,
    peer_heartbeat_ms: u32,
}

impl std::fmt::Debug for Replied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replied")
            .field("peer_heartbeat_ms", &self.peer_heartbeat_ms)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server with `key` (or none), announcing `heartbeat_ms`.
    pub fn new(key: Option<&[u8]>, heartbeat_ms: u32) -> Server {
        Server {
            key: key.map(<[u8]>::to_vec),
            heartbeat_ms: heartbeat_ms.clamp(1, MAX_HEARTBEAT_MS),
        }
    }

    /// Answers a client's HELLO: the REPLY to send and the state that
    /// checks the confirmation, or why not, with the REFUSAL to send (if
    /// the client deserves an explicit one: a wrong or missing key).
    pub fn answer(&self, hello: &[u8]) -> Result<(Vec<u8>, Replied), Rejected> {
        let ours = self.key.is_some();
        let refusal = |r: Reason| Some(message(REFUSAL, &[r.byte()]));
        let noise = match parse(hello, ours) {
            Ok(n) => n,
            Err(Refused::KeyMismatch { ours: true }) => {
                return Err((
                    Refused::KeyMismatch { ours: true },
                    refusal(Reason::KeyRequired),
                ));
            }
            Err(Refused::KeyMismatch { ours: false }) => {
                return Err((
                    Refused::KeyMismatch { ours: false },
                    refusal(Reason::NoKeyHere),
                ));
            }
            Err(e) => return Err((e, None)),
        };
        let mut hs = start(self.key.as_deref(), false);
        let mut payload = [0u8; MAX_HANDSHAKE_FRAME];
        let n = match hs.read_message(noise, &mut payload) {
            Ok(n) => n,
            // With a key, a message that does not decrypt is a wrong key
            // (or tampering): say so. Without one, it is garbage.
            Err(_) if ours => return Err((Refused::WrongKey, refusal(Reason::WrongKey))),
            Err(_) => return Err((Refused::Garbled("a message that does not decrypt"), None)),
        };
        let peer_heartbeat_ms = heartbeat_of(&payload[..n]).map_err(|e| (e, None))?;
        let mut reply = [0u8; MAX_HANDSHAKE_FRAME];
        let n = hs
            .write_message(&self.heartbeat_ms.to_be_bytes(), &mut reply)
            .map_err(|_| (Refused::Garbled("the handshake cannot go on"), None))?;
        let transport = hs
            .into_stateless_transport_mode()
            .map_err(|_| (Refused::Garbled("the handshake did not finish"), None))?;
        let flags = if ours { HAS_KEY } else { 0 };
        Ok((
            message(flags, &reply[..n]),
            Replied {
                transport,
                peer_heartbeat_ms,
            },
        ))
    }
}

impl Replied {
    /// Checks the client's CONFIRM: only then is the handshake done.
    pub fn confirm(self, confirm: &[u8]) -> Result<Accepted, Refused> {
        let mut out = [0u8; MAX_HANDSHAKE_FRAME];
        match self.transport.read_message(0, confirm, &mut out) {
            Ok(n) if &out[..n] == CONFIRM => Ok(Accepted {
                peer_heartbeat_ms: self.peer_heartbeat_ms,
                session: Session(self.transport),
            }),
            _ => Err(Refused::WrongKey),
        }
    }
}

/// The client's side: says HELLO, checks the REPLY, sends the CONFIRM.
pub struct Client {
    hs: snow::HandshakeState,
    ours: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("has_key", &self.ours)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client with `key` (or none), announcing `heartbeat_ms`; returns
    /// it with its HELLO.
    pub fn new(key: Option<&[u8]>, heartbeat_ms: u32) -> (Client, Vec<u8>) {
        let mut hs = start(key, true);
        let mut out = [0u8; MAX_HANDSHAKE_FRAME];
        let hb = heartbeat_ms.clamp(1, MAX_HEARTBEAT_MS).to_be_bytes();
        let n = hs
            .write_message(&hb, &mut out)
            .expect("the first message of a fresh handshake");
        let flags = if key.is_some() { HAS_KEY } else { 0 };
        (
            Client {
                hs,
                ours: key.is_some(),
            },
            message(flags, &out[..n]),
        )
    }

    /// Checks the server's REPLY: the session and the CONFIRM to send.
    pub fn finish(mut self, reply: &[u8]) -> Result<(Accepted, Vec<u8>), Refused> {
        let noise = parse(reply, self.ours)?;
        let mut payload = [0u8; MAX_HANDSHAKE_FRAME];
        let n = self
            .hs
            .read_message(noise, &mut payload)
            .map_err(|_| Refused::WrongKey)?;
        let peer_heartbeat_ms = heartbeat_of(&payload[..n])?;
        let transport = self
            .hs
            .into_stateless_transport_mode()
            .map_err(|_| Refused::Garbled("the handshake did not finish"))?;
        let mut confirm = [0u8; MAX_HANDSHAKE_FRAME];
        let n = transport
            .write_message(0, CONFIRM, &mut confirm)
            .map_err(|_| Refused::Garbled("the confirmation cannot be sealed"))?;
        Ok((
            Accepted {
                peer_heartbeat_ms,
                session: Session(transport),
            },
            confirm[..n].to_vec(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"a key of sixteen bytes or more";

    fn run(server_key: Option<&[u8]>, client_key: Option<&[u8]>) -> Result<(), Refused> {
        let s = Server::new(server_key, 1000);
        let (c, hello) = Client::new(client_key, 500);
        let (reply, replied) = s.answer(&hello).map_err(|(e, _)| e)?;
        let (ok, confirm) = c.finish(&reply)?;
        assert_eq!(ok.peer_heartbeat_ms, 1000);
        let accepted = replied.confirm(&confirm)?;
        assert_eq!(accepted.peer_heartbeat_ms, 500);
        // The two sessions talk: the client's nonce 1 is the server's 1.
        let mut ct = [0u8; 64];
        let n = ok.session.0.write_message(1, b"hi", &mut ct).unwrap();
        let mut pt = [0u8; 64];
        let m = accepted
            .session
            .0
            .read_message(1, &ct[..n], &mut pt)
            .unwrap();
        assert_eq!(&pt[..m], b"hi");
        Ok(())
    }

    #[test]
    fn matching_keys_pass_both_ways_and_the_sessions_match() {
        assert_eq!(run(Some(KEY), Some(KEY)), Ok(()));
        assert_eq!(run(None, None), Ok(()));
    }

    #[test]
    fn a_wrong_or_missing_key_is_refused_explicitly() {
        let s = Server::new(Some(KEY), 1000);
        let (_, hello) = Client::new(Some(b"another key, also long enough"), 1000);
        let (e, refusal) = s.answer(&hello).unwrap_err();
        assert_eq!(e, Refused::WrongKey);
        // The client reads the refusal as final.
        let (c, _) = Client::new(Some(b"another key, also long enough"), 1000);
        assert_eq!(
            c.finish(&refusal.unwrap()).unwrap_err(),
            Refused::ByServer(Reason::WrongKey)
        );
        assert_eq!(
            run(Some(KEY), None),
            Err(Refused::KeyMismatch { ours: true })
        );
        assert_eq!(
            run(None, Some(KEY)),
            Err(Refused::KeyMismatch { ours: false })
        );
    }

    #[test]
    fn a_server_without_the_key_is_caught_by_the_client() {
        let (c, hello) = Client::new(Some(KEY), 1000);
        // A fake server cannot read the hello; its own reply fails.
        let fake = Server::new(Some(b"the fake server's own key!!"), 1000);
        assert!(fake.answer(&hello).is_err());
        let (_, other_hello) = Client::new(Some(b"the fake server's own key!!"), 1000);
        let (reply, _) = fake.answer(&other_hello).unwrap();
        assert_eq!(c.finish(&reply).unwrap_err(), Refused::WrongKey);
    }

    #[test]
    fn a_flipped_flag_or_heartbeat_byte_fails_the_handshake() {
        let s = Server::new(Some(KEY), 1000);
        let (_, hello) = Client::new(Some(KEY), 1000);
        for at in 0..hello.len() {
            let mut bad = hello.clone();
            bad[at] ^= 0x01;
            assert!(s.answer(&bad).is_err(), "byte {at} flipped and accepted");
        }
    }

    #[test]
    fn a_replayed_hello_never_confirms() {
        let s = Server::new(Some(KEY), 1000);
        let (c, hello) = Client::new(Some(KEY), 1000);
        let (reply, replied) = s.answer(&hello).unwrap();
        let (_, confirm) = c.finish(&reply).unwrap();
        assert!(replied.confirm(&confirm).is_ok());
        // The same hello again: the server answers with a new ephemeral
        // key, and the old confirmation does not decrypt under it.
        let (_, replied) = s.answer(&hello).unwrap();
        assert_eq!(replied.confirm(&confirm).unwrap_err(), Refused::WrongKey);
    }

    #[test]
    fn heartbeats_are_capped_and_garbage_is_garbled_never_a_panic() {
        assert!(heartbeat_of(&(MAX_HEARTBEAT_MS + 1).to_be_bytes()).is_err());
        assert!(heartbeat_of(&0u32.to_be_bytes()).is_err());
        let s = Server::new(Some(KEY), 1000);
        for junk in [
            &b""[..],
            b"PWTCP",
            b"PWTCP\x02",
            b"PWTCP\x02\x01",
            b"PWTCP\x01\x01abc",
        ] {
            assert!(s.answer(junk).is_err());
            let (c, _) = Client::new(Some(KEY), 1000);
            assert!(c.finish(junk).is_err());
        }
    }
}
