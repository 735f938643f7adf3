//! Triggers: when a grouping emits panes. The state machine follows Apache Beam Python's
//! trigger semantics (`apache_beam.transforms.trigger`), the reference for our tests.

/// A trigger tree.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum Trigger {
    /// Fires when the watermark passes the end of the window, and for every late element.
    #[default]
    Default,
    /// Fires on every element.
    Always,
    /// Never fires (data may still be emitted by an enclosing trigger).
    Never,
    /// Fires once when the watermark passes the end of the window; `early` and `late`
    /// (each repeated) fire before and after.
    AfterWatermark {
        /// Speculative firings before the end of the window.
        early: Option<Box<Trigger>>,
        /// Firings for late data.
        late: Option<Box<Trigger>>,
    },
    /// Fires when at least this many elements arrived in the pane.
    AfterCount(i64),
    /// Fires this many ms of processing time after the first element of the pane.
    AfterProcessingTime(i64),
    /// Fires whenever the subtrigger fires, forever.
    Repeatedly(Box<Trigger>),
    /// Fires when any subtrigger fires; finishes when any finishes.
    AfterAny(Vec<Trigger>),
    /// Fires when all subtriggers fire.
    AfterAll(Vec<Trigger>),
    /// Runs subtriggers one after the other.
    AfterEach(Vec<Trigger>),
    /// Fires with `main` until `finally` fires, then finishes.
    OrFinally(Box<Trigger>, Box<Trigger>),
}

impl Trigger {
    /// AfterWatermark with early/late firings wrapped in Repeatedly, as Beam does.
    pub fn after_watermark(early: Option<Trigger>, late: Option<Trigger>) -> Trigger {
        let wrap = |t: Trigger| match t {
            Trigger::Repeatedly(_) => Box::new(t),
            other => Box::new(Trigger::Repeatedly(Box::new(other))),
        };
        Trigger::AfterWatermark {
            early: early.map(wrap),
            late: late.map(wrap),
        }
    }

    /// Whether the trigger produces an on-time pane (affects watermark holds).
    pub fn has_ontime_pane(&self) -> bool {
        match self {
            Trigger::Default | Trigger::AfterWatermark { .. } => true,
            Trigger::Repeatedly(t) => t.has_ontime_pane(),
            Trigger::AfterAny(ts) | Trigger::AfterAll(ts) => {
                ts.iter().any(Trigger::has_ontime_pane)
            }
            Trigger::OrFinally(a, b) => a.has_ontime_pane() || b.has_ontime_pane(),
            _ => false,
        }
    }

    /// Fresh per-window state for this trigger.
    pub fn new_state(&self) -> TriggerState {
        let mut next = 0;
        self.state_with_ids(&mut next)
    }

    fn state_with_ids(&self, next: &mut u32) -> TriggerState {
        let id = *next;
        *next += 1;
        match self {
            Trigger::AfterWatermark { early, late } => TriggerState::Watermark {
                id,
                is_late: false,
                early: early.as_ref().map(|t| Box::new(t.state_with_ids(next))),
                late: late.as_ref().map(|t| Box::new(t.state_with_ids(next))),
            },
            Trigger::Repeatedly(t) => TriggerState::Nested(vec![t.state_with_ids(next)]),
            Trigger::AfterAny(ts) | Trigger::AfterAll(ts) => {
                TriggerState::Nested(ts.iter().map(|t| t.state_with_ids(next)).collect())
            }
            Trigger::OrFinally(a, b) => {
                TriggerState::Nested(vec![a.state_with_ids(next), b.state_with_ids(next)])
            }
            Trigger::AfterEach(ts) => TriggerState::Each {
                index: 0,
                subs: ts.iter().map(|t| t.state_with_ids(next)).collect(),
            },
            _ => TriggerState::Leaf {
                id,
                count: 0,
                has_timer: false,
            },
        }
    }
}

