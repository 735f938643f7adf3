//! Windows, panes, windowed values and the standard window functions.

use crate::time::{Timestamp, GLOBAL_WINDOW_MAX_TIMESTAMP, MIN_TIMESTAMP};
use crate::value::Value;

/// A window an element belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Window {
    /// The single window spanning all of time.
    Global,
    /// The half-open interval `[start, end)` in milliseconds.
    Interval {
        /// Inclusive start.
        start: Timestamp,
        /// Exclusive end.
        end: Timestamp,
    },
}

impl Window {
    /// The largest timestamp inside the window.
    pub fn max_timestamp(&self) -> Timestamp {
        match self {
            Window::Global => GLOBAL_WINDOW_MAX_TIMESTAMP,
            Window::Interval { end, .. } => end - 1,
        }
    }
}

/// When a pane fired relative to the watermark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timing {
    /// Before the watermark passed the end of the window.
    Early,
    /// The pane fired as the watermark passed the end of the window.
    OnTime,
    /// After the on-time pane, for late data.
    Late,
    /// Not known (elements that never went through a grouping).
    Unknown,
}

/// Which firing of a window's trigger produced an element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PaneInfo {
    /// First pane of its window.
    pub is_first: bool,
    /// Last pane of its window.
    pub is_last: bool,
    /// Early, on time, late or unknown.
    pub timing: Timing,
    /// Index of the pane among all panes of its window.
    pub index: i64,
    /// Index among non-early panes; -1 for early panes.
    pub nonspeculative_index: i64,
}

impl PaneInfo {
    /// The pane of elements that were never grouped.
    pub const NO_FIRING: PaneInfo = PaneInfo {
        is_first: true,
        is_last: true,
        timing: Timing::Unknown,
        index: 0,
        nonspeculative_index: 0,
    };

    /// The only pane of a window in batch execution.
    pub const ON_TIME_AND_ONLY_FIRING: PaneInfo = PaneInfo {
        is_first: true,
        is_last: true,
        timing: Timing::OnTime,
        index: 0,
        nonspeculative_index: 0,
    };
}

/// An element with its event timestamp, window and pane.
///
/// Elements in several windows are exploded into one `WindowedValue` per window when
/// they are assigned, so every transform sees exactly one window per element.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowedValue {
    /// The element.
    pub value: Value,
    /// Event time in milliseconds.
    pub timestamp: Timestamp,
    /// The window the element is in.
    pub window: Window,
    /// The pane that produced it.
    pub pane: PaneInfo,
}

impl WindowedValue {
    /// An element in the global window at the minimum timestamp (how Impulse emits).
    pub fn in_global_window(value: Value) -> Self {
        WindowedValue {
            value,
            timestamp: MIN_TIMESTAMP,
            window: Window::Global,
            pane: PaneInfo::NO_FIRING,
        }
    }

    /// The same metadata with another value.
    pub fn with_value(&self, value: Value) -> Self {
        WindowedValue {
            value,
            timestamp: self.timestamp,
            window: self.window,
            pane: self.pane,
        }
    }
}

/// How the timestamp of a grouped output is computed from its inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum TimestampCombiner {
    /// The end (max timestamp) of the window.
    #[default]
    EndOfWindow,
    /// The earliest input timestamp.
    Earliest,
    /// The latest input timestamp.
    Latest,
}

impl TimestampCombiner {
    /// Folds one more input timestamp into `acc` (`None` before the first).
    pub fn combine(self, acc: Option<Timestamp>, ts: Timestamp) -> Timestamp {
        match (self, acc) {
            (_, None) => ts,
            (TimestampCombiner::Earliest, Some(a)) => a.min(ts),
            (TimestampCombiner::Latest, Some(a)) => a.max(ts),
            (TimestampCombiner::EndOfWindow, Some(a)) => a,
        }
    }

    /// The output timestamp for `window` given the folded input timestamp.
    pub fn output(self, window: &Window, folded: Timestamp) -> Timestamp {
        match self {
            TimestampCombiner::EndOfWindow => window.max_timestamp(),
            _ => folded,
        }
    }
}

/// A window function: assigns windows to timestamps (and merges session windows).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum WindowFn {
    /// Everything in the global window.
    #[default]
    Global,
    /// Fixed windows of `size` ms, shifted by `offset` ms.
    Fixed {
        /// Window length in ms.
        size: i64,
        /// Offset of window boundaries from the epoch, in ms.
        offset: i64,
    },
    /// Windows of `size` ms starting every `period` ms.
    Sliding {
        /// Window length in ms.
        size: i64,
        /// Distance between window starts in ms.
        period: i64,
        /// Offset of window boundaries from the epoch, in ms.
        offset: i64,
    },
    /// Session windows: `[ts, ts + gap)`, merged when they overlap.
    Sessions {
        /// Inactivity gap in ms.
        gap: i64,
    },
}

