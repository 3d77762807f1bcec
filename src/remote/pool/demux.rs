//! The ZeroMQ side of a remote pool: one ROUTER, its messages handed to
//! each worker's own inbox, new workers announced as they arrive.

use super::*;

/// Reads the ROUTER and hands each worker its own messages; a new worker
/// (or one the pool let go that speaks again) arrives.
pub(super) struct Demux {
    router: Arc<Router<Flow, Flow>>,
    /// Inboxes of the workers the pool holds, by identity.
    inboxes: Mutex<HashMap<Vec<u8>, mpsc::Sender<Flow>>>,
    /// Every worker seen, and whether it heard bye.
    seen: Mutex<HashMap<Vec<u8>, (Peer, bool)>>,
    pub(super) arrived: Mutex<mpsc::Receiver<ZmqConn>>,
    stop: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Demux {
    pub(super) fn start(
        router: Arc<Router<Flow, Flow>>,
        stray: Arc<AtomicU64>,
    ) -> Result<Arc<Demux>> {
        let (tx, rx) = mpsc::channel();
        let demux = Arc::new(Demux {
            router,
            inboxes: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
            arrived: Mutex::new(rx),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        let d = Arc::clone(&demux);
        let t = std::thread::Builder::new()
            .name("procwire-pool-zmq".into())
            .spawn(move || d.read(&tx, &stray))
            .map_err(|e| Error::io("starting the pool's ZeroMQ thread", e))?;
        *demux.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(t);
        Ok(demux)
    }

    fn read(self: &Arc<Demux>, arrivals: &mpsc::Sender<ZmqConn>, stray: &AtomicU64) {
        while !self.stop.load(Ordering::SeqCst) {
            let (peer, m) = match self.router.recv_timeout(FLOW) {
                Ok(got) => got,
                Err(e) if e.is_timeout() => continue,
                // Somebody sent something that is not the flow: ignore it.
                Err(e) if e.kind() == ErrorKind::Decode => continue,
                Err(_) => return,
            };
            let id = peer.identity().to_vec();
            self.seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id.clone(), (peer.clone(), false));
            let mut inboxes = self.inboxes.lock().unwrap_or_else(PoisonError::into_inner);
            let m = match inboxes.get(&id) {
                Some(inbox) => match inbox.send(m) {
                    Ok(()) => continue,
                    Err(mpsc::SendError(m)) => {
                        inboxes.remove(&id);
                        m
                    }
                },
                None => m,
            };
            // A worker the pool does not hold: it arrives when it says it
            // is ready, or answers (a worker let go as silent that was
            // only slow: its answer is stray, but it works again).
            let beat = match &m {
                Flow::Ready { beat_ms } => Duration::from_millis((*beat_ms).max(1)),
                Flow::Done { .. } | Flow::Failed { .. } => {
                    stray.fetch_add(1, Ordering::Relaxed);
                    Duration::from_secs(1)
                }
                _ => continue,
            };
            let (tx, inbox) = mpsc::channel();
            inboxes.insert(id, tx);
            let conn = ZmqConn {
                router: Arc::clone(&self.router),
                peer,
                inbox,
                demux: Arc::downgrade(self),
                beat,
                heard: Instant::now(),
            };
            if arrivals.send(conn).is_err() {
                return;
            }
        }
    }

    /// The pool let this worker go: its messages no longer reach it.
    pub(super) fn forget(&self, id: &[u8]) {
        self.inboxes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    pub(super) fn said_bye(&self, id: &[u8]) {
        if let Some(s) = self
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(id)
        {
            s.1 = true;
        }
    }

    /// Stops reading, and says bye to every worker that has not heard it
    /// (one the pool let go may still be there).
    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = t.join();
        }
        // Arrivals nobody will take: let them go (each holds the ROUTER).
        while self
            .arrived
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_recv()
            .is_ok()
        {}
        let seen = std::mem::take(&mut *self.seen.lock().unwrap_or_else(PoisonError::into_inner));
        for (peer, byed) in seen.into_values() {
            if !byed {
                let _ = self.router.send(&peer, &Flow::Bye);
            }
        }
        // Keep reading a moment before the socket closes: input left unread
        // at close(2) makes TCP send a reset, which can destroy byes still
        // on their way (and workers go on talking until they read theirs).
        let until = Instant::now() + Duration::from_secs(1);
        let mut quiet = 0;
        while Instant::now() < until && quiet < 3 {
            match self.router.recv_timeout(FLOW) {
                Ok((peer, m)) => {
                    quiet = 0;
                    // A worker that only now speaks (a new identity) hears
                    // its bye too.
                    if !matches!(m, Flow::Bye) {
                        let _ = self.router.send(&peer, &Flow::Bye);
                    }
                }
                Err(e) if e.is_timeout() => quiet += 1,
                Err(_) => quiet += 1,
            }
        }
    }
}
