//! Pipeline options from the command line: `--runner=local --threads=4 --input=...`.

use crate::error::{Error, Result};
use beamline_engine::options::{OptionKind, OptionSpec};
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::Arc;

/// Options of a pipeline, parsed from `--name=value`, `--name value` or `--flag`.
///
/// `--runner` picks the runner (default `local`); runners read their own options
/// (`--threads` for the local runner); your program reads its own with [`get`](Self::get)
/// and declares them with [`declare`](Self::declare) for `--help`. When the pipeline runs,
/// an option that neither the program, the SDK nor the runner knows is an error naming it
/// (a program knows the options it declared or read).
///
/// # Examples
///
/// ```
/// use beamline::PipelineOptions;
/// let o = PipelineOptions::from_args(["prog", "--input=a.txt", "--threads", "2", "--verbose"]).unwrap();
/// assert_eq!(o.runner(), "local");
/// assert_eq!(o.get::<u32>("threads").unwrap(), Some(2));
/// assert_eq!(o.get::<String>("input").unwrap().as_deref(), Some("a.txt"));
/// assert!(o.flag("verbose"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct PipelineOptions {
    values: BTreeMap<String, String>,
    positional: Vec<String>,
    declared: Vec<OptionSpec>,
    /// Names the program read, shared by every copy (what `p.options()` returns).
    read: Arc<Mutex<BTreeSet<String>>>,
}

impl PartialEq for PipelineOptions {
    fn eq(&self, other: &Self) -> bool {
        self.values == other.values
            && self.positional == other.positional
            && self.declared == other.declared
    }
}

/// The options the SDK itself reads, whatever the runner.
pub(crate) fn sdk_options() -> Vec<OptionSpec> {
    vec![
        OptionSpec::new(
            "runner",
            OptionKind::Text,
            "where the pipeline runs: any runner linked into this program",
        )
        .default_value("local"),
        OptionSpec::new(
            "streaming",
            OptionKind::Flag,
            "event-driven execution (chosen anyway for unbounded sources, TestStream, triggers)",
        )
        .default_value(false),
        OptionSpec::new(
            "job-name",
            OptionKind::Text,
            "the job's name in progress lines, the summary and the job UI (default: the program's)",
        ),
        OptionSpec::new(
            "quiet",
            OptionKind::Flag,
            "no progress bar, status lines or end-of-job summary on stderr",
        )
        .default_value(false),
        OptionSpec::new(
            "ui",
            OptionKind::Text,
            "serve the job UI while the job runs: --ui (127.0.0.1:8686, or the next free port) or --ui=HOST:PORT",
        ),
        OptionSpec::new(
            "log-level",
            OptionKind::Text,
            "log level on stderr: error, warn, info, debug, trace (RUST_LOG overrides it)",
        )
        .default_value("warn"),
        OptionSpec::new("help", OptionKind::Flag, "print the options and exit"),
    ]
}

impl PipelineOptions {
    /// Parses the process's command line.
    ///
    /// # Errors
    /// As [`PipelineOptions::from_args`].
    pub fn from_env() -> Result<Self> {
        Self::from_args(std::env::args())
    }

    /// Parses `args`; the first item is the program name and is skipped.
    ///
    /// # Errors
    /// [`Error::Option`] for an empty option name such as `--=x`.
    pub fn from_args<I, S>(args: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let args: Vec<String> = args.into_iter().map(Into::into).skip(1).collect();
        let mut o = PipelineOptions::default();
        let mut i = 0;
        while i < args.len() {
            let a = &args[i];
            if let Some(body) = a.strip_prefix("--") {
                let (name, value) = match body.split_once('=') {
                    Some((n, v)) => (n.to_string(), v.to_string()),
                    None if i + 1 < args.len() && !args[i + 1].starts_with("--") => {
                        i += 1;
                        (body.to_string(), args[i].clone())
                    }
                    None => (body.to_string(), "true".to_string()),
                };
                if name.is_empty() {
                    return Err(Error::Option {
                        name,
                        reason: format!("'{a}' has no option name"),
                    });
                }
                o.values.insert(name.replace('-', "_"), value);
            } else {
                o.positional.push(a.clone());
            }
            i += 1;
        }
        Ok(o)
    }

    /// Declares an option of the program, for `--help` and for checking its value.
    ///
    /// # Examples
    ///
    /// ```
    /// use beamline::{OptionKind, OptionSpec, PipelineOptions};
    /// let o = PipelineOptions::from_args(["prog", "--input=a.txt"])
    ///     .unwrap()
    ///     .declare(OptionSpec::new("input", OptionKind::Text, "files to read"));
    /// assert_eq!(o.declared()[0].name, "input");
    /// ```
    pub fn declare(mut self, spec: OptionSpec) -> Self {
        self.declared.push(spec);
        self
    }

    /// The options the program declared.
    pub fn declared(&self) -> &[OptionSpec] {
        &self.declared
    }

    /// The program's options: those declared, then those only read.
    pub fn program_options(&self) -> Vec<OptionSpec> {
        let mut out = self.declared.clone();
        for name in self.read.lock().iter() {
            if !out.iter().any(|s| s.key() == *name) {
                out.push(OptionSpec::new(
                    &name.replace('_', "-"),
                    OptionKind::Text,
                    "read by the program",
                ));
            }
        }
        out
    }

    /// True if `--help` was given.
    pub fn wants_help(&self) -> bool {
        self.values.contains_key("help")
    }

    fn mark_read(&self, name: &str) {
        self.read.lock().insert(name.replace('-', "_"));
    }

    /// Sets an option.
    pub fn set(mut self, name: &str, value: impl ToString) -> Self {
        self.values
            .insert(name.replace('-', "_"), value.to_string());
        self
    }

    /// The runner name (`--runner`, default `local`).
    pub fn runner(&self) -> &str {
        self.values
            .get("runner")
            .map(String::as_str)
            .unwrap_or("local")
    }

    /// A typed option, `None` if absent.
    ///
    /// # Errors
    /// [`Error::Option`] when the value does not parse as `T`.
    pub fn get<T: FromStr>(&self, name: &str) -> Result<Option<T>>
    where
        T::Err: std::fmt::Display,
    {
        self.mark_read(name);
        match self.values.get(name) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|e: T::Err| Error::Option {
                name: name.into(),
                reason: format!("'{v}': {e}"),
            }),
        }
    }

    /// A required typed option.
    ///
    /// # Errors
    /// [`Error::Option`] when absent or malformed.
    pub fn require<T: FromStr>(&self, name: &str) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        self.get(name)?.ok_or_else(|| Error::Option {
            name: name.into(),
            reason: "is required".into(),
        })
    }

    /// True if `--name` was given (without a value, or with `true`).
    pub fn flag(&self, name: &str) -> bool {
        self.mark_read(name);
        self.values.get(name).is_some_and(|v| v == "true")
    }

    /// Arguments that were not options.
    pub fn positional(&self) -> &[String] {
        &self.positional
    }

    /// All options as name/value pairs.
    pub fn values(&self) -> &BTreeMap<String, String> {
        &self.values
    }
}
