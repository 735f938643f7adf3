//! User state and timers of a stateful ParDo kept by the engine: cells read and written
//! through the state API (one bag per key, window and cell, holding the cell's encoding),
//! timer changes encoded with Beam's timer coder for the data stream.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use beamline_engine::coder::{read_timestamp, read_varint, write_timestamp, write_varint, Coder};
use beamline_engine::operators::state_backend::StateBackend;
use beamline_engine::state::{StateCell, StateKind, TimeDomain};
use beamline_engine::state_codec::{decode_cell, encode_cell};
use beamline_engine::value::Value;
use beamline_engine::window::{PaneInfo, Window};
use beamline_engine::windowed_coder::{read_pane, write_pane, WindowCoder};
use beamline_engine::{EngineError, Result};
use beamline_proto::fn_execution as fe;

use super::state::StateChannel;

/// Timer changes of one bundle, encoded, by timer family.
pub type TimerBuffers = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

/// The state backend of one stateful ParDo in one bundle.
pub struct FnApiState {
    /// The state stream (absent when the ParDo only has timers).
    pub channel: Option<Arc<StateChannel>>,
    /// The bundle.
    pub instruction_id: String,
    /// The ParDo's transform id in the descriptor.
    pub transform_id: String,
    /// The coder of the ParDo's keys.
    pub key_coder: Coder,
    /// Where timer changes go.
    pub timers: TimerBuffers,
}

fn window_bytes(window: &Window) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    coder_of(window)
        .encode(window, &mut out)
        .map_err(|e| EngineError::Runner(format!("encoding a window: {e}")))?;
    Ok(out)
}

fn coder_of(window: &Window) -> WindowCoder {
    match window {
        Window::Global => WindowCoder::Global,
        _ => WindowCoder::Interval,
    }
}

impl FnApiState {
    fn channel(&self) -> Result<&StateChannel> {
        self.channel.as_deref().ok_or_else(|| {
            EngineError::Runner(format!(
                "'{}' has state, but the engine gave no state endpoint",
                self.transform_id
            ))
        })
    }

    /// The state key of cell `name`: the key as the engine knows it (nested encoding).
    fn state_key(&self, key: &[u8], window: &Window, name: &str) -> Result<fe::StateKey> {
        let value = self
            .key_coder
            .decode(&mut &key[..], false)
            .map_err(|e| EngineError::Runner(format!("decoding a state key: {e}")))?;
        let mut nested = Vec::new();
        self.key_coder
            .encode(&value, &mut nested, true)
            .map_err(|e| EngineError::Runner(format!("encoding a state key: {e}")))?;
        Ok(fe::StateKey {
            r#type: Some(fe::state_key::Type::BagUserState(
                fe::state_key::BagUserState {
                    transform_id: self.transform_id.clone(),
                    user_state_id: name.into(),
                    window: window_bytes(window)?,
                    key: nested,
                },
            )),
        })
    }

    fn request(&self, key: fe::StateKey, request: fe::state_request::Request) -> Result<()> {
        self.channel()?
            .call(fe::StateRequest {
                id: String::new(),
                instruction_id: self.instruction_id.clone(),
                state_key: Some(key),
                request: Some(request),
            })
            .map(|_| ())
            .map_err(EngineError::from)
    }
}

impl StateBackend for FnApiState {
    fn load(
        &mut self,
        key: &[u8],
        window: &Window,
        decls: &[(String, StateKind)],
    ) -> Result<Vec<StateCell>> {
        let mut cells = Vec::with_capacity(decls.len());
        for (name, kind) in decls {
            let state_key = self.state_key(key, window, name)?;
            let bytes = self
                .channel()?
                .get_all(&self.instruction_id, &state_key)
                .map_err(EngineError::from)?;
            cells.push(if bytes.is_empty() {
                StateCell::Empty
            } else {
                decode_cell(kind, &mut bytes.as_slice()).map_err(|e| {
                    EngineError::Runner(format!("state '{name}' read from the engine: {e}"))
                })?
            });
        }
        Ok(cells)
    }