/// Event time or processing time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Domain {
    /// Event time (the watermark).
    Watermark,
    /// Processing time.
    ProcessingTime,
}

/// Per-window state of a trigger tree.
#[derive(Clone, Debug)]
pub enum TriggerState {
    /// Default, Always, Never, AfterCount, AfterProcessingTime.
    Leaf {
        /// Node id (names its timers).
        id: u32,
        /// Elements counted (AfterCount).
        count: i64,
        /// A processing-time timer is pending (AfterProcessingTime).
        has_timer: bool,
    },
    /// AfterWatermark.
    Watermark {
        /// Node id.
        id: u32,
        /// The on-time pane fired.
        is_late: bool,
        /// State of the early trigger.
        early: Option<Box<TriggerState>>,
        /// State of the late trigger.
        late: Option<Box<TriggerState>>,
    },
    /// Repeatedly, AfterAny, AfterAll, OrFinally.
    Nested(Vec<TriggerState>),
    /// AfterEach.
    Each {
        /// Current subtrigger.
        index: usize,
        /// Subtrigger states.
        subs: Vec<TriggerState>,
    },
}

/// A timer requested by a trigger: (domain, trigger node id) to timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TriggerTimer {
    /// Time domain.
    pub domain: Domain,
    /// Node id of the trigger that set it.
    pub id: u32,
    /// When it fires.
    pub timestamp: i64,
}

/// The timers of one window: one or two, kept inline.
pub type TimerList = smallvec::SmallVec<[TriggerTimer; 2]>;

/// What triggers can do besides their own state: timers and the processing-time clock.
pub struct TriggerContext<'a> {
    /// Timers of the window.
    pub timers: &'a mut TimerList,
    /// Current processing time.
    pub now: i64,
}

impl TriggerContext<'_> {
    fn set_timer(&mut self, domain: Domain, id: u32, timestamp: i64) {
        if self
            .timers
            .iter()
            .any(|t| t.domain == domain && t.id == id && t.timestamp == timestamp)
        {
            return;
        }
        self.clear_timer(domain, id);
        self.timers.push(TriggerTimer {
            domain,
            id,
            timestamp,
        });
    }

    fn clear_timer(&mut self, domain: Domain, id: u32) {
        self.timers.retain(|t| !(t.domain == domain && t.id == id));
    }
}

fn leaf(s: &mut TriggerState) -> (&mut u32, &mut i64, &mut bool) {
    match s {
        TriggerState::Leaf {
            id,
            count,
            has_timer,
        } => (id, count, has_timer),
        _ => unreachable!("trigger and state trees have the same shape"),
    }
}

fn nested(s: &mut TriggerState) -> &mut Vec<TriggerState> {
    match s {
        TriggerState::Nested(v) => v,
        _ => unreachable!("trigger and state trees have the same shape"),
    }
}

/// Window end used by triggers (exclusive end; global window: its max timestamp + 1).
fn end_of(w: &crate::Window) -> i64 {
    w.max_timestamp() + 1
}

