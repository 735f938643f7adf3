//! Heartbeats between a job's processes: each sends a byte to every peer a few times per
//! timeout and watches that every peer does the same, so that a peer which stopped
//! answering (frozen, its machine gone, the network to it cut) fails the job instead of
//! leaving it waiting forever.
//!
//! A peer that dies closes its connections, which Timely's network threads notice; one that
//! is frozen or cut off closes nothing, and TCP keeps waiting for it for hours. Heartbeats
//! travel on connections of their own, beside Timely's, and run on threads of their own, so
//! a busy worker does not delay them. A peer that ends (closes its heartbeat connection) is
//! no longer watched: its own end, or Timely, says whether that was a failure.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The heartbeats of this process with its peers; stopped when dropped.
pub(crate) struct Heartbeats {
    stopping: Arc<AtomicBool>,
    /// Dropped to stop the sender at once.
    stop: Option<Sender<()>>,
    sockets: Vec<TcpStream>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Heartbeats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heartbeats")
            .field("peers", &self.sockets.len())
            .finish()
    }
}

/// How often heartbeats go out for a peer `timeout`: several per timeout, at most one a
/// second, at least every 50 ms.
fn interval(timeout: Duration) -> Duration {
    (timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

impl Heartbeats {
    /// Starts sending on and watching `sockets` (one per peer process, `None` for this
    /// one; `addresses` names them): a peer from which nothing arrives for `timeout` makes
    /// this process call `silent` with an error naming it (once, from a watcher thread).
    ///
    /// # Errors
    /// A socket cannot be configured or cloned for its watcher.
    pub(crate) fn start(
        sockets: Vec<Option<TcpStream>>,
        addresses: &[String],
        timeout: Duration,
        silent: impl Fn(String) + Send + Sync + 'static,
    ) -> std::io::Result<Heartbeats> {
        let stopping = Arc::new(AtomicBool::new(false));
        let reported = Arc::new(AtomicBool::new(false));
        let silent = Arc::new(silent);
        let mut kept = Vec::new();
        let mut threads = Vec::new();
        for (peer, socket) in sockets.into_iter().enumerate() {
            let Some(socket) = socket else { continue };
            socket.set_read_timeout(Some(timeout))?;
            socket.set_write_timeout(Some(timeout))?;
            let mut reader = socket.try_clone()?;
            let (stopping, reported, silent) = (stopping.clone(), reported.clone(), silent.clone());
            let address = addresses.get(peer).cloned().unwrap_or_default();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("beamline-heartbeat-{peer}"))
                    .spawn(move || {
                        let mut buf = [0u8; 64];
                        loop {
                            match reader.read(&mut buf) {
                                Ok(0) => return,
                                Ok(_) => {}
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        std::io::ErrorKind::WouldBlock
                                            | std::io::ErrorKind::TimedOut
                                    ) =>
                                {
                                    if !stopping.load(Ordering::SeqCst)
                                        && !reported.swap(true, Ordering::SeqCst)
                                    {
                                        silent(format!(
                                            "process {peer} ({address}) sent no heartbeat for \
                                             {timeout:?}: it is frozen, or the network to it \
                                             is down (--peer-timeout)"
                                        ));
                                    }
                                    return;
                                }
                                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                                // Reset: the peer is gone, which Timely reports.
                                Err(_) => return,
                            }
                        }
                    })?,
            );
            kept.push(socket);
        }
        let (stop, stopped) = channel::<()>();
        let mut writers: Vec<TcpStream> = kept
            .iter()
            .map(TcpStream::try_clone)
            .collect::<std::io::Result<_>>()?;
        let every = interval(timeout);
        threads.push(
            std::thread::Builder::new()
                .name("beamline-heartbeats".into())
                .spawn(move || loop {
                    // A failed write drops that peer: it went away, which its watcher or
                    // Timely reports.
                    writers.retain_mut(|w| w.write_all(&[1]).is_ok());
                    match stopped.recv_timeout(every) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                })?,
        );
        Ok(Heartbeats {
            stopping,
            stop: Some(stop),
            sockets: kept,
            threads,
        })
    }
}

impl Drop for Heartbeats {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        drop(self.stop.take());
        // Ends the watchers' reads here, and tells every peer this process is done.
        for s in &self.sockets {
            let _ = s.shutdown(Shutdown::Both);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::Mutex;
    use std::time::Instant;

    /// Two connected sockets.
    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    fn collect() -> (
        Arc<Mutex<Vec<String>>>,
        impl Fn(String) + Send + Sync + 'static,
    ) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        (seen, move |e| s.lock().unwrap().push(e))
    }

    fn names() -> Vec<String> {
        vec!["host-a:1".into(), "host-b:2".into()]
    }

    #[test]
    fn live_peers_are_quiet_and_a_peer_that_ends_is_no_error() {
        let (a, b) = pair();
        let timeout = Duration::from_millis(300);
        let (seen_a, fa) = collect();
        let (seen_b, fb) = collect();
        let ha = Heartbeats::start(vec![None, Some(a)], &names(), timeout, fa).unwrap();
        let hb = Heartbeats::start(vec![Some(b), None], &names(), timeout, fb).unwrap();
        std::thread::sleep(timeout * 4);
        // Process 1 ends; process 0 goes on past several timeouts without an error.
        drop(hb);
        std::thread::sleep(timeout * 3);
        drop(ha);
        assert!(seen_a.lock().unwrap().is_empty(), "{:?}", seen_a.lock());
        assert!(seen_b.lock().unwrap().is_empty(), "{:?}", seen_b.lock());
    }

    #[test]
    fn a_silent_peer_is_named_after_the_timeout() {
        // The peer's socket stays open and says nothing, as a frozen process's would.
        let (a, _frozen) = pair();
        let timeout = Duration::from_millis(300);
        let (seen, f) = collect();
        let start = Instant::now();
        let h = Heartbeats::start(vec![None, Some(a)], &names(), timeout, f).unwrap();
        while seen.lock().unwrap().is_empty() && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let took = start.elapsed();
        drop(h);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(
            seen[0].starts_with("process 1 (host-b:2) sent no heartbeat for 300ms"),
            "{}",
            seen[0]
        );
        assert!(took >= timeout && took < timeout * 5, "{took:?}");
    }

    #[test]
    fn the_interval_is_a_fraction_of_the_timeout_within_bounds() {
        assert_eq!(interval(Duration::from_secs(30)), Duration::from_secs(1));
        assert_eq!(interval(Duration::from_secs(2)), Duration::from_millis(500));
        assert_eq!(
            interval(Duration::from_millis(100)),
            Duration::from_millis(50)
        );
    }
}