    fn store(
        &mut self,
        key: &[u8],
        window: &Window,
        decls: &[(String, StateKind)],
        cells: &[StateCell],
    ) -> Result<()> {
        use fe::state_request::Request;
        for (i, (name, kind)) in decls.iter().enumerate() {
            let cell = cells.get(i).unwrap_or(&StateCell::Empty);
            let state_key = self.state_key(key, window, name)?;
            self.request(state_key.clone(), Request::Clear(fe::StateClearRequest {}))?;
            if matches!(cell, StateCell::Empty) {
                continue;
            }
            let mut data = Vec::new();
            encode_cell(kind, cell, &mut data)
                .map_err(|e| EngineError::Runner(format!("state '{name}': {e}")))?;
            self.request(state_key, Request::Append(fe::StateAppendRequest { data }))?;
        }
        Ok(())
    }

    fn timer(
        &mut self,
        key: &Value,
        window: &Window,
        name: &str,
        _domain: TimeDomain,
        change: Option<(i64, i64)>,
    ) -> Result<()> {
        let mut timers = self.timers.lock().expect("timers");
        let out = timers.entry(name.to_owned()).or_default();
        encode_timer(&self.key_coder, key, window, change, out)
    }
}

/// Appends a timer as Beam's `beam:coder:timer:v1` encodes it: the key (length-prefixed:
/// the submitted timer coder's key is length-prefixed bytes), an empty dynamic tag, the
/// windows, the clear bit, then fire and hold timestamps and the pane.
pub fn encode_timer(
    key_coder: &Coder,
    key: &Value,
    window: &Window,
    change: Option<(i64, i64)>,
    out: &mut Vec<u8>,
) -> Result<()> {
    let key = key_coder
        .encode_to_vec(key)
        .map_err(|e| EngineError::Runner(format!("encoding a timer's key: {e}")))?;
    write_varint(key.len() as u64, out);
    out.extend_from_slice(&key);
    write_varint(0, out);
    out.extend_from_slice(&1u32.to_be_bytes());
    coder_of(window)
        .encode(window, out)
        .map_err(|e| EngineError::Runner(format!("encoding a timer's window: {e}")))?;
    match change {
        None => out.push(1),
        Some((fire, hold)) => {
            out.push(0);
            write_timestamp(fire, out);
            write_timestamp(hold, out);
            write_pane(&PaneInfo::NO_FIRING, out);
        }
    }
    Ok(())
}

/// A timer as the engine fires it.
#[derive(Debug)]
pub struct FiredTimer {
    /// The key, in the outer encoding (as the ParDo keys its state).
    pub key: Vec<u8>,
    /// The windows it fires in.
    pub windows: Vec<Window>,
    /// Cleared timers do not fire.
    pub cleared: bool,
    /// When the callback's outputs are stamped.
    pub hold: i64,
}

/// Reads one timer (see [`encode_timer`]) from the front of `input`, whose windows are
/// `window_coder`'s.
///
/// # Errors
/// Malformed bytes.
pub fn decode_timer(
    window_coder: &WindowCoder,
    input: &mut &[u8],
) -> std::result::Result<FiredTimer, String> {
    let len = read_varint(input).map_err(|e| e.to_string())? as usize;
    if input.len() < len {
        return Err("truncated timer key".into());
    }
    let key = input[..len].to_vec();
    *input = &input[len..];
    let tag_len = read_varint(input).map_err(|e| e.to_string())? as usize;
    if input.len() < tag_len + 4 {
        return Err("truncated timer".into());
    }
    *input = &input[tag_len..];
    let n = u32::from_be_bytes(input[..4].try_into().expect("4 bytes")) as usize;
    *input = &input[4..];
    let mut windows = Vec::with_capacity(n);
    for _ in 0..n {
        windows.push(window_coder.decode(input).map_err(|e| e.to_string())?);
    }
    let (&clear, rest) = input.split_first().ok_or("truncated timer")?;
    *input = rest;
    if clear != 0 {
        return Ok(FiredTimer {
            key,
            windows,
            cleared: true,
            hold: 0,
        });
    }
    let _fire = read_timestamp(input).map_err(|e| e.to_string())?;
    let hold = read_timestamp(input).map_err(|e| e.to_string())?;
    read_pane(input).map_err(|e| e.to_string())?;
    Ok(FiredTimer {
        key,
        windows,
        cleared: false,
        hold,
    })
}
