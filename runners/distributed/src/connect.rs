//! Connecting a job's processes to each other, with a deadline.
//!
//! Timely's own set-up retries a refused connection once a second, waits for peers
//! forever and prints every attempt; here a process connects to every lower process id and
//! accepts every higher one, retrying every few milliseconds until the deadline, then hands
//! the sockets to Timely. A peer that never comes is an error naming it. Each pair of
//! processes has a second connection for heartbeats (see [`crate::heartbeat`]).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// How long to wait between attempts to reach a peer that is not listening yet, or to
/// accept one that did not connect yet: short, as a job's processes start within
/// milliseconds of each other (at 10 ms, a job waited 5 ms on average for nothing).
const RETRY: Duration = Duration::from_millis(1);

/// What a connection carries, said by the dialing side after its process id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Channel {
    /// Timely's data and progress.
    Data = 0,
    /// Heartbeats.
    Heartbeat = 1,
}

/// A process's connections to the others: one of each kind per process, `None` at its own.
#[derive(Debug)]
pub(crate) struct Connected {
    /// Timely's sockets.
    pub(crate) data: Vec<Option<TcpStream>>,
    /// The heartbeats' sockets.
    pub(crate) beats: Vec<Option<TcpStream>>,
}

/// Connects process `me` of `addresses` (one per process) to every other one, accepting
/// on `listener` (already listening on `addresses[me]`) or, without one, on a listener of
/// its own.
///
/// # Errors
/// This process's address cannot be listened on, or a peer is not connected by
/// `deadline` (the message names the missing processes).
pub(crate) fn connect_all(
    addresses: &[String],
    me: usize,
    listener: Option<TcpListener>,
    deadline: Instant,
) -> Result<Connected, String> {
    let listener = match listener {
        Some(l) => l,
        None => TcpListener::bind(&addresses[me])
            .map_err(|e| format!("cannot listen on {}: {e}", addresses[me]))?,
    };
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot listen on {}: {e}", addresses[me]))?;
    let none = || {
        (0..addresses.len())
            .map(|_| None)
            .collect::<Vec<Option<TcpStream>>>()
    };
    let (mut sockets, mut beats) = (none(), none());
    for (peer, address) in addresses.iter().enumerate().take(me) {
        sockets[peer] = Some(dial(address, peer, me, Channel::Data, deadline)?);
        beats[peer] = Some(dial(address, peer, me, Channel::Heartbeat, deadline)?);
    }
    let missing = |sockets: &[Option<TcpStream>], beats: &[Option<TcpStream>], p: usize| {
        p > me && (sockets[p].is_none() || beats[p].is_none())
    };
    while (0..addresses.len()).any(|p| missing(&sockets, &beats, p)) {
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream
                    .set_nonblocking(false)
                    .and_then(|()| stream.set_nodelay(true))
                    .and_then(|()| stream.set_read_timeout(Some(remaining(deadline))))
                    .map_err(|e| format!("accepting a peer: {e}"))?;
                let mut id = [0u8; 9];
                stream
                    .read_exact(&mut id)
                    .map_err(|e| format!("a peer did not say who it is: {e}"))?;
                let peer = u64::from_le_bytes(id[..8].try_into().expect("8 bytes")) as usize;
                let slot = match id[8] {
                    0 => &mut sockets,
                    1 => &mut beats,
                    other => return Err(format!("a peer asks for connection kind {other}")),
                };
                if peer <= me || peer >= addresses.len() || slot[peer].is_some() {
                    return Err(format!("a peer claims to be process {peer}"));
                }
                stream
                    .set_read_timeout(None)
                    .map_err(|e| format!("accepting a peer: {e}"))?;
                slot[peer] = Some(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    let missing: Vec<String> = (0..addresses.len())
                        .filter(|&p| missing(&sockets, &beats, p))
                        .map(|p| p.to_string())
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
    Ok(Connected {
        data: sockets,
        beats,
    })
}

fn remaining(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

/// Connects to `peer` at `address` for `channel`, retrying until `deadline`, and says who
/// we are and what the connection is for.
fn dial(
    address: &str,
    peer: usize,
    me: usize,
    channel: Channel,
    deadline: Instant,
) -> Result<TcpStream, String> {
    let mut hello = (me as u64).to_le_bytes().to_vec();
    hello.push(channel as u8);
    loop {
        match TcpStream::connect(address) {
            Ok(mut stream) => {
                stream
                    .set_nodelay(true)
                    .and_then(|()| stream.write_all(&hello))
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
        let connected: Vec<Connected> = handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect();
        for (me, c) in connected.iter().enumerate() {
            for p in 0..3 {
                assert_eq!(c.data[p].is_some(), p != me);
                assert_eq!(c.beats[p].is_some(), p != me);
            }
        }
        // Each socket reaches the peer it is listed under, on the same kind of connection.
        for (me, c) in connected.iter().enumerate() {
            for p in (0..3).filter(|&p| p != me) {
                let hello = [me as u8, 0, me as u8, 1];
                c.data[p].as_ref().unwrap().write_all(&hello[..2]).unwrap();
                c.beats[p].as_ref().unwrap().write_all(&hello[2..]).unwrap();
            }
        }
        for (me, c) in connected.iter().enumerate() {
            for p in (0..3).filter(|&p| p != me) {
                let (mut d, mut b) = ([0u8; 2], [0u8; 2]);
                c.data[p].as_ref().unwrap().read_exact(&mut d).unwrap();
                c.beats[p].as_ref().unwrap().read_exact(&mut b).unwrap();
                assert_eq!(
                    (d, b),
                    ([p as u8, 0], [p as u8, 1]),
                    "process {me} from {p}"
                );
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
