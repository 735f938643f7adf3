//! One HTTP/1.1 request over a plain TCP connection: what the job UI tests need of a
//! client (included by path, so tests need not link the Kafka helpers beside it).

use anyhow::{anyhow, Context, Result};
use std::io::{Read, Write};
use std::time::Duration;

/// Sends `METHOD path` to the server of `url` (`http://HOST:PORT/`); returns the status
/// and the body.
pub fn call(url: &str, method: &str, path: &str) -> Result<(u16, String)> {
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s =
        std::net::TcpStream::connect(host).with_context(|| format!("connecting to {host}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP response: {raw}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("bad status line: {head}"))?;
    Ok((status, body.to_string()))
}
