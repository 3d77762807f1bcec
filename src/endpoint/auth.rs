//! The `tcp://` handshake: a shared-key challenge and response in both
//! directions, before any message.
//!
//! ```text
//! server -> client  HELLO  = "PWTCP\x01" | flags | heartbeat | server nonce (32)
//! client -> server  ANSWER = "PWTCP\x01" | flags | heartbeat | client nonce (32)
//!                            | HMAC(key, "procwire client" | server nonce | client nonce)
//! server -> client  PROOF  = HMAC(key, "procwire server" | client nonce | server nonce)
//! ```
//!
//! Each travels as one wire-format frame (4-byte big-endian length, then the
//! bytes) of at most [`MAX_HANDSHAKE_FRAME`] bytes. `flags` bit 0 says the
//! side has a key; `heartbeat` (4 bytes, big-endian) is the sender's
//! heartbeat interval in milliseconds, by which the other side judges its
//! silence; both must agree (a keyless handshake, allowed on loopback
//! only, carries no MACs). The server's nonce is fresh for every
//! connection, so a recorded answer is worthless on the next one; the MACs
//! are compared in constant time (`Mac::verify_slice`). This module is pure:
//! bytes in, bytes out, so that it can be fuzzed.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The largest handshake frame either side accepts.
pub const MAX_HANDSHAKE_FRAME: usize = 256;
const MAGIC: &[u8; 6] = b"PWTCP\x01";
const NONCE: usize = 32;
const MAC: usize = 32;
const HAS_KEY: u8 = 1;

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
    /// The peer does not know the key (or replayed an old answer).
    BadMac,
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
            Refused::BadMac => {
                f.write_str("the peer's proof of the key is wrong (a different key, or a replay)")
            }
        }
    }
}

fn mac(key: &[u8], label: &[u8], a: &[u8], b: &[u8]) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(label);
    m.update(a);
    m.update(b);
    m
}

fn header(key: Option<&[u8]>, heartbeat_ms: u32, nonce: &[u8; NONCE]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + 5 + NONCE + MAC);
    out.extend_from_slice(MAGIC);
    out.push(if key.is_some() { HAS_KEY } else { 0 });
    out.extend_from_slice(&heartbeat_ms.to_be_bytes());
    out.extend_from_slice(nonce);
    out
}

/// What a parsed HELLO or ANSWER says besides its MAC.
struct Parsed<'a> {
    heartbeat_ms: u32,
    nonce: [u8; NONCE],
    rest: &'a [u8],
}

/// Splits `MAGIC | flags | heartbeat | nonce | rest`, checking magic and
/// key agreement.
fn parse(bytes: &[u8], ours: bool) -> Result<Parsed<'_>, Refused> {
    let rest = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or(Refused::Garbled("wrong magic or version"))?;
    let (&flags, rest) = rest.split_first().ok_or(Refused::Garbled("no flags"))?;
    if flags & !HAS_KEY != 0 {
        return Err(Refused::Garbled("unknown flags"));
    }
    if (flags & HAS_KEY != 0) != ours {
        return Err(Refused::KeyMismatch { ours });
    }
    if rest.len() < 4 + NONCE {
        return Err(Refused::Garbled("too short"));
    }
    let (hb, rest) = rest.split_at(4);
    let heartbeat_ms = u32::from_be_bytes(hb.try_into().expect("split at 4"));
    if heartbeat_ms == 0 {
        return Err(Refused::Garbled("a zero heartbeat interval"));
    }
    let (nonce, rest) = rest.split_at(NONCE);
    Ok(Parsed {
        heartbeat_ms,
        nonce: nonce.try_into().expect("split at NONCE"),
        rest,
    })
}

/// The server's side: says HELLO, checks the ANSWER, gives its PROOF.
#[derive(Debug)]
pub struct Server {
    key: Option<Vec<u8>>,
    nonce: [u8; NONCE],
    heartbeat_ms: u32,
}

/// A handshake that succeeded: what to send back (the server's PROOF; the
/// client has nothing more to send) and the peer's heartbeat interval.
#[derive(Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The PROOF frame's payload (empty for a client).
    pub proof: Vec<u8>,
    /// The peer's heartbeat interval in milliseconds.
    pub peer_heartbeat_ms: u32,
}

impl Server {
    /// A server with `key` (or none), a fresh random `nonce`, and its
    /// heartbeat interval.
    pub fn new(key: Option<&[u8]>, nonce: [u8; NONCE], heartbeat_ms: u32) -> Server {
        Server {
            key: key.map(<[u8]>::to_vec),
            nonce,
            heartbeat_ms,
        }
    }

    /// The HELLO frame's payload.
    pub fn hello(&self) -> Vec<u8> {
        header(self.key.as_deref(), self.heartbeat_ms, &self.nonce)
    }

    /// Checks the client's ANSWER; on success, the PROOF to send back.
    pub fn check(&self, answer: &[u8]) -> Result<Accepted, Refused> {
        let p = parse(answer, self.key.is_some())?;
        let proof = match &self.key {
            None if p.rest.is_empty() => Vec::new(),
            None => return Err(Refused::Garbled("trailing bytes")),
            Some(_) if p.rest.len() != MAC => return Err(Refused::Garbled("wrong MAC length")),
            Some(key) => {
                mac(key, b"procwire client", &self.nonce, &p.nonce)
                    .verify_slice(p.rest)
                    .map_err(|_| Refused::BadMac)?;
                mac(key, b"procwire server", &p.nonce, &self.nonce)
                    .finalize()
                    .into_bytes()
                    .to_vec()
            }
        };
        Ok(Accepted {
            proof,
            peer_heartbeat_ms: p.heartbeat_ms,
        })
    }
}