/// Called for `n` elements added to the window together (one bundle's): triggers count
/// them; everything else they do is the same for one element or many.
pub fn on_elements(
    t: &Trigger,
    s: &mut TriggerState,
    w: &crate::Window,
    n: i64,
    cx: &mut TriggerContext<'_>,
) {
    match t {
        Trigger::Default => {
            let id = *leaf(s).0;
            cx.set_timer(Domain::Watermark, id, end_of(w));
        }
        Trigger::Always | Trigger::Never => {}
        Trigger::AfterCount(_) => *leaf(s).1 += n,
        Trigger::AfterProcessingTime(delay) => {
            let (id, _, has_timer) = leaf(s);
            if !*has_timer {
                let id = *id;
                *has_timer = true;
                let at = cx.now + delay;
                cx.set_timer(Domain::ProcessingTime, id, at);
            }
        }
        Trigger::AfterWatermark { early, late } => {
            let TriggerState::Watermark {
                id,
                is_late,
                early: es,
                late: ls,
            } = s
            else {
                unreachable!()
            };
            if *is_late && late.is_some() {
                on_elements(late.as_ref().unwrap(), ls.as_mut().unwrap(), w, n, cx);
            } else {
                cx.set_timer(Domain::Watermark, *id, end_of(w));
                if let (Some(e), Some(es)) = (early, es) {
                    on_elements(e, es, w, n, cx);
                }
            }
        }
        Trigger::Repeatedly(u) => on_elements(u, &mut nested(s)[0], w, n, cx),
        Trigger::AfterAny(ts) | Trigger::AfterAll(ts) => {
            for (t, s) in ts.iter().zip(nested(s)) {
                on_elements(t, s, w, n, cx);
            }
        }
        Trigger::OrFinally(a, b) => {
            let subs = nested(s);
            on_elements(a, &mut subs[0], w, n, cx);
            on_elements(b, &mut subs[1], w, n, cx);
        }
        Trigger::AfterEach(ts) => {
            let TriggerState::Each { index, subs } = s else {
                unreachable!()
            };
            if *index < ts.len() {
                on_elements(&ts[*index], &mut subs[*index], w, n, cx);
            }
        }
    }
}

/// Whether the trigger is ready to fire at `ts` in `domain`.
pub fn should_fire(
    t: &Trigger,
    s: &mut TriggerState,
    domain: Domain,
    ts: i64,
    w: &crate::Window,
    cx: &mut TriggerContext<'_>,
) -> bool {
    match t {
        Trigger::Default => {
            let fire = ts >= end_of(w);
            if fire {
                let id = *leaf(s).0;
                cx.clear_timer(Domain::Watermark, id);
            }
            fire
        }
        Trigger::Always => true,
        Trigger::Never => false,
        Trigger::AfterCount(n) => *leaf(s).1 >= *n,
        Trigger::AfterProcessingTime(_) => domain == Domain::ProcessingTime,
        Trigger::AfterWatermark { early, late } => {
            let TriggerState::Watermark {
                id,
                is_late,
                early: es,
                late: ls,
            } = s
            else {
                unreachable!()
            };
            if *is_late && late.is_some() {
                should_fire(
                    late.as_ref().unwrap(),
                    ls.as_mut().unwrap(),
                    domain,
                    ts,
                    w,
                    cx,
                )
            } else if ts >= end_of(w) {
                cx.clear_timer(Domain::Watermark, *id);
                true
            } else if let (Some(e), Some(es)) = (early, es) {
                should_fire(e, es, domain, ts, w, cx)
            } else {
                false
            }
        }
        Trigger::Repeatedly(u) => should_fire(u, &mut nested(s)[0], domain, ts, w, cx),
        Trigger::AfterAny(ts_) => ts_
            .iter()
            .zip(nested(s))
            .any(|(t, s)| should_fire(t, s, domain, ts, w, cx)),
        Trigger::OrFinally(a, b) => {
            let subs = nested(s);
            let (first, second) = subs.split_at_mut(1);
            should_fire(a, &mut first[0], domain, ts, w, cx)
                || should_fire(b, &mut second[0], domain, ts, w, cx)
        }
        Trigger::AfterAll(ts_) => ts_
            .iter()
            .zip(nested(s))
            .all(|(t, s)| should_fire(t, s, domain, ts, w, cx)),
        Trigger::AfterEach(ts_) => {
            let TriggerState::Each { index, subs } = s else {
                unreachable!()
            };
            *index < ts_.len() && should_fire(&ts_[*index], &mut subs[*index], domain, ts, w, cx)
        }
    }
}

