//! The worker side of the launcher's protocol: who this process is, and the lines it
//! reports to the launcher on its standard error.
//!
//! The launcher starts each worker with [`PROCESS_ID_ENV`] and [`PROCESSES_ENV`] set. A
//! worker listens on a port of its own choosing and says where ([`listening`]); once every
//! worker did, the launcher writes the list of addresses, one line, to each worker's
//! standard input ([`addresses_from_launcher`]): no port is chosen by one process and
//! taken by another, which another program could take in between. A worker says [`ready`]
//! once it joined the others, and [`fail`] with the original error (transform name and
//! message) before it exits with a failure; every other line of its standard error is
//! passed through, prefixed with its process id.

/// Environment variable with the worker's process id (0-based).
pub const PROCESS_ID_ENV: &str = "BEAMLINE_PROCESS_ID";

/// Environment variable with the number of processes of the job.
pub const PROCESSES_ENV: &str = "BEAMLINE_PROCESSES";

/// What a worker's error says when it failed because a peer process went away (the
/// launcher prefers the peer's own error).
pub(crate) const PEER_LOST: &str = "the connection to a peer process was lost";

/// Prefix of the protocol's lines.
pub(crate) const MARKER: &str = "beamline-worker:";

/// This process's place in a job the launcher started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerEnv {
    /// Its process id, `0..processes`.
    pub process_id: usize,
    /// How many processes the job has.
    pub processes: usize,
}

/// The worker environment, if the launcher started this process.
///
/// # Errors
/// A message naming the variable when one is set but malformed.
pub fn worker_env() -> Result<Option<WorkerEnv>, String> {
    let Some(id) = std::env::var_os(PROCESS_ID_ENV) else {
        return Ok(None);
    };
    let parse = |name: &str, v: Option<std::ffi::OsString>| -> Result<usize, String> {
        v.and_then(|v| v.to_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| format!("{name} must be a number"))
    };
    let process_id = parse(PROCESS_ID_ENV, Some(id))?;
    let processes = parse(PROCESSES_ENV, std::env::var_os(PROCESSES_ENV))?;
    if process_id >= processes {
        return Err(format!(
            "{PROCESS_ID_ENV}={process_id} is not below {PROCESSES_ENV}={processes}"
        ));
    }
    Ok(Some(WorkerEnv {
        process_id,
        processes,
    }))
}

/// Ends this process when its launcher is gone: the launcher holds the write end of this
/// process's standard input, which closes however the launcher ends (a crash, a kill, a
/// program that returned without waiting for its job).
pub fn end_with_launcher() {
    let _ = std::thread::Builder::new()
        .name("beamline-launcher-watch".into())
        .spawn(|| {
            let mut buf = [0u8; 64];
            loop {
                match std::io::Read::read(&mut std::io::stdin(), &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            // Its standard error may be gone with it: writing must not panic.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                b"beamline: the launcher of this worker process is gone; ending\n",
            );
            std::process::exit(1);
        });
}

/// Tells the launcher where this worker listens for its peers.
pub fn listening(address: &str) {
    eprintln!("{MARKER} listening {address}");
}

/// The address of every process of the job, as the launcher sends them once each one
/// said where it listens (see [`listening`]); call before [`end_with_launcher`].
///
/// # Errors
/// The launcher is gone, or its line is not `processes` addresses.
pub fn addresses_from_launcher(processes: usize) -> Result<Vec<String>, String> {
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(0) => return Err("the launcher ended before it sent the peers' addresses".into()),
        Ok(_) => {}
        Err(e) => return Err(format!("cannot read the peers' addresses: {e}")),
    }
    parse_addresses(&line, processes)
}

/// The addresses in the launcher's line, one per process.
fn parse_addresses(line: &str, processes: usize) -> Result<Vec<String>, String> {
    let line = line.trim_end();
    let addresses: Vec<String> = line.split(',').map(String::from).collect();
    if addresses.len() != processes || addresses.iter().any(String::is_empty) {
        return Err(format!(
            "the launcher sent {} address(es) for {processes} processes: '{line}'",
            addresses.len(),
        ));
    }
    Ok(addresses)
}

/// Tells the launcher that this worker joined the job.
pub fn ready() {
    eprintln!("{MARKER} ready");
}

/// Sends the launcher this process's metrics (one line of JSON).
pub fn metrics(json: &str) {
    eprintln!("{MARKER} metrics {json}");
}

/// Sends the launcher this process's live counts (one line of JSON).
pub fn progress(json: &str) {
    eprintln!("{MARKER} progress {json}");
}

/// Tells the launcher why this worker fails (one line; newlines are escaped).
pub fn fail(error: &str) {
    eprintln!(
        "{MARKER} error {}",
        error.replace('\\', "\\\\").replace('\n', "\\n")
    );
}

/// A protocol line read back: what a worker reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Report {
    Listening(String),
    Ready,
    Error(String),
    Metrics(String),
    Progress(String),
}

/// The report in `line`, if it is a protocol line.
pub(crate) fn parse_report(line: &str) -> Option<Report> {
    let rest = line.strip_prefix(MARKER)?.trim_start();
    if rest == "ready" {
        return Some(Report::Ready);
    }
    if let Some(address) = rest.strip_prefix("listening ") {
        return Some(Report::Listening(address.to_string()));
    }
    if let Some(json) = rest.strip_prefix("metrics ") {
        return Some(Report::Metrics(json.to_string()));
    }
    if let Some(json) = rest.strip_prefix("progress ") {
        return Some(Report::Progress(json.to_string()));
    }
    let msg = rest.strip_prefix("error ")?;
    let mut out = String::with_capacity(msg.len());
    let mut chars = msg.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('n') => out.push('\n'),
                Some(o) => out.push(o),
                None => out.push('\\'),
            },
            (c, false) => out.push(c),
        }
    }
    Some(Report::Error(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_survive_the_line_protocol() {
        let msg = "transform 'Parse' failed: bad line\nat 3 \\ 4";
        let line = format!(
            "{MARKER} error {}",
            msg.replace('\\', "\\\\").replace('\n', "\\n")
        );
        assert_eq!(parse_report(&line), Some(Report::Error(msg.into())));
        assert_eq!(
            parse_report(&format!("{MARKER} ready")),
            Some(Report::Ready)
        );
        assert_eq!(
            parse_report(&format!("{MARKER} listening 127.0.0.1:4711")),
            Some(Report::Listening("127.0.0.1:4711".into()))
        );
        assert_eq!(parse_report("something else"), None);
    }

    #[test]
    fn the_launchers_line_has_one_address_per_process() {
        assert_eq!(
            parse_addresses("127.0.0.1:1,127.0.0.1:2\n", 2).unwrap(),
            vec!["127.0.0.1:1", "127.0.0.1:2"]
        );
        let e = parse_addresses("127.0.0.1:1\n", 2).unwrap_err();
        assert!(e.contains("1 address(es) for 2 processes"), "{e}");
        assert!(parse_addresses("127.0.0.1:1,\n", 2).is_err());
    }
}
