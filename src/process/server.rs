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
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::child::{Origin, ProcState, StatusCell};
use crate::codec::CodecKind;
use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, Interest};
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
}

#[derive(Serialize, Deserialize)]
enum Reply {
    Started { id: u64, pid: u32 },
    Failed { id: u64, error: String },
    Exited { pid: u32, status: i32 },
}

struct Client {
    /// Keeps the server's pidfd open for the life of the process.
    #[allow(dead_code)]
    server: Arc<ProcState>,
    ctl: Socket,
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, mpsc::Sender<Result<Arc<ProcState>>>>>,
    procs: Mutex<HashMap<u32, Weak<StatusCell>>>,
    reader: OnceLock<()>,
}

static CLIENT: OnceLock<Client> = OnceLock::new();

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
    lock(&client.waiting).insert(id, tx);
    let mut msg = Vec::new();
    CodecKind::Postcard.encode(
        &Request::Spawn {
            id,
            tramp,
            f,
            codec: codec.name().into(),
            max_frame: max_frame as u64,
        },
        &mut msg,
    )?;
    if let Err(e) = client.ctl.send_with_fds(&msg, &[fd.as_fd()]) {
        lock(&client.waiting).remove(&id);
        return Err(Error::io("asking the fork server for a child", e));
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
        let (n, fds) = match client.ctl.recv_with_fds(&mut buf) {
            Ok(r) => r,
            Err(_) => break,
        };
        if n == 0 {
            break;
        }
        let Ok(reply) = CodecKind::Postcard.decode::<Reply>(&buf[..n]) else {
            continue;
        };
        match reply {
            Reply::Started { id, pid } => {
                let result = fds
                    .into_iter()
                    .next()
                    .map(|pidfd| Arc::new(ProcState::with_pidfd(pid, pidfd, Origin::Server)))
                    .ok_or_else(|| Error::new(ErrorKind::Io, "the fork server sent no pidfd"));
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
    // The server is gone: nobody will answer.
    for (_, tx) in lock(&client.waiting).drain() {
        let _ = tx.send(Err(Error::new(ErrorKind::Io, "the fork server exited")));
    }
}

/// The server's loop; never returns.
fn serve(ctl: Socket) {
    // Each child's state holds its pidfd: polled here, closed once reaped.
    let mut children: Vec<Arc<ProcState>> = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let mut fds = vec![(ctl.as_fd(), Interest::Read)];
        fds.extend(children.iter().map(|c| (c.pidfd(), Interest::Read)));
        let mut ready = vec![false; fds.len()];
        if sys::poll(&fds, None, &mut ready).is_err() {
            sys::process::exit_now(1);
        }
        // Exited children first: their reports must not wait behind requests.
        let mut i = 0;
        while i < children.len() {
            if !ready[i + 1] {
                i += 1;
                continue;
            }
            ready.remove(i + 1);
            let child = children.remove(i);
            let pid = child.pid();
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
        if !ready[0] {
            continue;
        }
        let (n, mut got) = match ctl.recv_with_fds(&mut buf) {
            Ok(r) => r,
            Err(_) => sys::process::exit_now(1),
        };
        if n == 0 {
            // The creator is gone: so are we (our children follow, by their
            // death signal).
            sys::process::exit_now(0);
        }
        let Ok(Request::Spawn {
            id,
            tramp,
            f,
            codec,
            max_frame,
        }) = CodecKind::Postcard.decode::<Request>(&buf[..n])
        else {
            continue;
        };
        let (Some(fd), Ok(codec)) = (got.pop(), codec.parse::<CodecKind>()) else {
            send_reply(
                &ctl,
                &Reply::Failed {
                    id,
                    error: "malformed request".into(),
                },
                None,
            );
            continue;
        };
        let max = max_frame as usize;
        match crate::fork(fd, move |fd| {
            sys::process::exit_now(super::entry::run_trampoline(tramp, f, fd, codec, max));
        }) {
            Ok(child) => {
                // The server reaps through the child's pidfd; the creator
                // gets a copy to wait on and to signal.
                let child = child.detach();
                send_reply(
                    &ctl,
                    &Reply::Started {
                        id,
                        pid: child.pid(),
                    },
                    Some(child.pidfd()),
                );
                children.push(child);
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
