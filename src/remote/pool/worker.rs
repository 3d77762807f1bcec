//! The worker's side of a remote pool: connect, announce, answer tasks,
//! beat while working.

use super::*;

/// How a worker process behaves: retries and its beat.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use procwire::remote::pool::WorkerOptions;
///
/// let wo = WorkerOptions {
///     net: procwire::Net::new().heartbeat(Duration::from_millis(500)),
///     reconnect_for: Duration::from_secs(60),
///     ..WorkerOptions::default()
/// };
/// # let _ = wo;
/// ```
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// Connection settings (key, heartbeat, retry policy of each attempt).
    pub net: Net,
    /// How long to keep trying to reach the pool (again) before giving up.
    pub reconnect_for: Duration,
    /// How often to beat while working on a task (ZeroMQ).
    pub beat: Duration,
}

impl Default for WorkerOptions {
    fn default() -> WorkerOptions {
        WorkerOptions {
            net: Net::new(),
            reconnect_for: Duration::from_secs(30),
            beat: Duration::from_secs(1),
        }
    }
}

/// A worker's two ends, by transport.
enum Conn {
    Tcp(Duplex<Flow, Flow>),
    Zmq(zmq::Channel<Flow, Flow>),
}

impl Conn {
    fn open(addr: &str, net: &Net) -> Result<Conn> {
        let endpoint: Endpoint = addr.parse()?;
        let net = net.clone().codec(CodecKind::MsgPack);
        Ok(match endpoint {
            Endpoint::Tcp(_) => Conn::Tcp(net.connect(addr)?),
            _ => Conn::Zmq(zmq::connect(zmq::Kind::Dealer, addr, &net)?),
        })
    }

    fn send(&self, m: Flow) -> Result<()> {
        match self {
            Conn::Tcp(d) => d.send(m).map_err(|e| e.into_error()),
            Conn::Zmq(c) => c.send(m).map_err(|e| e.into_error()),
        }
    }

    /// The pool's next message, waiting idle. On ZeroMQ, an idle worker
    /// says it is ready again every `every`: a DEALER reconnects by itself
    /// after a broken connection, under a new identity the pool has never
    /// seen, and only a message tells the pool who it is now (else its
    /// tasks and its bye would go to the old one).
    fn recv_idle(&self, every: Duration, beat_ms: u64) -> Result<Flow> {
        match self {
            Conn::Tcp(d) => Ok(d.recv()?),
            Conn::Zmq(c) => loop {
                match c.recv_timeout(every) {
                    Ok(m) => return Ok(m),
                    Err(e) if e.is_timeout() => self.send(Flow::Ready { beat_ms })?,
                    Err(e) => return Err(e.into()),
                }
            },
        }
    }
}

/// Works for the pool at `addr` until it says bye: each task's payload goes
/// to `handler`, whose `Ok` is the answer and `Err` the reason it failed.
/// A lost connection is made again, for up to `reconnect_for`.
pub fn work(
    addr: &str,
    wo: &WorkerOptions,
    mut handler: impl FnMut(Vec<u8>) -> std::result::Result<Vec<u8>, String>,
) -> Result<()> {
    let mut lost_since: Option<Instant> = None;
    loop {
        // The time out of reach counts from the first failure since the
        // last connection was lost.
        let link = match Conn::open(addr, &wo.net) {
            Ok(l) => l,
            Err(e) if e.kind() == ErrorKind::Refused => return Err(e),
            Err(e) => {
                let since = *lost_since.get_or_insert_with(Instant::now);
                if since.elapsed() > wo.reconnect_for {
                    return Err(e.because("the pool stayed out of reach"));
                }
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        match serve(&link, wo, &mut handler) {
            Ok(()) => return Ok(()), // bye
            Err(_) => {
                lost_since = Some(Instant::now());
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// [`work`], typed: tasks decoded from and answers encoded with the codec
/// of `wo.net` (postcard unless set: the pool's must match).
pub fn work_with<Req, Resp>(
    addr: &str,
    wo: &WorkerOptions,
    mut handler: impl FnMut(Req) -> std::result::Result<Resp, String>,
) -> Result<()>
where
    Req: DeserializeOwned,
    Resp: Serialize,
{
    let codec = wo.net.options.codec_kind();
    work(addr, wo, |payload| {
        let req: Req = codec.decode(&payload).map_err(|e| e.to_string())?;
        let resp = handler(req)?;
        let mut out = Vec::new();
        codec.encode(&resp, &mut out).map_err(|e| e.to_string())?;
        Ok(out)
    })
}

/// One connection's worth of work; `Ok` at bye.
fn serve(
    link: &Conn,
    wo: &WorkerOptions,
    handler: &mut impl FnMut(Vec<u8>) -> std::result::Result<Vec<u8>, String>,
) -> Result<()> {
    let beat_ms = wo.beat.as_millis().clamp(1, u128::from(u32::MAX)) as u64;
    link.send(Flow::Ready { beat_ms })?;
    // (working, finished): the beating thread beats while `working`.
    let state = (Mutex::new((false, false)), Condvar::new());
    std::thread::scope(|s| {
        if let Conn::Zmq(_) = link {
            // ZeroMQ has no other way to tell a slow worker from a dead one.
            s.spawn(|| {
                let (lock, cv) = &state;
                let mut st = lock.lock().unwrap_or_else(PoisonError::into_inner);
                while !st.1 {
                    let (next, timeout) = cv
                        .wait_timeout(st, wo.beat)
                        .unwrap_or_else(PoisonError::into_inner);
                    st = next;
                    if st.0 && timeout.timed_out() {
                        let _ = link.send(Flow::Beat);
                    }
                }
            });
        }
        let set = |working: bool, finished: bool| {
            let (lock, cv) = &state;
            *lock.lock().unwrap_or_else(PoisonError::into_inner) = (working, finished);
            cv.notify_all();
        };
        let r = (|| loop {
            match link.recv_idle(wo.beat * 2, beat_ms)? {
                Flow::Bye => return Ok(()),
                Flow::Task { id, payload } => {
                    set(true, false);
                    let answer = handler(payload.into_vec());
                    set(false, false);
                    let reply = match answer {
                        Ok(out) => Flow::Done {
                            id,
                            result: ByteBuf::from(out),
                        },
                        Err(why) => Flow::Failed { id, why },
                    };
                    link.send(reply)?;
                }
                _ => {} // unknown kinds are ignored, for later versions
            }
        })();
        set(false, true);
        r
    })
}
