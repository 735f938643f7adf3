//! The distributed runner over a real network link: two processes in network namespaces
//! of their own (each with its own network stack and address, joined by a virtual
//! Ethernet link, as two machines are), started over a hosts file. A job gives the local
//! runner's output; cutting the link fails both processes after the peer timeout, each
//! naming the other, instead of a hang.
//!
//! Network namespaces need root (CI runs as root): without the right to make them, the
//! tests say so on standard error and check nothing.

use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod common;
use common::{example, lines, output_within};

/// Runs `ip` with `args`; its error output when it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    let o = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// Two network namespaces joined by a veth link, `10.77.0.1` and `10.77.0.2`; removed
/// when dropped (with the link).
struct Net {
    spaces: [String; 2],
    links: [String; 2],
}

impl Net {
    const ADDRESSES: [&'static str; 2] = ["10.77.0.1", "10.77.0.2"];

    /// Makes the namespaces; `None` (said on standard error) when this user may not.
    fn create() -> Option<Net> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let tag = format!("{}{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let net = Net {
            spaces: [format!("bl{tag}a"), format!("bl{tag}b")],
            links: [format!("v{tag}a"), format!("v{tag}b")],
        };
        if let Err(e) = ip(&["netns", "add", &net.spaces[0]]) {
            eprintln!("skipped: network namespaces cannot be made here (needs root): {e}");
            return None;
        }
        let set_up = || -> Result<(), String> {
            ip(&["netns", "add", &net.spaces[1]])?;
            let [la, lb] = &net.links;
            ip(&["link", "add", la, "type", "veth", "peer", "name", lb])?;
            for i in 0..2 {
                let (ns, link) = (&net.spaces[i], &net.links[i]);
                ip(&["link", "set", link, "netns", ns])?;
                let cidr = format!("{}/24", Net::ADDRESSES[i]);
                ip(&["-n", ns, "addr", "add", &cidr, "dev", link])?;
                ip(&["-n", ns, "link", "set", link, "up"])?;
                ip(&["-n", ns, "link", "set", "lo", "up"])?;
            }
            Ok(())
        };
        // Namespaces made, then a step failed: that is a real error.
        set_up().unwrap();
        Some(net)
    }

    /// Runs example `name` with `args` in namespace `i`.
    fn spawn(&self, i: usize, name: &str, args: &[String]) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.spaces[i]])
            .arg(example(name))
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Cuts the link (as a pulled cable or a failed switch would).
    fn cut(&self) {
        ip(&["-n", &self.spaces[0], "link", "set", &self.links[0], "down"]).unwrap();
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in &self.spaces {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// A hosts file in `dir` naming both namespaces' addresses.
fn hosts_file(dir: &std::path::Path) -> String {
    let path = dir.join("hosts");
    let lines: Vec<String> = Net::ADDRESSES.iter().map(|a| format!("{a}:7400")).collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    path.display().to_string()
}

#[test]
fn a_job_over_two_network_namespaces_matches_the_local_runner() {
    let Some(net) = Net::create() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..20_000u64 {
        text.push_str(&format!("w{} x{}\n", i % 501, i % 7));
    }
    std::fs::write(dir.path().join("in.txt"), text).unwrap();
    let hosts = hosts_file(dir.path());
    let d = dir.path().display();
    let args = |prefix: &str| {
        vec![
            format!("--input={d}/in.txt"),
            format!("--output={d}/{prefix}"),
        ]
    };
    let local = Command::new(example("wordcount"))
        .args(args("local"))
        .output()
        .unwrap();
    assert!(local.status.success());
    let children: Vec<Child> = (0..2)
        .map(|i| {
            let mut a = args("net");
            a.push("--runner=distributed".into());
            a.push(format!("--hosts={hosts}"));
            a.push(format!("--process-id={i}"));
            net.spawn(i, "wordcount", &a)
        })
        .collect();
    for c in children {
        let o = output_within(c, Duration::from_secs(60)).expect("the process ended");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let (a, b) = (lines(dir.path(), "local"), lines(dir.path(), "net"));
    assert!(a.len() > 500);
    assert_eq!(a, b);
}

#[test]
fn a_cut_link_fails_both_processes_after_the_peer_timeout_naming_each_other() {
    let Some(net) = Net::create() else { return };
    let dir = tempfile::tempdir().unwrap();
    let hosts = hosts_file(dir.path());
    let children: Vec<Child> = (0..2)
        .map(|i| {
            let a = [
                "--streaming".to_string(),
                "--rate=2000".into(),
                "--quiet".into(),
                "--runner=distributed".into(),
                "--peer-timeout=2s".into(),
                format!("--hosts={hosts}"),
                format!("--process-id={i}"),
            ];
            net.spawn(i, "clickstream", &a)
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    net.cut();
    let cut = Instant::now();
    let outputs: Vec<Option<Output>> = children
        .into_iter()
        .map(|c| output_within(c, Duration::from_secs(20)))
        .collect();
    let took = cut.elapsed();
    for (i, o) in outputs.into_iter().enumerate() {
        let o = o.unwrap_or_else(|| panic!("process {i} still ran 20 s after the cut"));
        assert!(!o.status.success(), "process {i} succeeded");
        let stderr = String::from_utf8_lossy(&o.stderr);
        let other = format!(
            "process {} ({}:7400) sent no heartbeat for 2s",
            1 - i,
            Net::ADDRESSES[1 - i]
        );
        assert!(stderr.contains(&other), "process {i}: {stderr}");
    }
    assert!(took < Duration::from_secs(10), "{took:?}");
}
