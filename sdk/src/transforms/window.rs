//! WindowInto and WithTimestamps: event-time windows and element timestamps.

use super::ParDo;
use crate::dofn::{DoFn, ProcessContext};
use crate::element::Element;
use crate::pcollection::PCollection;
use crate::pipeline::PTransform;
use beamline_engine::graph::Windowing;
use beamline_engine::time::Timestamp;
use beamline_engine::trigger::Trigger;
use beamline_engine::window::{TimestampCombiner, WindowFn};
use beamline_engine::UserError;
use beamline_proto::pipeline as pb;
use beamline_proto::prost::Message;
use beamline_proto::urns;
use std::marker::PhantomData;
use std::sync::Arc;

/// Assigns every element to windows of a window function.
///
/// # Examples
///
/// ```
/// use beamline::{Create, Pipeline, PipelineOptions, WindowInto};
/// let p = Pipeline::new(PipelineOptions::default());
/// let xs = p.apply("Xs", Create::of(vec![1i64, 2]));
/// let _w = xs.apply("Minutes", WindowInto::fixed(60_000));
/// ```
pub struct WindowInto<T> {
    window_fn: WindowFn,
    timestamp_combiner: Option<TimestampCombiner>,
    trigger: Trigger,
    accumulating: bool,
    allowed_lateness: i64,
    _t: PhantomData<fn(T)>,
}

impl<T> WindowInto<T> {
    /// Windows of any window function.
    pub fn new(window_fn: WindowFn) -> Self {
        WindowInto {
            window_fn,
            timestamp_combiner: None,
            trigger: Trigger::Default,
            accumulating: false,
            allowed_lateness: 0,
            _t: PhantomData,
        }
    }
    /// The global window.
    pub fn global() -> Self {
        Self::new(WindowFn::Global)
    }
    /// Fixed windows of `size_ms`.
    pub fn fixed(size_ms: i64) -> Self {
        Self::new(WindowFn::Fixed {
            size: size_ms,
            offset: 0,
        })
    }
    /// Windows of `size_ms` starting every `period_ms`.
    pub fn sliding(size_ms: i64, period_ms: i64) -> Self {
        Self::new(WindowFn::Sliding {
            size: size_ms,
            period: period_ms,
            offset: 0,
        })
    }
    /// Session windows closing after `gap_ms` without data.
    pub fn sessions(gap_ms: i64) -> Self {
        Self::new(WindowFn::Sessions { gap: gap_ms })
    }
    /// When grouped panes fire (default: when the watermark passes the end of the window,
    /// and for every late element).
    pub fn triggering(mut self, trigger: Trigger) -> Self {
        self.trigger = trigger;
        self
    }

    /// Later panes of a window include the elements of earlier panes.
    pub fn accumulating(mut self) -> Self {
        self.accumulating = true;
        self
    }

    /// Every pane holds only the elements since the previous pane (the default).
    pub fn discarding(mut self) -> Self {
        self.accumulating = false;
        self
    }

    /// Accepts data up to `ms` after the end of a window (late panes); later data is
    /// dropped and counted in the `beamline/droppedDueToLateness` counter.
    pub fn with_allowed_lateness(mut self, ms: i64) -> Self {
        self.allowed_lateness = ms.max(0);
        self
    }

    /// How grouped outputs are timestamped (default: end of window).
    pub fn with_timestamp_combiner(mut self, tc: TimestampCombiner) -> Self {
        self.timestamp_combiner = Some(tc);
        self
    }
}

impl<T: Element> PTransform<PCollection<T>> for WindowInto<T> {
    type Output = PCollection<T>;
    fn expand(self, input: &PCollection<T>) -> PCollection<T> {
        let p = input.pipeline().clone();
        let bad = match self.window_fn {
            WindowFn::Fixed { size, .. } => size <= 0,
            WindowFn::Sliding { size, period, .. } => size <= 0 || period <= 0,
            WindowFn::Sessions { gap } => gap <= 0,
            WindowFn::Global => false,
        };
        if bad {
            p.construction_error(format!(
                "WindowInto '{}': window sizes, periods and gaps must be positive",
                p.current_name()
            ));
        }
        let windowing = Windowing {
            window_fn: self.window_fn,
            timestamp_combiner: self
                .timestamp_combiner
                .unwrap_or(input.windowing().timestamp_combiner),
            trigger: self.trigger,
            accumulating: self.accumulating,
            allowed_lateness: self.allowed_lateness,
        };
        let out: PCollection<T> = p.new_output("out", windowing);
        let payload = pb::WindowIntoPayload {
            window_fn: Some(crate::proto_build::window_fn_spec(&self.window_fn)),
        };
        p.set_primitive(
            pb::FunctionSpec {
                urn: urns::ASSIGN_WINDOWS.into(),
                payload: payload.encode_to_vec(),
            },
            vec![("input".into(), input.id().to_string())],
            vec![("out".into(), out.id().to_string())],
            true,
        );
        out
    }
}

/// Sets each element's event timestamp from a function of the element (milliseconds).
pub struct WithTimestamps<T, F> {
    f: Arc<F>,
    _t: PhantomData<fn(T)>,
}

impl<T, F> Clone for WithTimestamps<T, F> {
    fn clone(&self) -> Self {
        WithTimestamps {
            f: self.f.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: Element, F: Fn(&T) -> Timestamp + Send + Sync + 'static> WithTimestamps<T, F> {
    /// Timestamps elements with `f`.
    pub fn of(f: F) -> Self {
        WithTimestamps {
            f: Arc::new(f),
            _t: PhantomData,
        }
    }
}

impl<T: Element, F: Fn(&T) -> Timestamp + Send + Sync + 'static> DoFn for WithTimestamps<T, F> {
    type In = T;
    type Out = T;
    fn process(&mut self, x: T, ctx: &mut ProcessContext<'_, '_, T>) -> Result<(), UserError> {
        let ts = (self.f)(&x);
        ctx.output_with_timestamp(x, ts);
        Ok(())
    }
}

impl<T: Element, F: Fn(&T) -> Timestamp + Send + Sync + 'static> PTransform<PCollection<T>>
    for WithTimestamps<T, F>
{
    type Output = PCollection<T>;
    fn expand(self, input: &PCollection<T>) -> PCollection<T> {
        ParDo::of(self).expand(input)
    }
}
