//! A connection to a NATS server: the credentials from the environment,
//! the errors in procwire's terms, and the hold on the background runtime.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::background;
use crate::endpoint::{Endpoint, NatsAddr, secret_file, secret_file_whole};
use crate::error::{Error, ErrorKind, Result};
use crate::{CodecKind, Net};

/// The variables that name the credentials (never a command-line
/// argument): a `.creds` file (a user JWT and its nkey seed), a file that
/// holds a token, or a file that holds `USER:PASSWORD`; and a CA
/// certificate for a server whose TLS certificate the system's roots do
/// not sign.
pub const CREDS_FILE: &str = "PROCWIRE_NATS_CREDS";
/// See [`CREDS_FILE`].
pub const TOKEN_FILE: &str = "PROCWIRE_NATS_TOKEN_FILE";
/// See [`CREDS_FILE`].
pub const USER_FILE: &str = "PROCWIRE_NATS_USER_FILE";
/// See [`CREDS_FILE`].
pub const CA_FILE: &str = "PROCWIRE_NATS_CA_FILE";

/// The connection options the environment asks for.
fn options() -> Result<async_nats::ConnectOptions> {
    let mut opts = async_nats::ConnectOptions::new().name("procwire");
    let utf8 = |var: &str, bytes: Vec<u8>| -> Result<String> {
        String::from_utf8(bytes)
            .map_err(|_| Error::new(ErrorKind::InvalidInput, format!("{var}: not UTF-8 text")))
    };
    let text = |var: &str, file: &std::ffi::OsStr| utf8(var, secret_file(var, file)?);
    if let Some(f) = std::env::var_os(CREDS_FILE) {
        // Whole: the parser wants the newline that ends the seed's block.
        let creds = utf8(CREDS_FILE, secret_file_whole(CREDS_FILE, &f)?)?;
        opts = opts.credentials(&creds).map_err(|e| {
            Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{CREDS_FILE} ({}): not a .creds file: {e}",
                    f.to_string_lossy()
                ),
            )
        })?;
    } else if let Some(f) = std::env::var_os(TOKEN_FILE) {
        opts = opts.token(text(TOKEN_FILE, &f)?);
    } else if let Some(f) = std::env::var_os(USER_FILE) {
        let t = text(USER_FILE, &f)?;
        let (user, pass) = t.split_once(':').ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("{USER_FILE} ({}): write USER:PASSWORD", f.to_string_lossy()),
            )
        })?;
        opts = opts.user_and_password(user.into(), pass.into());
    }
    if let Some(ca) = std::env::var_os(CA_FILE) {
        opts = opts.add_root_certificates(ca.into());
    }
    Ok(opts)
}

/// The NATS address `addr` names.
fn parse(addr: &str) -> Result<NatsAddr> {
    match addr.parse()? {
        Endpoint::Nats(a) => Ok(a),
        _ => Err(Error::new(
            ErrorKind::InvalidInput,
            format!("`{addr}` is not a NATS address (nats://HOST:PORT/SUBJECT)"),
        )),
    }
}

/// Connects to `addr`'s server with `opts`.
async fn connect(
    addr: &NatsAddr,
    opts: async_nats::ConnectOptions,
    net: &Net,
) -> Result<async_nats::Client> {
    let server = addr.server.to_string();
    opts.connection_timeout(net.connect_timeout)
        .connect(server.clone())
        .await
        .map_err(|e| connect_error(&server, e))
}

fn connect_timeout(addr: &NatsAddr, net: &Net) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!(
            "connecting to nats://{}: no answer within {:?}",
            addr.server, net.connect_timeout
        ),
    )
}

/// What a connection failure means.
fn connect_error(server: &str, e: async_nats::ConnectError) -> Error {
    use async_nats::ConnectErrorKind as K;
    let kind = match e.kind() {
        K::AuthorizationViolation | K::Authentication => ErrorKind::Refused,
        K::TimedOut => ErrorKind::Timeout,
        _ => ErrorKind::Io,
    };
    let hint = match kind {
        ErrorKind::Refused => format!(
            " (the credentials come from {CREDS_FILE}, {TOKEN_FILE} or {USER_FILE}; none, or the \
             wrong ones, were given)"
        ),
        _ => String::new(),
    };
    Error::new(
        kind,
        format!("connecting to nats://{server}: the server's answer: {e}{hint}"),
    )
}

/// `Debug` for an end of a NATS subject: its type's name and its address.
macro_rules! debug_by_addr {
    ($name:literal, $ty:ident < $($g:ident),* >) => {
        $crate::nats::connect::debug_by_addr!($name, $ty<$($g),*>, conn);
    };
    // `$conn`: where the end keeps its connection.
    ($name:literal, $ty:ident < $($g:ident),* >, $($conn:ident).+) => {
        impl<$($g),*> std::fmt::Debug for $ty<$($g),*> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct($name)
                    .field("addr", &self.$($conn).+.addr)
                    .finish_non_exhaustive()
            }
        }
    };
}
pub(crate) use debug_by_addr;

