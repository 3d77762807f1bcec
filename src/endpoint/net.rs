//! Settings of network endpoints: the key, retries, heartbeats and
//! deadlines ([`Net`]).

use super::*;
use crate::Options;
use crate::channel::gate::LONGEST;

/// A shared key for `tcp://` authentication: at least 16 bytes. Its
/// `Debug` output never shows the bytes.
///
/// # Examples
///
/// ```
/// let key = procwire::Key::new(vec![7u8; 32])?; // use `head -c 32 /dev/urandom`
/// let _net = procwire::Net::new().key(key);
/// assert!(procwire::Key::new(b"short".to_vec()).is_err());
/// # Ok::<(), procwire::Error>(())
/// ```
#[derive(Clone)]
pub struct Key(Arc<[u8]>);

/// The bytes of the secret file `file` that the variable `var` names (one
/// trailing newline ignored), refused if its group or others may read it,
/// with the fix in the message (as ssh refuses a loose private key).
pub(crate) fn secret_file(var: &str, file: &std::ffi::OsStr) -> Result<Vec<u8>> {
    let mut bytes = secret_file_whole(var, file)?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    Ok(bytes)
}

/// [`secret_file`] as it is, its last newline kept (a NATS `.creds` file's
/// parser wants the newline that ends its last line).
pub(crate) fn secret_file_whole(var: &str, file: &std::ffi::OsStr) -> Result<Vec<u8>> {
    use std::os::unix::fs::PermissionsExt;
    let shown = file.to_string_lossy();
    let meta =
        std::fs::metadata(file).map_err(|e| Error::io(&format!("reading {var} ({shown})"), e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::new(
            ErrorKind::Refused,
            format!(
                "{var} ({shown}) may be read by others (mode {mode:03o}): run `chmod 600 {shown}`"
            ),
        ));
    }
    std::fs::read(file).map_err(|e| Error::io(&format!("reading {var} ({shown})"), e))
}

impl Key {
    /// The least a key may hold.
    pub const MIN_LEN: usize = 16;

    /// A key of these bytes (at least [`MIN_LEN`](Key::MIN_LEN)).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Key> {
        let bytes = bytes.into();
        if bytes.len() < Key::MIN_LEN {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "a key must hold at least {} bytes; this one holds {}",
                    Key::MIN_LEN,
                    bytes.len()
                ),
            ));
        }
        Ok(Key(bytes.into()))
    }

    /// The key from the environment: the bytes of the file named by
    /// `PROCWIRE_KEY_FILE` (one trailing newline ignored), else the value of
    /// `PROCWIRE_KEY`; `Ok(None)` if neither is set.
    ///
    /// A key file that its group or others may read is refused, with the
    /// fix in the message (as ssh refuses a loose private key). Prefer the
    /// file: the value of `PROCWIRE_KEY` can be read by every process of
    /// the same user (`/proc/PID/environ`).
    ///
    /// # Examples
    ///
    /// ```
    /// // SAFETY (of the example): nothing else reads the environment meanwhile.
    /// unsafe { std::env::set_var("PROCWIRE_KEY", "sixteen or more bytes") };
    /// let key = procwire::Key::from_env()?.expect("PROCWIRE_KEY is set");
    /// assert_eq!(format!("{key:?}"), "Key(21 bytes)"); // never the bytes
    /// unsafe { std::env::remove_var("PROCWIRE_KEY") };
    /// # Ok::<(), procwire::Error>(())
    /// ```
    pub fn from_env() -> Result<Option<Key>> {
        if let Some(file) = std::env::var_os("PROCWIRE_KEY_FILE") {
            let bytes = secret_file("PROCWIRE_KEY_FILE", &file)?;
            return Key::new(bytes)
                .map(Some)
                .map_err(|e| e.because("in PROCWIRE_KEY_FILE"));
        }
        match std::env::var_os("PROCWIRE_KEY") {
            Some(v) => Key::new(std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()))
                .map(Some)
                .map_err(|e| e.because("in PROCWIRE_KEY")),
            None => Ok(None),
        }
    }

    #[cfg_attr(not(feature = "tcp"), allow(dead_code))]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// How many bytes the key holds. Fewer than [`STRONG_LEN`](Key::STRONG_LEN)
    /// can be guessed offline from one recorded handshake if they are not
    /// random: make keys with `head -c 32 /dev/urandom`.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the key is empty (never: a key holds at least
    /// [`MIN_LEN`](Key::MIN_LEN) bytes).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The length of a key that resists guessing: 32 random bytes.
    pub const STRONG_LEN: usize = 32;
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({} bytes)", self.0.len())
    }
}

