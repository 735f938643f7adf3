//! Declared pipeline options: name, type, default and help; checking given options against them.
//!
//! Every runner declares the options it reads ([`crate::runner::Runner::options`]); the
//! SDK adds its own and the program's. An option nobody declared is an error that names
//! it and suggests the closest declared one, and `--help` prints the declarations.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The type of an option's value: how it is checked and shown in help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionKind {
    /// `--name` alone, or `--name=true|false`.
    Flag,
    /// A whole number.
    Integer,
    /// A byte size: `512MB`, `2GiB`, `1000000`.
    Size,
    /// A duration: `500ms`, `10s`, `5m`, `1h`.
    Duration,
    /// Any text (a path, a name, a pattern).
    Text,
}

impl OptionKind {
    /// What `--help` shows after the option name (`=N`, `=SIZE`...; nothing for a flag).
    pub fn placeholder(self) -> &'static str {
        match self {
            OptionKind::Flag => "",
            OptionKind::Integer => "=N",
            OptionKind::Size => "=SIZE",
            OptionKind::Duration => "=DURATION",
            OptionKind::Text => "=VALUE",
        }
    }

    /// Checks that `value` is of this kind.
    ///
    /// # Errors
    /// A message saying what is wrong with `value`.
    pub fn check(self, value: &str) -> Result<(), String> {
        match self {
            OptionKind::Flag => match value {
                "true" | "false" | "True" | "False" | "1" | "0" => Ok(()),
                _ => Err(format!("'{value}' is not true or false")),
            },
            OptionKind::Integer => value
                .parse::<i64>()
                .map(drop)
                .map_err(|_| format!("'{value}' is not a whole number")),
            OptionKind::Size => parse_size(value).map(drop),
            OptionKind::Duration => parse_duration_ms(value).map(drop),
            OptionKind::Text => Ok(()),
        }
    }
}

/// One declared option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionSpec {
    /// The name as written on the command line, without dashes (`memory-budget`); `-`
    /// and `_` are the same.
    pub name: String,
    /// The value's type.
    pub kind: OptionKind,
    /// The default, as shown in help (`None`: unset unless given).
    pub default: Option<String>,
    /// One line of help.
    pub help: String,
}

impl OptionSpec {
    /// An option `name` of `kind` with one line of `help` and no default.
    pub fn new(name: &str, kind: OptionKind, help: &str) -> OptionSpec {
        OptionSpec {
            name: name.to_string(),
            kind,
            default: None,
            help: help.to_string(),
        }
    }

    /// The same option with a default shown in help.
    pub fn default_value(mut self, default: impl ToString) -> OptionSpec {
        self.default = Some(default.to_string());
        self
    }

    /// The name as options are stored: `_` for `-`.
    pub fn key(&self) -> String {
        self.name.replace('-', "_")
    }
}

/// A group of declared options with a title, for help and checking.
#[derive(Clone, Debug, Default)]
pub struct OptionGroup {
    /// Shown above the group in help ("program options", "local runner options").
    pub title: String,
    /// The options.
    pub options: Vec<OptionSpec>,
}

/// Checks every given option (`name -> value`, names with `_`) against `groups`.
///
/// # Errors
/// One line naming the first option that no group declares (with the closest declared
/// name, when one is close), or whose value is not of the declared kind.
pub fn validate(given: &BTreeMap<String, String>, groups: &[OptionGroup]) -> Result<(), String> {
    let declared: Vec<&OptionSpec> = groups.iter().flat_map(|g| &g.options).collect();
    for (name, value) in given {
        match declared.iter().find(|s| s.key() == *name) {
            Some(spec) => spec
                .kind
                .check(value)
                .map_err(|why| format!("--{}: {why}", spec.name))?,
            None => {
                let shown = name.replace('_', "-");
                let hint = closest(name, declared.iter().map(|s| s.key()))
                    .map(|c| format!("; did you mean --{}?", c.replace('_', "-")))
                    .unwrap_or_else(|| "; --help lists the options".to_string());
                return Err(format!("unknown option --{shown}{hint}"));
            }
        }
    }
    Ok(())
}

