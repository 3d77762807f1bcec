//! The NATS rows of `bench --remote`: procwire's RPC over NATS
//! (`procwire::nats::Client::call` against a `procwire::nats::serve` peer)
//! and raw async-nats request/reply (a subscriber that publishes each
//! request back to its reply subject), both through one NATS server on
//! loopback that the run starts and stops.

use std::cell::Cell;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use procwire::ByteBuf;

/// The run's NATS server: its process and port.
static SERVER: Mutex<Option<(procwire::Child, u16)>> = Mutex::new(None);

/// The `nats-server` to start: `PROCWIRE_NATS_SERVER`, else one on the
/// PATH, else the project's `.venv` (scripts/test installs it there),
/// looked for from the current directory and from this program's.
fn binary() -> Result<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("PROCWIRE_NATS_SERVER") {
        return Ok(p.into());
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("nats-server"));
    let in_venv = [std::env::current_dir().ok(), std::env::current_exe().ok()]
        .into_iter()
        .flatten()
        .flat_map(|d| {
            d.ancestors()
                .map(|a| a.join(".venv/bin/nats-server"))
                .collect::<Vec<_>>()
        });
    on_path.chain(in_venv).find(|p| p.is_file()).context(
        "the nats rows need a NATS server: set PROCWIRE_NATS_SERVER, put nats-server on the \
         PATH, or run scripts/test (it installs one in .venv); or leave nats out (--transports)",
    )
}

/// The address the rows use, the server started on first use.
pub(super) fn addr() -> Result<String> {
    let mut server = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    if server.is_none() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut cmd = procwire::Command::new(binary()?);
        cmd.args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .die_with_parent(true);
        let child = cmd.spawn().context("starting nats-server")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("nats-server did not start");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        *server = Some((child, port));
    }
    let port = server.as_ref().map(|(_, p)| *p).expect("just started");
    Ok(format!("nats://127.0.0.1:{port}/procwire-bench"))
}

/// Stops the run's server, if it started one.
pub(super) fn stop() {
    let taken = SERVER.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some((mut child, _)) = taken {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// One side of a NATS row: a call per send, its reply's length kept for
/// the receive that follows.
pub(super) enum Rpc {
    Wire(procwire::nats::Client<ByteBuf, ByteBuf>, Cell<usize>),
    /// procwire's awaited client, on a current-thread runtime of its own.
    Async {
        rt: tokio::runtime::Runtime,
        client: procwire::tokio::nats::Client<ByteBuf, ByteBuf>,
        last: Cell<usize>,
    },
    Raw {
        rt: tokio::runtime::Runtime,
        client: async_nats::Client,
        subject: String,
        last: Cell<usize>,
    },
}

impl Rpc {
    /// The calling side (`raw`: async-nats itself), once the peer answers.
    pub(super) fn connect(addr: &str, side: Flavor, size: usize) -> Result<Rpc> {
        let rpc = if side == Flavor::Async {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let client = rt.block_on(procwire::tokio::nats::Client::connect(
                addr,
                &procwire::Net::new(),
            ))?;
            Rpc::Async {
                rt,
                client: client.timeout(Duration::from_secs(10)),
                last: Cell::new(0),
            }
        } else if side == Flavor::Raw {
            let (server, subject) = split(addr)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let client = rt.block_on(async_nats::connect(server))?;
            Rpc::Raw {
                rt,
                client,
                subject: subject.into(),
                last: Cell::new(0),
            }
        } else {
            let client = procwire::nats::Client::connect(addr, &procwire::Net::new())?
                .timeout(Duration::from_secs(10));
            Rpc::Wire(client, Cell::new(0))
        };
        // The peer answers once subscribed.
        let deadline = Instant::now() + Duration::from_secs(10);
        let probe = ByteBuf::from(vec![0u8; size]);
        while rpc.send(&probe).is_err() {
            if Instant::now() > deadline {
                bail!("the NATS peer did not answer");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(rpc)
    }

    pub(super) fn send(&self, msg: &ByteBuf) -> Result<()> {
        match self {
            Rpc::Wire(c, last) => last.set(c.call(msg.clone())?.len()),
            Rpc::Async { rt, client, last } => {
                last.set(rt.block_on(client.call(msg.clone()))?.len());
            }
            Rpc::Raw {
                rt,
                client,
                subject,
                last,
            } => {
                let reply = rt.block_on(async {
                    tokio::time::timeout(
                        Duration::from_secs(10),
                        client.request(subject.clone(), msg.to_vec().into()),
                    )
                    .await
                })??;
                last.set(reply.payload.len());
            }
        }
        Ok(())
    }

    pub(super) fn recv(&self, buf: &mut [u8]) -> Result<()> {
        let (Rpc::Wire(_, last) | Rpc::Raw { last, .. } | Rpc::Async { last, .. }) = self;
        anyhow::ensure!(last.get() == buf.len(), "wrong size");
        Ok(())
    }
}

fn split(addr: &str) -> Result<(&str, &str)> {
    addr.strip_prefix("nats://")
        .and_then(|r| r.split_once('/'))
        .context("nats://HOST:PORT/SUBJECT")
}

/// Which side of a NATS row: procwire's blocking ends, its awaited ones,
/// or async-nats itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flavor {
    Wire,
    Async,
    Raw,
}

impl Flavor {
    /// The peer kind `__bench-peer` takes for this side.
    pub(super) fn peer(self) -> &'static str {
        match self {
            Flavor::Wire => "nats",
            Flavor::Async => "async-nats",
            Flavor::Raw => "raw-nats",
        }
    }

    pub(super) fn of_peer(kind: &str) -> Option<Flavor> {
        [Flavor::Wire, Flavor::Async, Flavor::Raw]
            .into_iter()
            .find(|f| f.peer() == kind)
    }
}

/// The peer process: serves the calls at `addr` until killed, echoing each
/// request (with procwire's blocking or awaited service, or async-nats).
pub(super) fn serve(addr: &str, side: Flavor) -> Result<()> {
    let net = procwire::Net::new();
    let echo = |b: ByteBuf| Ok::<_, String>(b);
    match side {
        Flavor::Wire => {
            procwire::nats::serve(addr, &net, echo, || false)?;
            return Ok(());
        }
        Flavor::Async => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(procwire::tokio::nats::serve(addr, &net, echo))?;
            return Ok(());
        }
        Flavor::Raw => {}
    }
    let (server, subject) = split(addr)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = async_nats::connect(server).await?;
        let mut calls = client.subscribe(subject.to_string()).await?;
        while let Some(m) = calls.next().await {
            if let Some(reply) = m.reply {
                client.publish(reply, m.payload).await?;
            }
        }
        Ok(())
    })
}
