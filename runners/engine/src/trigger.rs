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
        TriggerState(smallvec::smallvec![0; self.nodes()])
    }

    /// Nodes in the tree; a node's id is its place in preorder, and its state slot.
    fn nodes(&self) -> usize {
        1 + match self {
            Trigger::AfterWatermark { early, late } => {
                early.as_ref().map_or(0, |t| t.nodes()) + late.as_ref().map_or(0, |t| t.nodes())
            }
            Trigger::Repeatedly(t) => t.nodes(),
            Trigger::AfterAny(ts) | Trigger::AfterAll(ts) | Trigger::AfterEach(ts) => {
                ts.iter().map(Trigger::nodes).sum()
            }
            Trigger::OrFinally(a, b) => a.nodes() + b.nodes(),
            _ => 0,
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

/// Per-window state of a trigger tree: one number per node, by node id (preorder), kept
/// inline so a window's trigger state costs no allocation of its own.
///
/// What the number means depends on the node: AfterCount counts elements,
/// AfterProcessingTime is 1 while its timer is pending, AfterWatermark is 1 once the
/// on-time pane fired, AfterEach holds the index of the running subtrigger; the others
/// keep nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TriggerState(smallvec::SmallVec<[i64; 6]>);

impl TriggerState {
    /// The numbers of the nodes, by node id (for checkpoints).
    pub fn as_slice(&self) -> &[i64] {
        &self.0
    }
    /// The state of `trigger` with these numbers (from [`TriggerState::as_slice`]); `None`
    /// when there are not as many as the trigger has nodes.
    pub fn from_slice(trigger: &Trigger, numbers: &[i64]) -> Option<Self> {
        (numbers.len() == trigger.nodes()).then(|| TriggerState(numbers.into()))
    }
}

/// Node ids of a node's children: the first follows the node, each next one follows the
/// subtree before it.
fn children<'t>(
    id: usize,
    ts: impl IntoIterator<Item = &'t Trigger>,
) -> impl Iterator<Item = (&'t Trigger, usize)> {
    ts.into_iter().scan(id + 1, |next, t| {
        let at = *next;
        *next += t.nodes();
        Some((t, at))
    })
}

/// Node ids of AfterWatermark's early and late subtriggers.
fn watermark_children(id: usize, early: &Option<Box<Trigger>>) -> (usize, usize) {
    (id + 1, id + 1 + early.as_ref().map_or(0, |t| t.nodes()))
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
    elements_at(t, 0, &mut s.0, w, n, cx);
}

fn elements_at(
    t: &Trigger,
    id: usize,
    s: &mut [i64],
    w: &crate::Window,
    n: i64,
    cx: &mut TriggerContext<'_>,
) {
    match t {
        Trigger::Default => cx.set_timer(Domain::Watermark, id as u32, end_of(w)),
        Trigger::Always | Trigger::Never => {}
        Trigger::AfterCount(_) => s[id] += n,
        Trigger::AfterProcessingTime(delay) => {
            if s[id] == 0 {
                s[id] = 1;
                let at = cx.now + delay;
                cx.set_timer(Domain::ProcessingTime, id as u32, at);
            }
        }
        Trigger::AfterWatermark { early, late } => {
            let (early_id, late_id) = watermark_children(id, early);
            match (s[id] != 0, late) {
                (true, Some(l)) => elements_at(l, late_id, s, w, n, cx),
                _ => {
                    cx.set_timer(Domain::Watermark, id as u32, end_of(w));
                    if let Some(e) = early {
                        elements_at(e, early_id, s, w, n, cx);
                    }
                }
            }
        }
        Trigger::Repeatedly(u) => elements_at(u, id + 1, s, w, n, cx),
        Trigger::AfterAny(ts) | Trigger::AfterAll(ts) => {
            for (t, at) in children(id, ts) {
                elements_at(t, at, s, w, n, cx);
            }
        }
        Trigger::OrFinally(a, b) => {
            for (t, at) in children(id, [&**a, &**b]) {
                elements_at(t, at, s, w, n, cx);
            }
        }
        Trigger::AfterEach(ts) => {
            if let Some((t, at)) = children(id, ts).nth(s[id] as usize) {
                elements_at(t, at, s, w, n, cx);
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
    fire_at(t, 0, &mut s.0, domain, ts, w, cx)
}

fn fire_at(
    t: &Trigger,
    id: usize,
    s: &mut [i64],
    domain: Domain,
    ts: i64,
    w: &crate::Window,
    cx: &mut TriggerContext<'_>,
) -> bool {
    match t {
        Trigger::Default => {
            let fire = ts >= end_of(w);
            if fire {
                cx.clear_timer(Domain::Watermark, id as u32);
            }
            fire
        }
        Trigger::Always => true,
        Trigger::Never => false,
        Trigger::AfterCount(n) => s[id] >= *n,
        Trigger::AfterProcessingTime(_) => domain == Domain::ProcessingTime,
        Trigger::AfterWatermark { early, late } => {
            let (early_id, late_id) = watermark_children(id, early);
            match (s[id] != 0, late, early) {
                (true, Some(l), _) => fire_at(l, late_id, s, domain, ts, w, cx),
                _ if ts >= end_of(w) => {
                    cx.clear_timer(Domain::Watermark, id as u32);
                    true
                }
                (_, _, Some(e)) => fire_at(e, early_id, s, domain, ts, w, cx),
                _ => false,
            }
        }
        Trigger::Repeatedly(u) => fire_at(u, id + 1, s, domain, ts, w, cx),
        Trigger::AfterAny(subs) => {
            children(id, subs).any(|(t, at)| fire_at(t, at, s, domain, ts, w, cx))
        }
        Trigger::OrFinally(a, b) => {
            children(id, [&**a, &**b]).any(|(t, at)| fire_at(t, at, s, domain, ts, w, cx))
        }
        Trigger::AfterAll(subs) => {
            children(id, subs).all(|(t, at)| fire_at(t, at, s, domain, ts, w, cx))
        }
        Trigger::AfterEach(subs) => children(id, subs)
            .nth(s[id] as usize)
            .is_some_and(|(t, at)| fire_at(t, at, s, domain, ts, w, cx)),
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
    fired_at(t, 0, &mut s.0, ts, w, cx)
}

fn fired_at(
    t: &Trigger,
    id: usize,
    s: &mut [i64],
    ts: i64,
    w: &crate::Window,
    cx: &mut TriggerContext<'_>,
) -> bool {
    match t {
        Trigger::Default | Trigger::Always => false,
        Trigger::Never | Trigger::AfterCount(_) | Trigger::AfterProcessingTime(_) => true,
        Trigger::AfterWatermark { early, late } => {
            let (early_id, late_id) = watermark_children(id, early);
            match (s[id] != 0, late) {
                (true, Some(l)) => fired_at(l, late_id, s, ts, w, cx),
                _ if ts >= end_of(w) => {
                    s[id] = 1;
                    late.is_none()
                }
                _ => {
                    if let Some(e) = early {
                        fired_at(e, early_id, s, ts, w, cx);
                    }
                    false
                }
            }
        }
        Trigger::Repeatedly(u) => {
            if fired_at(u, id + 1, s, ts, w, cx) {
                reset_at(u, id + 1, s, cx);
            }
            false
        }
        Trigger::AfterAny(subs) | Trigger::AfterAll(subs) => {
            let any = matches!(t, Trigger::AfterAny(_));
            fired_subs(children(id, subs), any, s, ts, w, cx)
        }
        Trigger::OrFinally(a, b) => fired_subs(children(id, [&**a, &**b]), true, s, ts, w, cx),
        Trigger::AfterEach(subs) => {
            let index = s[id] as usize;
            match children(id, subs).nth(index) {
                Some((t, at)) => {
                    if fired_at(t, at, s, ts, w, cx) {
                        s[id] += 1;
                    }
                    s[id] as usize == subs.len()
                }
                None => false,
            }
        }
    }
}

/// Fires the subtriggers that are ready (asked in the watermark domain, as Beam Python
/// does); finished when any (`any`) or all of the fired ones finished.
fn fired_subs<'t>(
    subs: impl Iterator<Item = (&'t Trigger, usize)>,
    any: bool,
    s: &mut [i64],
    ts: i64,
    w: &crate::Window,
    cx: &mut TriggerContext<'_>,
) -> bool {
    let (mut fired, mut finished) = (0, 0);
    for (t, at) in subs {
        if fire_at(t, at, s, Domain::Watermark, ts, w, cx) {
            fired += 1;
            finished += usize::from(fired_at(t, at, s, ts, w, cx));
        }
    }
    if any {
        finished > 0
    } else {
        finished == fired
    }
}

/// Resets the trigger after a firing of an enclosing Repeatedly.
pub fn reset(t: &Trigger, s: &mut TriggerState, cx: &mut TriggerContext<'_>) {
    reset_at(t, 0, &mut s.0, cx);
}

fn reset_at(t: &Trigger, id: usize, s: &mut [i64], cx: &mut TriggerContext<'_>) {
    match t {
        Trigger::Default => cx.clear_timer(Domain::Watermark, id as u32),
        Trigger::Always | Trigger::Never => {}
        Trigger::AfterCount(_) | Trigger::AfterProcessingTime(_) => s[id] = 0,
        Trigger::AfterWatermark { early, late } => {
            let (early_id, late_id) = watermark_children(id, early);
            if late.is_some() {
                s[id] = 0;
            }
            if let Some(e) = early {
                reset_at(e, early_id, s, cx);
            }
            if let Some(l) = late {
                reset_at(l, late_id, s, cx);
            }
        }
        Trigger::Repeatedly(u) => reset_at(u, id + 1, s, cx),
        Trigger::AfterAny(ts) | Trigger::AfterAll(ts) => {
            for (t, at) in children(id, ts) {
                reset_at(t, at, s, cx);
            }
        }
        Trigger::OrFinally(a, b) => {
            for (t, at) in children(id, [&**a, &**b]) {
                reset_at(t, at, s, cx);
            }
        }
        Trigger::AfterEach(ts) => {
            s[id] = 0;
            for (t, at) in children(id, ts) {
                reset_at(t, at, s, cx);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Window;

    /// A trigger with its state and timers for one window.
    struct Probe {
        t: Trigger,
        s: TriggerState,
        w: Window,
        timers: TimerList,
    }

    impl Probe {
        fn new(t: Trigger, w: Window) -> Self {
            let s = t.new_state();
            Probe {
                t,
                s,
                w,
                timers: TimerList::new(),
            }
        }

        fn add(&mut self, n: i64, now: i64) {
            let mut cx = TriggerContext {
                timers: &mut self.timers,
                now,
            };
            on_elements(&self.t, &mut self.s, &self.w, n, &mut cx);
        }

        /// Whether it fires at watermark `ts`; if so, records the firing and says whether
        /// the trigger finished.
        fn fire(&mut self, ts: i64) -> Option<bool> {
            let mut cx = TriggerContext {
                timers: &mut self.timers,
                now: 0,
            };
            should_fire(
                &self.t,
                &mut self.s,
                Domain::Watermark,
                ts,
                &self.w,
                &mut cx,
            )
            .then(|| on_fire(&self.t, &mut self.s, ts, &self.w, &mut cx))
        }
    }

    #[test]
    fn nodes_are_numbered_in_preorder_and_hold_their_own_state() {
        // AfterWatermark(0) { early: Repeatedly(1) { AfterProcessingTime(2) },
        //                     late: Repeatedly(3) { AfterCount(4) } }
        let t = Trigger::after_watermark(
            Some(Trigger::AfterProcessingTime(100)),
            Some(Trigger::AfterCount(2)),
        );
        let mut p = Probe::new(t, Window::Interval { start: 0, end: 10 });
        assert_eq!(p.s, TriggerState(smallvec::smallvec![0; 5]));
        p.add(1, 5);
        // The watermark timer is the root's, the processing-time one the early leaf's.
        let timer = |domain, id, timestamp| TriggerTimer {
            domain,
            id,
            timestamp,
        };
        assert_eq!(
            p.timers.as_slice(),
            &[
                timer(Domain::Watermark, 0, 10),
                timer(Domain::ProcessingTime, 2, 105)
            ]
        );
        assert_eq!(p.s.0[2], 1, "the early leaf's timer is pending");
        // On time: the root is done with early firings, late elements count at node 4.
        assert_eq!(p.fire(10), Some(false));
        assert_eq!(p.s.0[0], 1);
        p.add(1, 6);
        assert_eq!(p.fire(11), None);
        p.add(1, 6);
        assert_eq!(p.s.0[4], 2);
        // Repeatedly resets the count it fired on.
        assert_eq!(p.fire(11), Some(false));
        assert_eq!(p.s.0[4], 0);
    }

    #[test]
    fn after_each_moves_from_subtrigger_to_subtrigger_by_index() {
        // AfterEach(0) [AfterCount(1), AfterCount(2)]: node 1, then node 2.
        let t = Trigger::AfterEach(vec![Trigger::AfterCount(1), Trigger::AfterCount(2)]);
        let mut p = Probe::new(t, Window::Global);
        p.add(1, 0);
        assert_eq!(p.fire(0), Some(false));
        assert_eq!(p.s.0[0], 1, "on to the second subtrigger");
        p.add(1, 0);
        assert_eq!(p.s.0[2], 1);
        assert_eq!(p.fire(0), None);
        p.add(1, 0);
        assert_eq!(p.fire(0), Some(true), "finished");
    }
}