impl WindowFn {
    /// The windows an element with timestamp `ts` belongs to (latest start first for sliding).
    pub fn assign(&self, ts: Timestamp) -> Vec<Window> {
        match *self {
            WindowFn::Global => vec![Window::Global],
            WindowFn::Fixed { size, offset } => {
                let start = ts - (ts - offset).rem_euclid(size);
                vec![Window::Interval {
                    start,
                    end: start + size,
                }]
            }
            WindowFn::Sliding {
                size,
                period,
                offset,
            } => {
                let last_start = ts - (ts - offset).rem_euclid(period);
                let mut out = Vec::with_capacity((size / period.max(1)) as usize + 1);
                let mut start = last_start;
                while start > ts - size {
                    out.push(Window::Interval {
                        start,
                        end: start + size,
                    });
                    start -= period;
                }
                out
            }
            WindowFn::Sessions { gap } => vec![Window::Interval {
                start: ts,
                end: ts + gap,
            }],
        }
    }

    /// The window for `ts` when the function assigns exactly one (all but sliding).
    pub fn assign_one(&self, ts: Timestamp) -> Option<Window> {
        match *self {
            WindowFn::Global => Some(Window::Global),
            WindowFn::Fixed { size, offset } => {
                let start = ts - (ts - offset).rem_euclid(size);
                Some(Window::Interval {
                    start,
                    end: start + size,
                })
            }
            WindowFn::Sessions { gap } => Some(Window::Interval {
                start: ts,
                end: ts + gap,
            }),
            WindowFn::Sliding { .. } => None,
        }
    }

    /// True for window functions whose windows merge (sessions).
    pub fn is_merging(&self) -> bool {
        matches!(self, WindowFn::Sessions { .. })
    }

    /// The window of this function that a main-input window maps to for side-input lookup.
    ///
    /// Beam's default mapping: the side-input window containing the main window's end.
    pub fn side_input_window(&self, main: &Window) -> Window {
        match self {
            WindowFn::Global => Window::Global,
            _ => {
                let ts = main.max_timestamp();
                self.assign(ts).into_iter().next().unwrap_or(Window::Global)
            }
        }
    }
}

/// Merges overlapping interval windows; returns, for each input window, its merged window.
pub fn merge_intervals(windows: &[Window]) -> Vec<Window> {
    let mut order: Vec<usize> = (0..windows.len()).collect();
    order.sort_by_key(|&i| windows[i]);
    let mut result = vec![Window::Global; windows.len()];
    let mut group: Vec<usize> = Vec::new();
    let mut current: Option<(i64, i64)> = None;
    let flush = |group: &mut Vec<usize>, cur: Option<(i64, i64)>, result: &mut Vec<Window>| {
        if let Some((start, end)) = cur {
            for &i in group.iter() {
                result[i] = Window::Interval { start, end };
            }
        }
        group.clear();
    };
    for i in order {
        match windows[i] {
            Window::Global => result[i] = Window::Global,
            Window::Interval { start, end } => match current {
                Some((cs, ce)) if start < ce => current = Some((cs, ce.max(end))),
                _ => {
                    flush(&mut group, current, &mut result);
                    current = Some((start, end));
                }
            },
        }
        if matches!(windows[i], Window::Interval { .. }) {
            group.push(i);
        }
    }
    flush(&mut group, current, &mut result);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_windows_handle_negative_timestamps() {
        let w = WindowFn::Fixed {
            size: 60_000,
            offset: 0,
        };
        assert_eq!(
            w.assign(-1),
            vec![Window::Interval {
                start: -60_000,
                end: 0
            }]
        );
        assert_eq!(
            w.assign(60_000),
            vec![Window::Interval {
                start: 60_000,
                end: 120_000
            }]
        );
    }

    #[test]
    fn sliding_windows_cover_the_timestamp() {
        let w = WindowFn::Sliding {
            size: 30,
            period: 10,
            offset: 0,
        };
        let ws = w.assign(25);
        assert_eq!(ws.len(), 3);
        for win in ws {
            let Window::Interval { start, end } = win else {
                panic!()
            };
            assert!(start <= 25 && 25 < end);
        }
    }

    #[test]
    fn sessions_merge_overlapping_windows() {
        let ws = [
            Window::Interval { start: 0, end: 10 },
            Window::Interval { start: 25, end: 35 },
            Window::Interval { start: 5, end: 15 },
        ];
        let merged = merge_intervals(&ws);
        assert_eq!(merged[0], Window::Interval { start: 0, end: 15 });
        assert_eq!(merged[2], Window::Interval { start: 0, end: 15 });
        assert_eq!(merged[1], Window::Interval { start: 25, end: 35 });
    }
}
