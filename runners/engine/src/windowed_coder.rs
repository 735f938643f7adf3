//! Beam's coders of windows, panes and windowed values (`beam:coder:windowed_value:v1`),
//! byte-for-byte, over the value coders of [`crate::coder`].

use crate::coder::{
    decode_iterable, read_timestamp, read_varint, take, write_timestamp, write_varint, CResult,
    Coder, CoderError,
};
use crate::time::Timestamp;
use crate::value::Value;
use crate::window::{PaneInfo, Timing, Window};

/// Coder of a window type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WindowCoder {
    /// `beam:coder:global_window:v1` (encodes nothing)
    Global,
    /// `beam:coder:interval_window:v1` (end timestamp, then span as varint)
    Interval,
}

impl WindowCoder {
    /// Appends the encoding of `w`.
    ///
    /// # Errors
    /// [`CoderError::Mismatch`] when the window kind does not match the coder.
    pub fn encode(&self, w: &Window, out: &mut Vec<u8>) -> CResult<()> {
        match (self, w) {
            (WindowCoder::Global, Window::Global) => Ok(()),
            (WindowCoder::Interval, Window::Interval { start, end }) => {
                write_timestamp(*end, out);
                write_varint((end - start) as u64, out);
                Ok(())
            }
            _ => Err(CoderError::Mismatch {
                coder: format!("{self:?} window"),
                found: "window of another kind",
            }),
        }
    }

    /// Decodes one window.
    ///
    /// # Errors
    /// On truncated input.
    pub fn decode(&self, input: &mut &[u8]) -> CResult<Window> {
        match self {
            WindowCoder::Global => Ok(Window::Global),
            WindowCoder::Interval => {
                let end = read_timestamp(input)?;
                let span = read_varint(input)? as i64;
                Ok(Window::Interval {
                    start: end - span,
                    end,
                })
            }
        }
    }
}

/// Appends a pane info in Beam's compact encoding.
pub fn write_pane(p: &PaneInfo, out: &mut Vec<u8>) {
    let timing = match p.timing {
        Timing::Early => 0u8,
        Timing::OnTime => 1,
        Timing::Late => 2,
        Timing::Unknown => 3,
    };
    let low = u8::from(p.is_first) | (u8::from(p.is_last) << 1) | (timing << 2);
    let derived = if p.timing == Timing::Early {
        -1
    } else {
        p.index
    };
    if p.index == 0 && p.nonspeculative_index == derived {
        out.push(low);
    } else if p.nonspeculative_index == derived {
        out.push(0x10 | low);
        write_varint(p.index as u64, out);
    } else {
        out.push(0x20 | low);
        write_varint(p.index as u64, out);
        write_varint(p.nonspeculative_index as u64, out);
    }
}

/// Reads a pane info written by [`write_pane`].
///
/// # Errors
/// On truncated input or an unknown encoding tag.
pub fn read_pane(input: &mut &[u8]) -> CResult<PaneInfo> {
    let b = take(input, 1, "pane info")?[0];
    let timing = match (b >> 2) & 3 {
        0 => Timing::Early,
        1 => Timing::OnTime,
        2 => Timing::Late,
        _ => Timing::Unknown,
    };
    let derive = |index: i64| if timing == Timing::Early { -1 } else { index };
    let (index, nonspeculative_index) = match b >> 4 {
        0 => (0, derive(0)),
        1 => {
            let i = read_varint(input)? as i64;
            (i, derive(i))
        }
        2 => (read_varint(input)? as i64, read_varint(input)? as i64),
        t => {
            return Err(CoderError::Invalid {
                coder: "pane info",
                reason: format!("unknown encoding {t}"),
            })
        }
    };
    Ok(PaneInfo {
        is_first: b & 1 != 0,
        is_last: b & 2 != 0,
        timing,
        index,
        nonspeculative_index,
    })
}

/// A value with all its windows, as `beam:coder:windowed_value:v1` carries it.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowedValues {
    /// The element.
    pub value: Value,
    /// Event time in milliseconds.
    pub timestamp: Timestamp,
    /// All windows of the element.
    pub windows: Vec<Window>,
    /// The pane.
    pub pane: PaneInfo,
}

/// `beam:coder:windowed_value:v1`: timestamp, windows, pane, then the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowedValueCoder {
    /// Coder of the element.
    pub value: Coder,
    /// Coder of the windows.
    pub window: WindowCoder,
}

impl WindowedValueCoder {
    /// Appends the encoding of `wv`.
    ///
    /// # Errors
    /// When the value or a window does not fit its coder.
    pub fn encode(&self, wv: &WindowedValues, out: &mut Vec<u8>, nested: bool) -> CResult<()> {
        write_timestamp(wv.timestamp, out);
        out.extend_from_slice(&(wv.windows.len() as i32).to_be_bytes());
        for w in &wv.windows {
            self.window.encode(w, out)?;
        }
        write_pane(&wv.pane, out);
        self.value.encode(&wv.value, out, nested)
    }

    /// Decodes only the metadata part (timestamp, windows, pane).
    ///
    /// # Errors
    /// On malformed input.
    pub fn decode_metadata(
        &self,
        input: &mut &[u8],
    ) -> CResult<(Timestamp, Vec<Window>, PaneInfo)> {
        let timestamp = read_timestamp(input)?;
        let windows = decode_iterable(input, |i, out| {
            out.push(self.window.decode(i)?);
            Ok(())
        })?;
        let pane = read_pane(input)?;
        Ok((timestamp, windows, pane))
    }

    /// Decodes one windowed value.
    ///
    /// # Errors
    /// On malformed input.
    pub fn decode(&self, input: &mut &[u8], nested: bool) -> CResult<WindowedValues> {
        let (timestamp, windows, pane) = self.decode_metadata(input)?;
        let value = self.value.decode(input, nested)?;
        Ok(WindowedValues {
            value,
            timestamp,
            windows,
            pane,
        })
    }
}