/// Records a firing; returns true when the trigger is finished.
pub fn on_fire(
    t: &Trigger,
    s: &mut TriggerState,
    ts: i64,
    w: &crate::Window,
    cx: &mut TriggerContext<'_>,
) -> bool {
    match t {
        Trigger::Default | Trigger::Always => false,
        Trigger::Never | Trigger::AfterCount(_) | Trigger::AfterProcessingTime(_) => true,
        Trigger::AfterWatermark { early, late } => {
            let TriggerState::Watermark {
                is_late,
                early: es,
                late: ls,
                ..
            } = s
            else {
                unreachable!()
            };
            if *is_late && late.is_some() {
                on_fire(late.as_ref().unwrap(), ls.as_mut().unwrap(), ts, w, cx)
            } else if ts >= end_of(w) {
                *is_late = true;
                late.is_none()
            } else {
                if let (Some(e), Some(es)) = (early, es) {
                    on_fire(e, es, ts, w, cx);
                }
                false
            }
        }
        Trigger::Repeatedly(u) => {
            let sub = &mut nested(s)[0];
            if on_fire(u, sub, ts, w, cx) {
                reset(u, sub, cx);
            }
            false
        }
        Trigger::AfterAny(subs) | Trigger::AfterAll(subs) => {
            let any = matches!(t, Trigger::AfterAny(_));
            let mut finished = Vec::new();
            for (t, s) in subs.iter().zip(nested(s)) {
                // Beam Python asks the subtriggers in the watermark domain here.
                if should_fire(t, s, Domain::Watermark, ts, w, cx) {
                    finished.push(on_fire(t, s, ts, w, cx));
                }
            }
            if any {
                finished.iter().any(|f| *f)
            } else {
                finished.iter().all(|f| *f)
            }
        }
        Trigger::OrFinally(a, b) => {
            let subs = nested(s);
            let mut finished = false;
            for (t, s) in [a.as_ref(), b.as_ref()].into_iter().zip(subs.iter_mut()) {
                if should_fire(t, s, Domain::Watermark, ts, w, cx) {
                    finished |= on_fire(t, s, ts, w, cx);
                }
            }
            finished
        }
        Trigger::AfterEach(ts_) => {
            let TriggerState::Each { index, subs } = s else {
                unreachable!()
            };
            if *index < ts_.len() {
                if on_fire(&ts_[*index], &mut subs[*index], ts, w, cx) {
                    *index += 1;
                }
                *index == ts_.len()
            } else {
                false
            }
        }
    }
}

/// Resets the trigger after a firing of an enclosing Repeatedly.
pub fn reset(t: &Trigger, s: &mut TriggerState, cx: &mut TriggerContext<'_>) {
    match t {
        Trigger::Default => {
            let id = *leaf(s).0;
            cx.clear_timer(Domain::Watermark, id);
        }
        Trigger::Always | Trigger::Never => {}
        Trigger::AfterCount(_) => *leaf(s).1 = 0,
        Trigger::AfterProcessingTime(_) => *leaf(s).2 = false,
        Trigger::AfterWatermark { early, late } => {
            let TriggerState::Watermark {
                is_late,
                early: es,
                late: ls,
                ..
            } = s
            else {
                unreachable!()
            };
            if late.is_some() {
                *is_late = false;
            }
            if let (Some(e), Some(es)) = (early, es) {
                reset(e, es, cx);
            }
            if let (Some(l), Some(ls)) = (late, ls) {
                reset(l, ls, cx);
            }
        }
        Trigger::Repeatedly(u) => reset(u, &mut nested(s)[0], cx),
        Trigger::AfterAny(ts) | Trigger::AfterAll(ts) => {
            for (t, s) in ts.iter().zip(nested(s)) {
                reset(t, s, cx);
            }
        }
        Trigger::OrFinally(a, b) => {
            let subs = nested(s);
            reset(a, &mut subs[0], cx);
            reset(b, &mut subs[1], cx);
        }
        Trigger::AfterEach(ts) => {
            let TriggerState::Each { index, subs } = s else {
                unreachable!()
            };
            *index = 0;
            for (t, s) in ts.iter().zip(subs) {
                reset(t, s, cx);
            }
        }
    }
}
