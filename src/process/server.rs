//! The fork server: a single-threaded process, forked by `init()` while the
//! program still has one thread, that forks task children on request.
//!
//! Creator and server talk over a SEQPACKET socket pair in postcard:
//! `Request::Spawn` (with the child's channel end attached) is answered by
//! `Reply::Started` (with a pidfd of the new child attached) or
//! `Reply::Failed`; when a child exits the server reaps it and sends
//! `Reply::Exited` with its raw wait status. A reader thread in the creator,
//! started on first use, routes the replies.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::child::{Origin, ProcState, StatusCell};
use crate::codec::CodecKind;
use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, ready::Watch};
use crate::{Kind, Socket};

#[derive(Serialize, Deserialize)]
enum Request {
    Spawn {
        id: u64,
        tramp: usize,
        f: usize,
        codec: String,
        max_frame: u64,
    },
    /// The creator could not take the child's pidfd (out of descriptors):
    /// nothing else can stop it.
    Kill { pid: u32 },
}

#[derive(Serialize, Deserialize)]
enum Reply {
    Started { id: u64, pid: u32 },
    Failed { id: u64, error: String },
    Exited { pid: u32, status: i32 },
}

struct Client {
    /// The server: reaped by the reader once it has exited.
    server: Arc<ProcState>,
    ctl: Socket,
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, mpsc::Sender<Result<Arc<ProcState>>>>>,
    procs: Mutex<HashMap<u32, Weak<StatusCell>>>,
    reader: OnceLock<()>,
}

static CLIENT: OnceLock<Client> = OnceLock::new();

/// Set once the server has exited; see [`gone`].
static GONE: AtomicBool = AtomicBool::new(false);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether `init()` started a server in this process.
pub(crate) fn running() -> bool {
    CLIENT.get().is_some()
}

/// Forks the server. Called by `init()` while the process has one thread.
pub(crate) fn start() -> Result<()> {
    let (ours, theirs) = crate::socket_pair(Kind::SeqPacket)
        .map_err(|e| Error::io("creating the fork server's socket", e))?;
    let server = crate::fork(theirs, serve).map_err(|e| {
        Error::new(
            ErrorKind::Unsupported,
            format!("cannot start the fork server: {e}; call procwire::init() first in main"),
        )
    })?;
    // The server ends when this process does (its socket closes); nothing
    // here waits for it.
    let _ = CLIENT.set(Client {
        server: server.detach(),
        ctl: ours,
        next: AtomicU64::new(0),
        waiting: Mutex::new(HashMap::new()),
        procs: Mutex::new(HashMap::new()),
        reader: OnceLock::new(),
    });
    Ok(())
}

/// Asks the server for a child running `tramp(f, …)` on `fd`.
pub(crate) fn spawn(
    tramp: usize,
    f: usize,
    codec: CodecKind,
    max_frame: usize,
    fd: OwnedFd,
) -> Result<Arc<ProcState>> {
    let client = CLIENT.get().ok_or_else(|| {
        Error::new(
            ErrorKind::Unsupported,
            "no fork server: call procwire::init() first in main (or \
             procwire::init_before_main!() in a test binary)",
        )
    })?;
    client.reader.get_or_init(|| {
        std::thread::Builder::new()
            .name("procwire-fork-server".into())
            .spawn(|| read_replies(CLIENT.get().expect("set before the reader starts")))
            .map(drop)
            .unwrap_or(())
    });
    let id = client.next.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel();
    {
        // Under the lock the reader drains when the server is gone, so that
        // no request waits for an answer after that.
        let mut waiting = lock(&client.waiting);
        if gone() {
            return Err(gone_error());
        }
        waiting.insert(id, tx);
    }
    let request = Request::Spawn {
        id,
        tramp,
        f,
        codec: codec.name().into(),
        max_frame: max_frame as u64,
    };
    if let Err(e) = ask(client, &request, Some(fd.as_fd())) {
        lock(&client.waiting).remove(&id);
        return Err(e);
    }
    drop(fd);
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(r) => r,
        Err(_) => {
            lock(&client.waiting).remove(&id);
            Err(Error::new(
                ErrorKind::Io,
                "the fork server did not answer within 30 s",
            ))
        }
    }
}