/// The client's side: answers HELLO, checks the PROOF.
#[derive(Debug)]
pub struct Client {
    key: Option<Vec<u8>>,
    nonce: [u8; NONCE],
    heartbeat_ms: u32,
    server: Option<([u8; NONCE], u32)>,
}

impl Client {
    /// A client with `key` (or none), a fresh random `nonce`, and its
    /// heartbeat interval.
    pub fn new(key: Option<&[u8]>, nonce: [u8; NONCE], heartbeat_ms: u32) -> Client {
        Client {
            key: key.map(<[u8]>::to_vec),
            nonce,
            heartbeat_ms,
            server: None,
        }
    }

    /// The ANSWER to the server's HELLO.
    pub fn answer(&mut self, hello: &[u8]) -> Result<Vec<u8>, Refused> {
        let p = parse(hello, self.key.is_some())?;
        if !p.rest.is_empty() {
            return Err(Refused::Garbled("trailing bytes"));
        }
        let server_nonce = p.nonce;
        self.server = Some((server_nonce, p.heartbeat_ms));
        let mut out = header(self.key.as_deref(), self.heartbeat_ms, &self.nonce);
        if let Some(key) = &self.key {
            let m = mac(key, b"procwire client", &server_nonce, &self.nonce);
            out.extend_from_slice(&m.finalize().into_bytes());
        }
        Ok(out)
    }

    /// Checks the server's PROOF (after [`answer`](Client::answer)).
    pub fn verify(&self, proof: &[u8]) -> Result<Accepted, Refused> {
        let (server_nonce, peer_heartbeat_ms) = self
            .server
            .ok_or(Refused::Garbled("a proof before the hello"))?;
        match &self.key {
            None if proof.is_empty() => {}
            None => return Err(Refused::Garbled("a proof without a key")),
            Some(key) => mac(key, b"procwire server", &self.nonce, &server_nonce)
                .verify_slice(proof)
                .map_err(|_| Refused::BadMac)?,
        }
        Ok(Accepted {
            proof: Vec::new(),
            peer_heartbeat_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef-a-test-key";

    fn run(server_key: Option<&[u8]>, client_key: Option<&[u8]>) -> Result<(), Refused> {
        let s = Server::new(server_key, [1; 32], 1000);
        let mut c = Client::new(client_key, [2; 32], 250);
        let answer = c.answer(&s.hello())?;
        let ok = s.check(&answer)?;
        assert_eq!(ok.peer_heartbeat_ms, 250);
        assert_eq!(c.verify(&ok.proof)?.peer_heartbeat_ms, 1000);
        Ok(())
    }

    #[test]
    fn matching_keys_pass_both_ways() {
        assert_eq!(run(Some(KEY), Some(KEY)), Ok(()));
        assert_eq!(run(None, None), Ok(()));
    }

    #[test]
    fn a_wrong_or_missing_key_is_refused() {
        assert_eq!(
            run(Some(KEY), Some(b"another key of 16+ bytes")),
            Err(Refused::BadMac)
        );
        assert_eq!(
            run(Some(KEY), None),
            Err(Refused::KeyMismatch { ours: false })
        );
        assert_eq!(
            run(None, Some(KEY)),
            Err(Refused::KeyMismatch { ours: true })
        );
    }

    #[test]
    fn a_replayed_answer_fails_against_a_fresh_nonce() {
        let first = Server::new(Some(KEY), [1; 32], 1000);
        let mut c = Client::new(Some(KEY), [2; 32], 1000);
        let recorded = c.answer(&first.hello()).unwrap();
        assert!(first.check(&recorded).is_ok());
        let second = Server::new(Some(KEY), [3; 32], 1000);
        assert_eq!(second.check(&recorded), Err(Refused::BadMac));
    }

    #[test]
    fn a_server_that_does_not_know_the_key_is_caught_by_the_client() {
        let s = Server::new(Some(b"the wrong key, 16+ bytes"), [1; 32], 1000);
        let mut c = Client::new(Some(KEY), [2; 32], 1000);
        let answer = c.answer(&s.hello()).unwrap();
        // The impostor cannot check the answer; whatever it sends as proof
        // fails (here: a proof made with its own key).
        let fake = mac(
            b"the wrong key, 16+ bytes",
            b"procwire server",
            &[2; 32],
            &[1; 32],
        )
        .finalize()
        .into_bytes();
        assert!(s.check(&answer).is_err());
        assert_eq!(c.verify(&fake), Err(Refused::BadMac));
    }

    #[test]
    fn garbage_is_garbled_never_a_panic() {
        let s = Server::new(Some(KEY), [1; 32], 1000);
        let mut c = Client::new(Some(KEY), [2; 32], 1000);
        let mut x: u32 = 7;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            assert!(s.check(&bytes).is_err());
            assert!(c.answer(&bytes).is_err());
            assert!(c.verify(&bytes).is_err());
        }
    }
}
