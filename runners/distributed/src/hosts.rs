//! The hosts file of a multi-machine job: one `host:port` per process, in process order.

use std::fmt;

/// A malformed hosts file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("hosts file, line {line}: {reason}")]
pub struct HostsError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// One process's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Parses a hosts file: one `host:port` per line, in process order; blank lines and `#`
/// comments are skipped.
///
/// # Examples
///
/// ```
/// use beamline_runner_distributed::hosts::parse_hosts;
/// let hosts = parse_hosts("# job\nworker-0.beamline:2101\nworker-1.beamline:2101\n").unwrap();
/// assert_eq!(hosts.len(), 2);
/// assert_eq!(hosts[1].to_string(), "worker-1.beamline:2101");
/// ```
///
/// # Errors
/// A line without a port, a port that is not a number from 1 to 65535, a duplicated
/// address, or no hosts at all.
pub fn parse_hosts(text: &str) -> Result<Vec<Host>, HostsError> {
    let mut hosts: Vec<Host> = Vec::new();
    let mut last = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        last = i + 1;
        if line.is_empty() {
            continue;
        }
        let err = |reason: String| HostsError {
            line: i + 1,
            reason,
        };
        let (host, port) = line
            .rsplit_once(':')
            .ok_or_else(|| err(format!("'{line}' is not host:port")))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| err(format!("'{port}' is not a port (1-65535)")))?;
        if host.is_empty() {
            return Err(err(format!("'{line}' has no host")));
        }
        let h = Host {
            host: host.to_string(),
            port,
        };
        if hosts.contains(&h) {
            return Err(err(format!("{h} is listed twice")));
        }
        hosts.push(h);
    }
    if hosts.is_empty() {
        return Err(HostsError {
            line: last.max(1),
            reason: "no hosts listed".into(),
        });
    }
    Ok(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_are_errors_naming_the_line() {
        assert_eq!(parse_hosts("a:1\nb\n").unwrap_err().line, 2);
        assert!(parse_hosts("a:0")
            .unwrap_err()
            .reason
            .contains("not a port"));
        assert!(parse_hosts("a:1\na:1")
            .unwrap_err()
            .reason
            .contains("twice"));
        assert!(parse_hosts("# nothing\n")
            .unwrap_err()
            .reason
            .contains("no hosts"));
        assert!(parse_hosts(":80").unwrap_err().reason.contains("no host"));
    }
}