/// How a client retries a connection that fails to open (refused, or
/// timed out); a failed authentication is never retried.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let retry = procwire::Retry { attempts: 5, backoff: Duration::from_millis(50) };
/// let net = procwire::Net::new().retry(retry);
/// # let _ = net;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all (1: no retry).
    pub attempts: u32,
    /// The wait before the second attempt; it doubles each time, up to 5 s.
    pub backoff: Duration,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            attempts: 1,
            backoff: Duration::from_millis(100),
        }
    }
}

/// Endpoints by address, with their settings: the key, retries,
/// heartbeats, deadlines, and the channel [`Options`] of the channels they
/// give. [`listen`](crate::listen) and [`connect`](crate::connect) are
/// `Net::new().listen(…)` and `Net::new().connect(…)`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let net = procwire::Net::new()
///     .heartbeat(Duration::from_millis(500))
///     .connect_timeout(Duration::from_secs(2));
/// # let _ = net;
/// ```
#[derive(Clone, Debug)]
pub struct Net {
    pub(crate) heartbeat: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) key: KeyChoice,
    pub(crate) retry: Retry,
    pub(crate) public_zmq: bool,
    pub(crate) options: Options,
}

#[derive(Clone, Debug)]
pub(crate) enum KeyChoice {
    /// `Key::from_env()` when the endpoint is opened; none there is an
    /// error (keyless must be asked for: `Net::no_key`).
    FromEnv,
    Given(Key),
    None,
}

impl Default for Net {
    fn default() -> Net {
        Net {
            heartbeat: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            key: KeyChoice::FromEnv,
            retry: Retry::default(),
            public_zmq: false,
            options: Options::new(),
        }
    }
}

impl Net {
    /// Heartbeats every second, 5 s to connect and 5 s to authenticate,
    /// the key from the environment, no retries, the default [`Options`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let net = procwire::Net::new().no_key().connect_timeout(Duration::from_millis(200));
    /// // Nothing listens there: refused at once, or given up after 200 ms.
    /// assert!(net.connect::<(), ()>("tcp://127.0.0.1:1").is_err());
    /// ```
    pub fn new() -> Net {
        Net::default()
    }

    crate::channel::channel_settings!(Net);

    /// How often each side of a `tcp://` connection says it is alive; a peer
    /// silent for three intervals is gone.
    pub fn heartbeat(mut self, every: Duration) -> Net {
        self.heartbeat = every.clamp(Duration::from_millis(1), LONGEST);
        self
    }

    /// How long a client waits for TCP to connect.
    pub fn connect_timeout(mut self, t: Duration) -> Net {
        self.connect_timeout = t.min(LONGEST);
        self
    }

    /// How long either side waits for the peer's part of the handshake.
    pub fn handshake_timeout(mut self, t: Duration) -> Net {
        self.handshake_timeout = t.min(LONGEST);
        self
    }

    /// This key instead of the environment's.
    pub fn key(mut self, key: Key) -> Net {
        self.key = KeyChoice::Given(key);
        self
    }

    /// No key, whatever the environment says: loopback only, and open to
    /// every local user who can connect (for local use, `unix:` endpoints
    /// are owner-only). Without a key or this, opening a `tcp://` endpoint
    /// is an error that says so.
    pub fn no_key(mut self) -> Net {
        self.key = KeyChoice::None;
        self
    }

    /// Retry failed connection attempts.
    pub fn retry(mut self, retry: Retry) -> Net {
        self.retry = retry;
        self
    }

    /// Lets a ZeroMQ listener bind to an address other than loopback. The
    /// `zeromq` crate reserves memory for whatever frame length a peer
    /// declares, so anyone who can reach the port can make this process
    /// allocate without bound; only force this on a network you trust.
    pub fn force_public_zmq(mut self) -> Net {
        self.public_zmq = true;
        self
    }

    /// Whether the key is read from the environment (maybe a file).
    #[cfg(all(feature = "tcp", feature = "tokio"))]
    pub(crate) fn key_from_env(&self) -> bool {
        matches!(self.key, KeyChoice::FromEnv)
    }

    #[cfg_attr(not(feature = "tcp"), allow(dead_code))]
    pub(crate) fn resolve_key(&self) -> Result<Option<Key>> {
        match &self.key {
            KeyChoice::FromEnv => match Key::from_env()? {
                Some(k) => Ok(Some(k)),
                None => Err(Error::new(
                    ErrorKind::Refused,
                    "no key: set PROCWIRE_KEY_FILE (a file of `head -c 32 /dev/urandom`, mode \
                     600) on both sides; or, on loopback only, go keyless on purpose with \
                     Net::no_key (`--no-key`), knowing that every local user can then connect \
                     (unix: endpoints are owner-only)",
                )),
            },
            KeyChoice::Given(k) => Ok(Some(k.clone())),
            KeyChoice::None => Ok(None),
        }
    }
}
