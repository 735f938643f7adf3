//! Helpers shared by the examples (and their tests).

/// The words of a line: maximal runs of letters, digits and apostrophes (Beam's `[\w']+`).
pub fn words(line: &str) -> impl Iterator<Item = &str> {
    line.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '\''))
        .filter(|w| !w.is_empty())
}
