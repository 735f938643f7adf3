//! Elements as bytes, with their timestamp, window and pane: what crosses a thread,
//! process or disk boundary inside one job (spill files, a distributed runner's exchange).

use crate::coder::{read_timestamp, write_timestamp, Coder, CoderError};
use crate::window::{Window, WindowedValue};
use crate::windowed_coder::{read_pane, write_pane};

/// Appends a windowed value: value (nested, with `coder`), timestamp, window, pane.
///
/// # Errors
/// When the value does not fit `coder`.
pub fn encode_windowed(
    coder: &Coder,
    wv: &WindowedValue,
    out: &mut Vec<u8>,
) -> std::result::Result<(), CoderError> {
    coder.encode(&wv.value, out, true)?;
    write_timestamp(wv.timestamp, out);
    encode_window(&wv.window, out);
    write_pane(&wv.pane, out);
    Ok(())
}

/// Decodes what [`encode_windowed`] wrote.
///
/// # Errors
/// When the bytes are not such an encoding.
pub fn decode_windowed(
    coder: &Coder,
    input: &mut &[u8],
) -> std::result::Result<WindowedValue, CoderError> {
    let value = coder.decode(input, true)?;
    let timestamp = read_timestamp(input)?;
    let window = decode_window(input)?;
    let pane = read_pane(input)?;
    Ok(WindowedValue {
        value,
        timestamp,
        window,
        pane,
    })
}

/// Appends a window: 0 for the global window, 1 and both bounds for an interval.
#[inline]
pub fn encode_window(w: &Window, out: &mut Vec<u8>) {
    match w {
        Window::Global => out.push(0),
        Window::Interval { start, end } => {
            out.push(1);
            out.extend_from_slice(&start.to_le_bytes());
            out.extend_from_slice(&end.to_le_bytes());
        }
    }
}

/// Decodes what [`encode_window`] wrote.
///
/// # Errors
/// When the bytes are not a window's encoding.
pub fn decode_window(input: &mut &[u8]) -> std::result::Result<Window, CoderError> {
    let eof = CoderError::Eof("window");
    let (&tag, rest) = input.split_first().ok_or(eof.clone())?;
    *input = rest;
    match tag {
        0 => Ok(Window::Global),
        1 => {
            if input.len() < 16 {
                return Err(eof);
            }
            let (b, rest) = input.split_at(16);
            *input = rest;
            let start = i64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
            let end = i64::from_le_bytes(b[8..].try_into().expect("8 bytes"));
            Ok(Window::Interval { start, end })
        }
        t => Err(CoderError::Invalid {
            coder: "spilled window",
            reason: format!("unknown window tag {t}"),
        }),
    }
}
