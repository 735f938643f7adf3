//! Files named after the process that wrote them, and removing those of processes that
//! no longer run (killed before they could remove their own).

use std::path::Path;

/// Whether process `pid` is gone: known only where `/proc` lists processes (elsewhere,
/// `false`: nothing is removed on a guess).
///
/// # Examples
/// ```
/// use beamline_engine::orphans::process_gone;
/// assert!(!process_gone(std::process::id()));
/// ```
pub fn process_gone(pid: u32) -> bool {
    Path::new("/proc/self").exists() && !Path::new("/proc").join(pid.to_string()).exists()
}

/// Removes the files of `dir` named `PREFIX<pid>-…SUFFIX` whose process is gone (not this
/// process's): what a killed process left, so that killing and starting a job again and
/// again does not fill the disk. Names that do not parse, directories and files that
/// cannot be removed are left alone.
pub fn remove_orphans(dir: &Path, prefix: &str, suffix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.ends_with(suffix))
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|n| n.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && process_gone(pid) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_of_gone_processes_go_others_stay() {
        if !Path::new("/proc/self").exists() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        // A process id above the kernel's maximum never runs.
        let gone = 4_194_305;
        let me = std::process::id();
        let names = [
            format!("job-{gone}-1.pb"),
            format!("job-{gone}-2.txt"),
            format!("job-{me}-1.pb"),
            "job-service-1.pb".to_string(),
            format!("other-{gone}-1.pb"),
        ];
        for n in &names {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join(format!("job-{gone}-3.pb"))).unwrap();
        remove_orphans(dir.path(), "job-", ".pb");
        assert!(!dir.path().join(&names[0]).exists());
        for n in &names[1..] {
            assert!(dir.path().join(n).exists(), "{n} was removed");
        }
        assert!(dir.path().join(format!("job-{gone}-3.pb")).is_dir());
        assert!(process_gone(gone));
    }
}
