//! The state of one key and window of a streaming grouping: its pane contents (values,
//! or an accumulator when the combine is lifted), trigger state, timers and hold.

use crate::combine::{Accumulator, CombineFnInvoker};
use crate::error::{EngineError, Result, UserError};
use crate::trigger::{TimerList, Trigger, TriggerState};
use crate::value::Value;
use crate::window::{PaneInfo, TimestampCombiner, Timing, Window};

/// How panes hold their contents: every value, or one accumulator per pane.
pub(crate) enum Contents {
    /// The values (GroupByKey, or a combine whose accumulators cannot be copied for
    /// accumulating panes).
    Values(Vec<Value>),
    /// The running accumulator of a lifted combine.
    Accumulator(Accumulator),
}

/// What a window's trigger keeps: touched once per bundle or timer, not per element, so
/// kept apart from the per-element fields (which then share fewer cache lines).
pub(crate) struct TriggerPart {
    pub state: TriggerState,
    pub timers: TimerList,
    /// The timers as last put in the operator's timer index (unchanged ones are not
    /// indexed again).
    pub indexed: TimerList,
}

pub(crate) struct WinState {
    pub contents: Contents,
    /// Elements added since the last pane.
    pub pending: usize,
    /// Elements added in the current bundle, not yet shown to the trigger.
    pub bundle_added: i64,
    pub trig: Box<TriggerPart>,
    pub hold: Option<i64>,
    /// While the window is touched by the current bundle: its hold before the bundle.
    pub bundle_hold: Option<Option<i64>>,
    pub index: i64,
    pub nonspeculative: i64,
    pub tombstone: bool,
}

/// What adding an element needs to know of the operator.
pub(crate) struct AddCx<'a> {
    pub combine: Option<&'a dyn CombineFnInvoker>,
    pub timestamp_combiner: TimestampCombiner,
    pub output_watermark: i64,
}

impl WinState {
    /// A fresh window; `lifted` gives it an accumulator instead of a value list.
    pub(crate) fn new(
        trigger: &Trigger,
        combine: Option<&dyn CombineFnInvoker>,
        lifted: bool,
    ) -> Self {
        let contents = match combine {
            Some(f) if lifted => Contents::Accumulator(f.create_accumulator()),
            _ => Contents::Values(Vec::new()),
        };
        WinState {
            contents,
            pending: 0,
            bundle_added: 0,
            trig: Box::new(TriggerPart {
                state: trigger.new_state(),
                timers: TimerList::new(),
                indexed: TimerList::new(),
            }),
            hold: None,
            bundle_hold: None,
            index: 0,
            nonspeculative: 0,
            tombstone: false,
        }
    }

    /// Adds one element of the current bundle (value, watermark hold; the trigger sees
    /// the bundle's elements when it ends); returns true when this is the window's first
    /// element in the bundle.
    ///
    /// # Errors
    /// When the combine's `add_input` fails.
    pub(crate) fn add(
        &mut self,
        value: Value,
        ts: i64,
        w: &Window,
        cx: &AddCx<'_>,
    ) -> Result<bool, UserError> {
        let first = self.note(ts, 1, w, cx);
        match (&mut self.contents, cx.combine) {
            (Contents::Accumulator(acc), Some(f)) => f.add_input(acc, value)?,
            (Contents::Values(values), _) => values.push(value),
            (Contents::Accumulator(_), None) => {
                return Err("an accumulator pane without a combine".into())
            }
        }
        Ok(first)
    }

    /// Adds `count` elements of the current bundle folded into `acc` (lifted combines),
    /// `latest` their latest timestamp; as [`WinState::add`] otherwise.
    ///
    /// # Errors
    /// When the combine's merge fails, or the pane holds values.
    pub(crate) fn add_partial(
        &mut self,
        acc: Accumulator,
        count: usize,
        latest: i64,
        w: &Window,
        cx: &AddCx<'_>,
    ) -> Result<bool, UserError> {
        let first = self.note(latest, count, w, cx);
        match (&mut self.contents, cx.combine) {
            (Contents::Accumulator(into), Some(f)) => f.merge_into(into, acc)?,
            _ => return Err("a partial result for a pane without an accumulator".into()),
        }
        Ok(first)
    }

    /// Counts `n` added elements with timestamp `ts` (for a partial result: the latest)
    /// and updates the hold; true when they are the window's first in the bundle.
    fn note(&mut self, ts: i64, n: usize, w: &Window, cx: &AddCx<'_>) -> bool {
        let first = self.bundle_hold.is_none();
        if first {
            self.bundle_hold = Some(self.hold);
        }
        let t = match cx.timestamp_combiner {
            TimestampCombiner::EndOfWindow => w.max_timestamp(),
            _ => ts,
        };
        // Elements behind the output watermark do not hold it back.
        if t >= cx.output_watermark {
            self.hold = Some(match (cx.timestamp_combiner, self.hold) {
                (_, None) => t,
                (TimestampCombiner::Latest, Some(h)) => h.max(t),
                (_, Some(h)) => h.min(t),
            });
        }
        self.pending += n;
        self.bundle_added += n as i64;
        first
    }

    /// Moves the contents of a window merged away into this one.
    ///
    /// # Errors
    /// When the combine's `merge_accumulators` fails.
    pub(crate) fn absorb(
        &mut self,
        other: Contents,
        combine: Option<&dyn CombineFnInvoker>,
    ) -> Result<(), UserError> {
        match (&mut self.contents, other, combine) {
            (Contents::Values(a), Contents::Values(mut b), _) => a.append(&mut b),
            (Contents::Accumulator(a), Contents::Accumulator(b), Some(f)) => f.merge_into(a, b)?,
            _ => return Err("merging panes of different kinds".into()),
        }
        Ok(())
    }