/// The creator's reader thread: routes the server's replies.
fn read_replies(client: &Client) {
    let mut buf = vec![0u8; 4096];
    loop {
        let mut fds = Vec::new();
        let r = match sys::recv(client.ctl.as_fd(), &mut buf, &mut fds, false) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if r.full_len == 0 {
            break;
        }
        let reply = match CodecKind::Postcard.decode::<Reply>(&buf[..r.len]) {
            Ok(reply) if r.full_len == r.len => reply,
            _ => continue,
        };
        match reply {
            Reply::Started { id, pid } => {
                let result = match fds.pop() {
                    Some(pidfd) if !r.fds_lost => {
                        Ok(Arc::new(ProcState::with_pidfd(pid, pidfd, Origin::Server)))
                    }
                    _ => {
                        // Without its pidfd the child cannot be waited on or
                        // stopped from here: the server stops it.
                        let _ = ask(client, &Request::Kill { pid }, None);
                        Err(Error::new(
                            ErrorKind::Io,
                            format!(
                                "child {pid}'s pidfd did not arrive from the fork server (this \
                                 process is out of descriptors: RLIMIT_NOFILE); it was killed"
                            ),
                        ))
                    }
                };
                if let Ok(state) = &result {
                    lock(&client.procs).insert(pid, Arc::downgrade(state.status_cell()));
                }
                if let Some(tx) = lock(&client.waiting).remove(&id) {
                    let _ = tx.send(result);
                }
            }
            Reply::Failed { id, error } => {
                if let Some(tx) = lock(&client.waiting).remove(&id) {
                    let _ = tx.send(Err(Error::new(ErrorKind::Io, error)));
                }
            }
            Reply::Exited { pid, status } => {
                // Only the status cell: holding the process state here could
                // make this thread the last owner of its pidfd.
                if let Some(cell) = lock(&client.procs).remove(&pid).and_then(|w| w.upgrade()) {
                    cell.set(std::process::ExitStatus::from_raw(status));
                }
            }
        }
    }
    // The server is gone: nobody will answer, or report an exit (its
    // children died with it, by their death signal).
    GONE.store(true, Ordering::SeqCst);
    for (_, tx) in lock(&client.waiting).drain() {
        let _ = tx.send(Err(gone_error()));
    }
    for (_, cell) in lock(&client.procs).drain() {
        if let Some(cell) = cell.upgrade() {
            cell.wake();
        }
    }
    // Its socket closed as it exited: reap it, so that it is not left a
    // zombie.
    let server = &client.server;
    if let Ok(Some(_)) =
        server.exit_status(Some(std::time::Instant::now() + Duration::from_secs(5)))
    {
        let _ = sys::process::child_status(server.pidfd(), true);
    }
}

/// Sends one request, with a descriptor or none.
fn ask(client: &Client, request: &Request, fd: Option<BorrowedFd<'_>>) -> Result<()> {
    let mut msg = Vec::new();
    CodecKind::Postcard.encode(request, &mut msg)?;
    let fds: Vec<_> = fd.into_iter().collect();
    client
        .ctl
        .send_with_fds(&msg, &fds)
        .map_err(|e| Error::io("asking the fork server for a child", e))?;
    Ok(())
}

/// Whether the fork server has exited (its reader saw its socket close):
/// the exit status of a child it started can then no longer arrive.
pub(crate) fn gone() -> bool {
    GONE.load(Ordering::SeqCst)
}

fn gone_error() -> Error {
    Error::new(
        ErrorKind::Io,
        "the fork server exited: no child can be started through it, and no exit status \
         reported",
    )
}