/// The candidate closest to `name` by edit distance, if close enough to be a typo.
pub fn closest(name: &str, candidates: impl IntoIterator<Item = String>) -> Option<String> {
    let limit = (name.len() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, &c), c))
        .filter(|(d, c)| *d <= limit || c.starts_with(name) || name.starts_with(c.as_str()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Help text listing `groups`: one line per option with its type, default and help.
pub fn help_text(usage: &str, groups: &[OptionGroup]) -> String {
    let mut out = format!("Usage: {usage}\n");
    for g in groups.iter().filter(|g| !g.options.is_empty()) {
        let _ = writeln!(out, "\n{}:", g.title);
        for o in &g.options {
            let flag = format!("--{}{}", o.name, o.kind.placeholder());
            let default = o
                .default
                .as_ref()
                .map(|d| format!(" [default: {d}]"))
                .unwrap_or_default();
            let _ = writeln!(out, "  {flag:<28} {}{default}", o.help);
        }
    }
    out
}

/// A leading number and the unit after it (trimmed), as in `512MB` or `1.5 s`.
fn number_and_unit(s: &str) -> Option<(f64, &str)> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    Some((num.parse().ok()?, unit.trim()))
}

/// Parses a byte size: a number with an optional unit (`B`, `KB`/`KiB`, `MB`/`MiB`,
/// `GB`/`GiB`; units are powers of 1024, case-insensitive).
///
/// # Examples
///
/// ```
/// use beamline_engine::options::parse_size;
/// assert_eq!(parse_size("2KB"), Ok(2048));
/// assert!(parse_size("lots").is_err());
/// ```
///
/// # Errors
/// A message saying what is wrong with `s`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let (num, unit) = number_and_unit(s)
        .ok_or_else(|| format!("'{s}' is not a size (examples: 512MB, 2GiB, 1000000)"))?;
    let mult: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{s}' (use B, KB, MB or GB)"
            ))
        }
    };
    let bytes = num * mult;
    if bytes < 1.0 {
        return Err(format!("'{s}' is less than one byte"));
    }
    Ok(bytes as usize)
}

/// Parses a duration into milliseconds: a number with a unit `ms`, `s`, `m` or `h`
/// (a bare number is seconds).
///
/// # Examples
///
/// ```
/// use beamline_engine::options::parse_duration_ms;
/// assert_eq!(parse_duration_ms("10s"), Ok(10_000));
/// assert_eq!(parse_duration_ms("250ms"), Ok(250));
/// ```
///
/// # Errors
/// A message saying what is wrong with `s`.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let (num, unit) = number_and_unit(s)
        .ok_or_else(|| format!("'{s}' is not a duration (examples: 500ms, 10s, 5m)"))?;
    let mult = match unit {
        "ms" => 1.0,
        "" | "s" => 1000.0,
        "m" | "min" => 60_000.0,
        "h" => 3_600_000.0,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{s}' (use ms, s, m or h)"
            ))
        }
    };
    Ok((num * mult) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups() -> Vec<OptionGroup> {
        vec![OptionGroup {
            title: "runner options".into(),
            options: vec![
                OptionSpec::new("threads", OptionKind::Integer, "worker threads"),
                OptionSpec::new("memory-budget", OptionKind::Size, "spill past this"),
                OptionSpec::new("streaming", OptionKind::Flag, "streaming mode"),
            ],
        }]
    }

    fn given(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn unknown_option_suggests_the_closest() {
        let e = validate(&given(&[("thread", "2")]), &groups()).unwrap_err();
        assert_eq!(e, "unknown option --thread; did you mean --threads?");
        let e = validate(&given(&[("memory_budge", "1MB")]), &groups()).unwrap_err();
        assert!(e.contains("did you mean --memory-budget?"), "{e}");
        let e = validate(&given(&[("zzz", "1")]), &groups()).unwrap_err();
        assert_eq!(e, "unknown option --zzz; --help lists the options");
    }

    #[test]
    fn values_are_checked_by_kind() {
        assert!(validate(
            &given(&[("threads", "2"), ("streaming", "true")]),
            &groups()
        )
        .is_ok());
        let e = validate(&given(&[("threads", "two")]), &groups()).unwrap_err();
        assert_eq!(e, "--threads: 'two' is not a whole number");
        assert!(validate(&given(&[("memory_budget", "3 parsecs")]), &groups()).is_err());
    }

    #[test]
    fn help_lists_every_option_with_its_default() {
        let mut g = groups();
        g[0].options[0] = g[0].options[0].clone().default_value("all cores");
        let h = help_text("prog [OPTIONS]", &g);
        assert!(h.contains("--threads=N"), "{h}");
        assert!(h.contains("[default: all cores]"), "{h}");
        assert!(h.contains("--memory-budget=SIZE"), "{h}");
    }

    #[test]
    fn durations_and_sizes_parse() {
        assert_eq!(parse_duration_ms("1.5s"), Ok(1500));
        assert_eq!(parse_duration_ms("2m"), Ok(120_000));
        assert!(parse_duration_ms("2 fortnights").is_err());
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert!(parse_size("0.1B").is_err());
    }
}
