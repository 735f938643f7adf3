//! The simple operators: Impulse, TestStream, WindowInto, and Flatten/Reshuffle (which
//! pass batches on).

use super::op::{forward, Op, OpCx, SourceStep, END_OF_TIME};
use crate::checkpoint::codec::{Dec, Enc};
use crate::checkpoint::{NodeState, StateOut};
use crate::error::Result;
use crate::graph::{NodeKind, TestEvent};
use crate::value::Value;
use crate::window::{PaneInfo, Window, WindowFn, WindowedValue};

pub(crate) struct ImpulseOp {
    emitted: bool,
}

impl Op for ImpulseOp {
    fn step(&mut self, cx: &mut OpCx<'_>) -> Result<SourceStep> {
        if self.emitted {
            return Ok(SourceStep::Finished);
        }
        self.emitted = true;
        cx.out[0].push(WindowedValue::in_global_window(Value::Bytes(Vec::new())));
        Ok(SourceStep::Progressed {
            advance_processing_time: 0,
        })
    }
    fn snapshot(&mut self, out: &mut StateOut, _cx: &mut OpCx<'_>) -> Result<()> {
        if out.full() || self.emitted {
            out.put(b"", Enc::new().bool(self.emitted).0.clone());
        }
        Ok(())
    }
    fn restore(&mut self, state: &NodeState, cx: &mut OpCx<'_>) -> Result<()> {
        if let Some(b) = state.get(b"")? {
            let mut d = Dec::new(&b, cx.name);
            self.emitted = d.bool()?;
            d.end()?;
        }
        Ok(())
    }
    fn hold(&self) -> i64 {
        if self.emitted {
            END_OF_TIME
        } else {
            i64::MIN
        }
    }
}

struct TestStreamOp {
    events: Vec<TestEvent>,
    pos: usize,
    wm: i64,
}

impl Op for TestStreamOp {
    fn step(&mut self, cx: &mut OpCx<'_>) -> Result<SourceStep> {
        let Some(event) = self.events.get(self.pos) else {
            self.wm = END_OF_TIME;
            return Ok(SourceStep::Finished);
        };
        self.pos += 1;
        let mut advance = 0;
        match event {
            TestEvent::Elements(items) => {
                cx.out[0].extend(items.iter().map(|(v, ts)| WindowedValue {
                    value: v.clone(),
                    timestamp: *ts,
                    window: Window::Global,
                    pane: PaneInfo::NO_FIRING,
                }));
            }
            TestEvent::Watermark(w) => self.wm = self.wm.max(*w),
            TestEvent::ProcessingTime(d) => advance = *d,
        }
        Ok(SourceStep::Progressed {
            advance_processing_time: advance,
        })
    }
    fn hold(&self) -> i64 {
        self.wm
    }
    fn stop(&mut self) {
        self.pos = self.events.len();
    }
    fn snapshot(&mut self, out: &mut StateOut, _cx: &mut OpCx<'_>) -> Result<()> {
        let mut e = Enc::new();
        e.u64(self.pos as u64).i64(self.wm);
        out.put(b"", e.finish());
        Ok(())
    }
    fn restore(&mut self, state: &NodeState, cx: &mut OpCx<'_>) -> Result<()> {
        if let Some(b) = state.get(b"")? {
            let mut d = Dec::new(&b, cx.name);
            let pos = d.u64()?;
            self.wm = d.i64()?;
            d.end()?;
            if pos > self.events.len() as u64 {
                return Err(crate::error::EngineError::Checkpoint(format!(
                    "'{}' was at event {pos} of {}: the test stream changed",
                    cx.name,
                    self.events.len()
                )));
            }
            self.pos = pos as usize;
        }
        Ok(())
    }
}

pub(crate) struct WindowIntoOp(pub(crate) WindowFn);

impl Op for WindowIntoOp {
    fn snapshot(&mut self, _out: &mut StateOut, _cx: &mut OpCx<'_>) -> Result<()> {
        Ok(()) // stateless
    }
    fn restore(&mut self, _state: &NodeState, _cx: &mut OpCx<'_>) -> Result<()> {
        Ok(())
    }
    fn process(
        &mut self,
        _slot: usize,
        batch: &mut Vec<WindowedValue>,
        cx: &mut OpCx<'_>,
    ) -> Result<()> {
        // Windows are assigned in place when each element gets exactly one.
        let mut i = 0;
        while i < batch.len() {
            match self.0.assign_one(batch[i].timestamp) {
                Some(window) => batch[i].window = window,
                None => break,
            }
            i += 1;
        }
        if i == batch.len() {
            forward(batch, &mut cx.out[0]);
            return Ok(());
        }
        let out = &mut cx.out[0];
        out.extend(batch.drain(..i));
        for wv in batch.drain(..) {
            match self.0.assign_one(wv.timestamp) {
                Some(window) => out.push(WindowedValue { window, ..wv }),
                None => out.extend(self.0.assign(wv.timestamp).into_iter().map(|window| {
                    WindowedValue {
                        window,
                        ..wv.clone()
                    }
                })),
            }
        }
        Ok(())
    }
}

pub(crate) struct PassOp;

impl Op for PassOp {
    fn snapshot(&mut self, _out: &mut StateOut, _cx: &mut OpCx<'_>) -> Result<()> {
        Ok(()) // stateless
    }
    fn restore(&mut self, _state: &NodeState, _cx: &mut OpCx<'_>) -> Result<()> {
        Ok(())
    }
    fn process(
        &mut self,
        _slot: usize,
        batch: &mut Vec<WindowedValue>,
        cx: &mut OpCx<'_>,
    ) -> Result<()> {
        forward(batch, &mut cx.out[0]);
        Ok(())
    }
}

/// The simple operator of `node`, if it is one (Impulse, TestStream, WindowInto, Flatten,
/// Reshuffle).
pub(crate) fn for_node(kind: &NodeKind) -> Option<Box<dyn Op>> {
    Some(match kind {
        NodeKind::Impulse => Box::new(ImpulseOp { emitted: false }),
        NodeKind::TestStream { events } => Box::new(TestStreamOp {
            events: events.clone(),
            pos: 0,
            wm: i64::MIN,
        }),
        NodeKind::WindowInto { window_fn } => Box::new(WindowIntoOp(*window_fn)),
        NodeKind::Flatten | NodeKind::Reshuffle => Box::new(PassOp),
        _ => return None,
    })
}