/// A connection to the server of a `nats://` address, and the background
/// runtime it lives on (let go when the last connection is dropped).
pub(crate) struct Conn {
    pub(crate) client: async_nats::Client,
    pub(crate) addr: NatsAddr,
    pub(crate) codec: CodecKind,
    pub(crate) max: usize,
    rt: Option<Arc<tokio::runtime::Runtime>>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("nats::Conn")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Conn {
    /// Connects to the server `addr` names, within `net`'s connect
    /// deadline, with the environment's credentials; the connection lives
    /// on procwire's background runtime.
    pub(crate) fn open(addr: &str, net: &Net) -> Result<Conn> {
        let addr = parse(addr)?;
        let opts = options()?;
        let rt = background::runtime()?;
        let deadline = Instant::now() + net.connect_timeout + Duration::from_secs(1);
        let client = background::drive(&rt, Some(deadline), connect(&addr, opts, net))
            .unwrap_or_else(|| Err(connect_timeout(&addr, net)))?;
        Ok(Conn::with(client, addr, net, Some(rt)))
    }

    /// [`open`](Conn::open), awaited: the connection lives on the caller's
    /// runtime (the credential files are read off its threads).
    #[cfg(feature = "tokio")]
    pub(crate) async fn open_async(addr: &str, net: &Net) -> Result<Conn> {
        let addr = parse(addr)?;
        let opts = tokio::task::spawn_blocking(options)
            .await
            .map_err(|e| Error::new(ErrorKind::Io, format!("reading the credentials: {e}")))??;
        Conn::opened(addr, opts, net).await
    }

    /// [`open`](Conn::open) on `rt`, a runtime of the caller's own that
    /// this thread drives: the connection lives there.
    pub(crate) fn open_on(rt: &tokio::runtime::Runtime, addr: &str, net: &Net) -> Result<Conn> {
        let addr = parse(addr)?;
        let opts = options()?;
        rt.block_on(Conn::opened(addr, opts, net))
    }

    /// Connects within `net`'s deadline, on the current runtime.
    async fn opened(addr: NatsAddr, opts: async_nats::ConnectOptions, net: &Net) -> Result<Conn> {
        let limit = net.connect_timeout + Duration::from_secs(1);
        let client = tokio::time::timeout(limit, connect(&addr, opts, net))
            .await
            .unwrap_or_else(|_| Err(connect_timeout(&addr, net)))?;
        Ok(Conn::with(client, addr, net, None))
    }

    fn with(
        client: async_nats::Client,
        addr: NatsAddr,
        net: &Net,
        rt: Option<Arc<tokio::runtime::Runtime>>,
    ) -> Conn {
        Conn {
            client,
            addr,
            codec: net.options.codec_kind(),
            max: net.options.max_frame_len(),
            rt,
        }
    }

    /// The runtime the connection lives on: procwire's background one for
    /// a blocking end, the caller's for an awaited one.
    pub(crate) fn handle(&self) -> tokio::runtime::Handle {
        match &self.rt {
            Some(rt) => rt.handle().clone(),
            None => tokio::runtime::Handle::current(),
        }
    }

    /// A JetStream context on this connection (it starts a task of its own
    /// on the connection's runtime).
    pub(crate) fn jetstream(&self) -> async_nats::jetstream::Context {
        let _context = self.handle().enter();
        async_nats::jetstream::new(self.client.clone())
    }

    /// Runs `fut` on this thread, within `deadline` (a blocking end's: in
    /// the background runtime's context).
    pub(crate) fn drive<F: std::future::Future>(
        &self,
        deadline: Option<Instant>,
        fut: F,
    ) -> Option<F::Output> {
        background::drive(self.rt.as_ref().expect("a blocking end"), deadline, fut)
    }

    /// The server's limit on one message, checked before sending one of
    /// `len` bytes.
    pub(crate) fn check_payload(&self, len: usize) -> Result<()> {
        let max = self.client.server_info().max_payload;
        if len > max {
            return Err(Error::new(
                ErrorKind::FrameTooLarge,
                format!(
                    "a message of {len} bytes, over the max_payload of {max} bytes of the NATS \
                     server at {} (raise max_payload there, or send less)",
                    self.addr.server
                ),
            ));
        }
        Ok(())
    }

    /// A received payload within this end's maximum, decoded.
    pub(crate) fn decode<T: serde::de::DeserializeOwned>(&self, payload: &[u8]) -> Result<T> {
        if payload.len() > self.max {
            return Err(Error::new(
                ErrorKind::FrameTooLarge,
                format!(
                    "a NATS message of {} bytes, over this end's maximum of {}",
                    payload.len(),
                    self.max
                ),
            ));
        }
        self.codec.decode(payload)
    }

    /// `value` in this end's codec.
    pub(crate) fn encode<T: serde::Serialize>(&self, value: &T) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.codec.encode(value, &mut out)?;
        self.check_payload(out.len())?;
        Ok(out)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // The client's handles only close channels when they drop (after
        // this): its connection task ends on the runtime, if it still runs.
        if let Some(rt) = self.rt.take() {
            background::release(rt);
        }
    }
}
