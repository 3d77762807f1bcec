//! The one thread that starts a pool's workers.
//!
//! procwire starts a child with `PR_SET_PDEATHSIG` (`SIGKILL`) unless told
//! otherwise, so that no worker outlives a pool whose process died; but
//! Linux sends that signal when the *thread* that started the child exits,
//! not its process. A worker started by a driver thread (a replacement), or
//! by a thread that called `Pool::call`, was killed as that thread ended:
//! at shutdown, before the pool closed its input and let it finish (its
//! last output lost), or in the middle of the run. So every worker the pool
//! starts is started here, by a thread that lives until the pool is gone.

use super::*;

/// Where the spawner's thread answers one request: the worker, or why not.
type Reply<Req, Resp> = mpsc::SyncSender<Result<Boxed<Req, Resp>>>;

/// Starts workers on its thread, one at a time, for whoever asks.
pub(super) struct Spawner<Req, Resp> {
    asks: Mutex<Option<mpsc::Sender<Reply<Req, Resp>>>>,
    thread: Option<JoinHandle<()>>,
}

impl<Req: 'static, Resp: 'static> Spawner<Req, Resp> {
    /// A thread that starts `link`'s workers.
    pub(super) fn new(link: Arc<dyn Link<Req, Resp>>) -> Result<Spawner<Req, Resp>> {
        let (asks, asked) = mpsc::channel::<Reply<Req, Resp>>();
        let thread = std::thread::Builder::new()
            .name("procwire-pool-start".into())
            .spawn(move || {
                for reply in asked {
                    let _ = reply.send(link.start());
                }
            })
            .map_err(|e| Error::io("starting a pool thread", e))?;
        Ok(Spawner {
            asks: Mutex::new(Some(asks)),
            thread: Some(thread),
        })
    }

    /// A new worker, started on the spawner's thread.
    pub(super) fn start(&self) -> Result<Boxed<Req, Resp>> {
        let gone = || {
            Error::new(
                ErrorKind::Io,
                "the pool's thread that starts workers is gone",
            )
        };
        let (reply, answer) = mpsc::sync_channel(1);
        lock(&self.asks)
            .as_ref()
            .ok_or_else(gone)?
            .send(reply)
            .map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }
}

impl<Req, Resp> Drop for Spawner<Req, Resp> {
    fn drop(&mut self) {
        lock(&self.asks).take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
