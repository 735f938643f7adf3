//! Connecting a job's processes to each other, with a deadline.
//!
//! Timely's own set-up retries a refused connection once a second, waits for peers
//! forever and prints every attempt; here a process connects to every lower process id and
//! accepts every higher one, retrying every few milliseconds until the deadline, then hands
//! the sockets to Timely. A peer that never comes is an error naming it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// How long to wait between attempts to reach a peer that is not listening yet, or to
/// accept one that did not connect yet: short, as a job's processes start within
/// milliseconds of each other (at 10 ms, a job waited 5 ms on average for nothing).
const RETRY: Duration = Duration::from_millis(1);

/// Connects process `me` of `addresses` (one per process) to every other one, accepting
/// on `listener` (already listening on `addresses[me]`) or, without one, on a listener of
/// its own.
///
/// Returns one socket per process, `None` at `me`.
///
/// # Errors
/// This process's address cannot be listened on, or a peer is not connected by
/// `deadline` (the message names the missing processes).
pub(crate) fn connect_all(
    addresses: &[String],
    me: usize,
    listener: Option<TcpListener>,
    deadline: Instant,
) -> Result<Vec<Option<TcpStream>>, String> {
    let listener = match listener {
        Some(l) => l,
        None => TcpListener::bind(&addresses[me])
            .map_err(|e| format!("cannot listen on {}: {e}", addresses[me]))?,
    };
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot listen on {}: {e}", addresses[me]))?;
    let mut sockets: Vec<Option<TcpStream>> = (0..addresses.len()).map(|_| None).collect();
    for (peer, address) in addresses.iter().enumerate().take(me) {
        sockets[peer] = Some(dial(address, peer, me, deadline)?);
    }
    while sockets
        .iter()
        .enumerate()
        .any(|(p, s)| p > me && s.is_none())
    {
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream
                    .set_nonblocking(false)
                    .and_then(|()| stream.set_nodelay(true))
                    .and_then(|()| stream.set_read_timeout(Some(remaining(deadline))))
                    .map_err(|e| format!("accepting a peer: {e}"))?;
                let mut id = [0u8; 8];
                stream
                    .read_exact(&mut id)
                    .map_err(|e| format!("a peer did not say who it is: {e}"))?;
                let peer = u64::from_le_bytes(id) as usize;
                if peer <= me || peer >= addresses.len() || sockets[peer].is_some() {
                    return Err(format!("a peer claims to be process {peer}"));
                }
                stream
                    .set_read_timeout(None)
                    .map_err(|e| format!("accepting a peer: {e}"))?;
                sockets[peer] = Some(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    let missing: Vec<String> = sockets
                        .iter()
                        .enumerate()
                        .filter(|&(p, s)| p > me && s.is_none())
                        .map(|(p, _)| p.to_string())
                        .collect();
                    return Err(format!(
                        "process(es) {} did not connect in time",
                        missing.join(", ")
                    ));
                }
                std::thread::sleep(RETRY);
            }
            Err(e) => return Err(format!("accepting a peer: {e}")),
        }
    }
    Ok(sockets)
}

fn remaining(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

/// Connects to `peer` at `address`, retrying until `deadline`, and says who we are.
fn dial(address: &str, peer: usize, me: usize, deadline: Instant) -> Result<TcpStream, String> {
    loop {
        match TcpStream::connect(address) {
            Ok(mut stream) => {
                stream
                    .set_nodelay(true)
                    .and_then(|()| stream.write_all(&(me as u64).to_le_bytes()))
                    .map_err(|e| format!("connecting to process {peer} at {address}: {e}"))?;
                return Ok(stream);
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(format!(
                    "process {peer} at {address} cannot be reached: {e}"
                ))
            }
            Err(_) => std::thread::sleep(RETRY),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free() -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    }

    #[test]
    fn three_processes_connect_to_each_other() {
        // Listening before the addresses are known to the others, as launched workers do.
        let listeners: Vec<TcpListener> = (0..3)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let addresses: Vec<String> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().to_string())
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        let handles: Vec<_> = listeners
            .into_iter()
            .enumerate()
            .map(|(me, l)| {
                let a = addresses.clone();
                std::thread::spawn(move || connect_all(&a, me, Some(l), deadline))
            })
            .collect();
        for (me, h) in handles.into_iter().enumerate() {
            let sockets = h.join().unwrap().unwrap();
            for (p, s) in sockets.iter().enumerate() {
                assert_eq!(s.is_some(), p != me);
            }
        }
    }

    #[test]
    fn a_missing_peer_is_named_after_the_deadline() {
        let addresses: Vec<String> = (0..2).map(|_| free()).collect();
        let deadline = Instant::now() + Duration::from_millis(200);
        let e = connect_all(&addresses, 0, None, deadline).unwrap_err();
        assert!(e.contains("process(es) 1 did not connect"), "{e}");
        let e = connect_all(
            &addresses,
            1,
            None,
            Instant::now() + Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(e.contains("process 0 at"), "{e}");
    }
}
