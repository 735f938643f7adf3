//! Byte helpers for operator state in checkpoints: varints, length-prefixed bytes,
//! windows, and a reader whose every failure says what it was reading.

use crate::coder::{read_varint, write_varint};
use crate::element_codec::{decode_window, encode_window};
use crate::error::{EngineError, Result};
use crate::window::Window;

/// Appends values to a state record.
#[derive(Debug, Default)]
pub struct Enc(pub Vec<u8>);

impl Enc {
    /// An empty record.
    pub fn new() -> Self {
        Enc(Vec::new())
    }
    /// An unsigned integer (varint).
    pub fn u64(&mut self, v: u64) -> &mut Self {
        write_varint(v, &mut self.0);
        self
    }
    /// A signed integer (zigzag varint: small magnitudes stay short, `i64::MIN` fits).
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.u64(((v << 1) ^ (v >> 63)) as u64)
    }
    /// A flag.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.0.push(v as u8);
        self
    }
    /// Bytes, with their length first.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
    /// A window.
    pub fn window(&mut self, w: &Window) -> &mut Self {
        encode_window(w, &mut self.0);
        self
    }
    /// The record.
    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// Reads back what [`Enc`] wrote; errors name the operator's state being read.
#[derive(Debug)]
pub struct Dec<'a> {
    input: &'a [u8],
    what: &'a str,
}

impl<'a> Dec<'a> {
    /// Reads `input`, the state of `what` (named in errors).
    pub fn new(input: &'a [u8], what: &'a str) -> Self {
        Dec { input, what }
    }

    fn bad(&self, detail: impl std::fmt::Display) -> EngineError {
        EngineError::Checkpoint(format!(
            "the saved state of '{}' is corrupt: {detail}",
            self.what
        ))
    }

    /// An unsigned integer.
    ///
    /// # Errors
    /// When the record ends or the varint is malformed.
    pub fn u64(&mut self) -> Result<u64> {
        read_varint(&mut self.input).map_err(|e| self.bad(e))
    }
    /// A signed integer.
    ///
    /// # Errors
    /// As [`Dec::u64`].
    pub fn i64(&mut self) -> Result<i64> {
        let z = self.u64()?;
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }
    /// A count used to size a collection: no larger than the bytes left could hold.
    ///
    /// # Errors
    /// As [`Dec::u64`]; a count the record cannot hold.
    pub fn count(&mut self) -> Result<usize> {
        let n = self.u64()?;
        if n > self.input.len() as u64 + 1 {
            return Err(self.bad(format!(
                "a count of {n} with {} bytes left",
                self.input.len()
            )));
        }
        Ok(n as usize)
    }
    /// A flag.
    ///
    /// # Errors
    /// When the record ends.
    pub fn bool(&mut self) -> Result<bool> {
        let (&b, rest) = self
            .input
            .split_first()
            .ok_or_else(|| self.bad("ends early"))?;
        self.input = rest;
        match b {
            0 | 1 => Ok(b == 1),
            _ => Err(self.bad(format!("{b} is not a flag"))),
        }
    }
    /// Length-prefixed bytes.
    ///
    /// # Errors
    /// When the record ends before them.
    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.u64()?;
        if n > self.input.len() as u64 {
            return Err(self.bad(format!("{n} bytes wanted, {} left", self.input.len())));
        }
        let (b, rest) = self.input.split_at(n as usize);
        self.input = rest;
        Ok(b)
    }
    /// A window.
    ///
    /// # Errors
    /// When the bytes are not a window.
    pub fn window(&mut self) -> Result<Window> {
        decode_window(&mut self.input).map_err(|e| self.bad(e))
    }
    /// What is left to read (for a decoder of its own, see [`Dec::advance_to`]).
    pub fn rest(&self) -> &'a [u8] {
        self.input
    }
    /// Continues at `rest`, a tail of [`Dec::rest`] another decoder left.
    pub fn advance_to(&mut self, rest: &'a [u8]) {
        debug_assert!(rest.len() <= self.input.len());
        self.input = rest;
    }
    /// Checks the record was read to its end.
    ///
    /// # Errors
    /// When bytes are left over.
    pub fn end(&self) -> Result<()> {
        if self.input.is_empty() {
            Ok(())
        } else {
            Err(self.bad(format!("{} bytes left over", self.input.len())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back_and_bad_records_are_errors() {
        let mut e = Enc::new();
        e.i64(i64::MIN).i64(-3).u64(7).bool(true).bytes(b"abc");
        e.window(&Window::Interval { start: -5, end: 10 });
        let b = e.finish();
        let mut d = Dec::new(&b, "Count");
        assert_eq!(d.i64().unwrap(), i64::MIN);
        assert_eq!(d.i64().unwrap(), -3);
        assert_eq!(d.u64().unwrap(), 7);
        assert!(d.bool().unwrap());
        assert_eq!(d.bytes().unwrap(), b"abc");
        assert_eq!(d.window().unwrap(), Window::Interval { start: -5, end: 10 });
        d.end().unwrap();
        let err = Dec::new(&b[..3], "Count").bytes().unwrap_err().to_string();
        assert!(err.contains("'Count'") && err.contains("corrupt"), "{err}");
        assert!(Dec::new(&[200, 1], "Count").count().is_err());
    }
}