/// The server's loop; never returns.
fn serve(ctl: Socket) {
    // The request socket's key; a child's is its pid.
    const CTL: u64 = u64::MAX;
    // Each child's state holds its pidfd: watched here, closed once reaped.
    // An epoll set, not a poll: with a poll, each request would walk every
    // child (a pool may have thousands).
    let mut children: HashMap<u32, Arc<ProcState>> = HashMap::new();
    let Ok(mut watch) = Watch::new().and_then(|w| w.add(ctl.as_fd(), CTL).map(|()| w)) else {
        sys::process::exit_now(1)
    };
    let mut ready = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        if watch.wait(&mut ready).is_err() {
            sys::process::exit_now(1);
        }
        // Exited children first: their reports must not wait behind requests.
        for &key in ready.iter().filter(|&&k| k != CTL) {
            let Some(child) = children.remove(&(key as u32)) else {
                continue;
            };
            let pid = child.pid();
            // The creator's copy keeps the pidfd's file open: epoll would
            // go on reporting it after ours is closed.
            let _ = watch.remove(child.pidfd());
            let status = sys::process::child_status(child.pidfd(), true);
            // Close the pidfd before reporting: once the creator hears of
            // the exit, nothing of the child is left here.
            drop(child);
            if let Ok(Some(status)) = status {
                send_reply(
                    &ctl,
                    &Reply::Exited {
                        pid,
                        status: status.into_raw(),
                    },
                    None,
                );
            }
        }
        if !ready.contains(&CTL) {
            continue;
        }
        let mut got = Vec::new();
        let r = match sys::recv(ctl.as_fd(), &mut buf, &mut got, false) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => sys::process::exit_now(1),
        };
        if r.full_len == 0 {
            // The creator is gone: so are we (our children follow, by their
            // death signal).
            sys::process::exit_now(0);
        }
        let request = match CodecKind::Postcard.decode::<Request>(&buf[..r.len]) {
            Ok(request) if r.full_len == r.len => request,
            _ => continue,
        };
        let (id, tramp, f, codec, max_frame) = match request {
            Request::Kill { pid } => {
                if let Some(child) = children.get(&pid) {
                    let _ = child.signal(crate::Signal::Kill.as_raw());
                }
                continue;
            }
            Request::Spawn {
                id,
                tramp,
                f,
                codec,
                max_frame,
            } => (id, tramp, f, codec, max_frame),
        };
        let fd = match (got.pop(), codec.parse::<CodecKind>()) {
            (Some(fd), Ok(codec)) if !r.fds_lost => (fd, codec),
            _ => {
                let error = if r.fds_lost {
                    "the fork server could not take the child's channel: it is out of \
                     descriptors (RLIMIT_NOFILE)"
                } else {
                    "malformed request"
                };
                send_reply(
                    &ctl,
                    &Reply::Failed {
                        id,
                        error: error.into(),
                    },
                    None,
                );
                continue;
            }
        };
        let (fd, codec) = fd;
        let max = max_frame as usize;
        let started = crate::fork(fd, move |fd| {
            sys::process::exit_now(super::entry::run_trampoline(tramp, f, fd, codec, max));
        })
        .and_then(|child| {
            // The server reaps through the child's pidfd; the creator gets
            // a copy to wait on and to signal.
            let child = child.detach();
            if let Err(e) = watch.add(child.pidfd(), child.pid().into()) {
                // Unwatched, it would never be reaped.
                let _ = child.signal(crate::Signal::Kill.as_raw());
                let _ = child.exit_status(None);
                let _ = sys::process::child_status(child.pidfd(), true);
                return Err(Error::io("watching a new child", e));
            }
            Ok(child)
        });
        match started {
            Ok(child) => {
                send_reply(
                    &ctl,
                    &Reply::Started {
                        id,
                        pid: child.pid(),
                    },
                    Some(child.pidfd()),
                );
                children.insert(child.pid(), child);
            }
            Err(e) => send_reply(
                &ctl,
                &Reply::Failed {
                    id,
                    error: e.to_string(),
                },
                None,
            ),
        }
    }
}

fn send_reply(ctl: &Socket, reply: &Reply, fd: Option<std::os::fd::BorrowedFd<'_>>) {
    let mut msg = Vec::new();
    if CodecKind::Postcard.encode(reply, &mut msg).is_ok() {
        let fds: Vec<_> = fd.into_iter().collect();
        let _ = ctl.send_with_fds(&msg, &fds);
    }
}