    /// The pane's metadata as it fires (Beam's pane index and timing rules); advances
    /// the indexes.
    pub(crate) fn next_pane(
        &mut self,
        w: &Window,
        finished: bool,
        output_watermark: i64,
        maybe_ontime: bool,
    ) -> PaneInfo {
        let index = self.index;
        self.index += 1;
        self.pending = 0;
        let (timing, nonspeculative) = if output_watermark <= w.max_timestamp() {
            let ns = if self.nonspeculative != 0 {
                self.nonspeculative += 1;
                self.nonspeculative - 1
            } else {
                -1
            };
            (Timing::Early, ns)
        } else {
            let ns = self.nonspeculative;
            self.nonspeculative += 1;
            let timing = if maybe_ontime && ns == 0 {
                Timing::OnTime
            } else {
                Timing::Late
            };
            (timing, ns)
        };
        PaneInfo {
            is_first: index == 0,
            is_last: finished,
            timing,
            index,
            nonspeculative_index: nonspeculative,
        }
    }

    /// The value of the firing pane; the contents are kept for accumulating panes that
    /// go on, and reset otherwise.
    ///
    /// # Errors
    /// When the combine fails, or an accumulating pane's accumulator cannot be copied.
    pub(crate) fn pane_value(
        &mut self,
        keep: bool,
        combine: Option<&dyn CombineFnInvoker>,
        name: &str,
    ) -> Result<Value> {
        let user = |e: UserError| EngineError::user(name, e);
        match (&mut self.contents, combine) {
            (Contents::Values(values), None) => Ok(Value::List(if keep {
                values.clone()
            } else {
                std::mem::take(values)
            })),
            (Contents::Values(values), Some(f)) => {
                let values = if keep {
                    values.clone()
                } else {
                    std::mem::take(values)
                };
                let mut acc = f.create_accumulator();
                for v in values {
                    f.add_input(&mut acc, v).map_err(user)?;
                }
                f.extract_output(acc).map_err(user)
            }
            (Contents::Accumulator(acc), Some(f)) => {
                let acc = if keep {
                    acc.try_clone().ok_or_else(|| {
                        EngineError::InvalidPipeline(format!(
                            "'{name}': the combine's accumulator cannot be copied for an \
                             accumulating pane"
                        ))
                    })?
                } else {
                    std::mem::replace(acc, f.create_accumulator())
                };
                f.extract_output(acc).map_err(user)
            }
            (Contents::Accumulator(_), None) => Err(EngineError::InvalidPipeline(format!(
                "'{name}': an accumulator pane without a combine"
            ))),
        }
    }
}

/// The windows of one key. The newest is kept inline (in the key's table entry): most
/// elements fall into it, and then finding the key finds the window without another
/// cache miss. Older ones are few, so a vector searched linearly, newest first, grown
/// in small steps.
#[derive(Default)]
pub(crate) struct Windows {
    head: Option<(Window, WinState)>,
    /// Older windows, oldest first.
    rest: Vec<(Window, WinState)>,
}

impl Windows {
    pub(crate) fn get(&self, w: &Window) -> Option<&WinState> {
        match &self.head {
            Some((x, ws)) if x == w => Some(ws),
            _ => self
                .rest
                .iter()
                .rev()
                .find(|(x, _)| x == w)
                .map(|(_, ws)| ws),
        }
    }

    pub(crate) fn get_mut(&mut self, w: &Window) -> Option<&mut WinState> {
        match &mut self.head {
            Some((x, ws)) if x == w => Some(ws),
            _ => self
                .rest
                .iter_mut()
                .rev()
                .find(|(x, _)| x == w)
                .map(|(_, ws)| ws),
        }
    }

    /// The state of `w`, created by `new` if absent.
    pub(crate) fn get_or_insert_with(
        &mut self,
        w: Window,
        new: impl FnOnce() -> WinState,
    ) -> &mut WinState {
        if !matches!(&self.head, Some((x, _)) if *x == w) {
            match self.rest.iter().rposition(|(x, _)| *x == w) {
                Some(i) => return &mut self.rest[i].1,
                None => self.insert(w, new()),
            }
        }
        &mut self.head.as_mut().expect("set above").1
    }

    /// Adds window `w` (not present) as the newest.
    pub(crate) fn insert(&mut self, w: Window, ws: WinState) {
        if let Some(old) = self.head.replace((w, ws)) {
            if self.rest.len() == self.rest.capacity() {
                self.rest.reserve_exact((self.rest.len() / 2).max(1));
            }
            self.rest.push(old);
        }
    }

    pub(crate) fn remove(&mut self, w: &Window) -> Option<WinState> {
        if matches!(&self.head, Some((x, _)) if x == w) {
            let removed = std::mem::replace(&mut self.head, self.rest.pop());
            return removed.map(|(_, ws)| ws);
        }
        let i = self.rest.iter().rposition(|(x, _)| x == w)?;
        // Order-keeping: the newest windows stay at the end, where searches start.
        Some(self.rest.remove(i).1)
    }

    /// Every window with its state, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Window, &WinState)> + '_ {
        self.rest.iter().chain(&self.head).map(|(w, ws)| (w, ws))
    }

    pub(crate) fn windows(&self) -> impl Iterator<Item = Window> + '_ {
        self.head.iter().chain(&self.rest).map(|(w, _)| *w)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_none()
    }
}
