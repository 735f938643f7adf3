//! Pipeline options from the command line: `--runner=local --threads=4 --input=...`.

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::str::FromStr;

/// Options of a pipeline, parsed from `--name=value`, `--name value` or `--flag`.
///
/// `--runner` picks the runner (default `local`); runners read their own options
/// (`--threads` for the local runner); your program reads its own with [`get`](Self::get).
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
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PipelineOptions {
    values: BTreeMap<String, String>,
    positional: Vec<String>,
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
