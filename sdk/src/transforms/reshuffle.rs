//! Reshuffle: redistributes elements across workers (and breaks fusion).

use super::pardo::StatefulDecl;
use super::pardo::{apply_pardo, Parts};
use crate::element::Bytes;
use crate::element::Element;
use crate::pcollection::PCollection;
use crate::pipeline::PTransform;
use beamline_engine::coder::Coder;
use beamline_engine::dofn::{Context, DoFnInvoker};
use beamline_engine::element_codec::{decode_windowed, encode_windowed};
use beamline_engine::graph::Windowing;
use beamline_engine::registry::NamedDoFn;
use beamline_engine::spec::FnRef;
use beamline_engine::value::Value;
use beamline_engine::window::{PaneInfo, Window};
use beamline_engine::{UserError, WindowedValue};
use beamline_proto::pipeline as pb;
use beamline_proto::urns;
use std::marker::PhantomData;

/// Redistributes elements evenly into new bundles.
///
/// Runners that know `beam:transform:reshuffle:v1` do this natively; others run its
/// expansion: each element with its timestamp and window folded into its value under a
/// random key in the global window, a GroupByKey, then every element back in its own
/// window at its own timestamp (with a fresh pane, as Beam's Reshuffle gives).
pub struct Reshuffle<T>(PhantomData<fn(T)>);

impl<T> Reshuffle<T> {
    /// The transform.
    pub fn new() -> Self {
        Reshuffle(PhantomData)
    }
}

impl<T> Default for Reshuffle<T> {
    fn default() -> Self {
        Self::new()
    }
}

const REIFY_FN: &str = "beamline.Reshuffle.Reify";
const RESTORE_FN: &str = "beamline.Reshuffle.Restore";

#[derive(serde::Serialize, serde::Deserialize)]
struct ReshuffleConfig {
    coder: Coder,
}

impl<T: Element> PTransform<PCollection<T>> for Reshuffle<T> {
    type Output = PCollection<T>;
    fn expand(self, input: &PCollection<T>) -> PCollection<T> {
        input.pipeline().set_composite_spec(pb::FunctionSpec {
            urn: urns::RESHUFFLE.into(),
            payload: vec![],
        });
        let windowing = input.windowing();
        input
            .apply(
                "AddRandomKeys",
                Step::<(i64, Bytes)>::new(REIFY_FN, Windowing::default(), T::coder()),
            )
            .group_by_key("GroupByKey")
            .apply(
                "RemoveRandomKeys",
                Step::<T>::new(RESTORE_FN, windowing, T::coder()),
            )
    }
}

/// One step of the expansion: a named DoFn whose output has the given windowing.
struct Step<O> {
    function: &'static str,
    windowing: Windowing,
    element: Coder,
    _o: PhantomData<fn() -> O>,
}

impl<O> Step<O> {
    fn new(function: &'static str, windowing: Windowing, element: Coder) -> Self {
        Step {
            function,
            windowing,
            element,
            _o: PhantomData,
        }
    }
}

impl<I, O: Element> PTransform<PCollection<I>> for Step<O> {
    type Output = PCollection<O>;
    fn expand(self, input: &PCollection<I>) -> PCollection<O> {
        let p = input.pipeline().clone();
        let config = serde_json::to_value(ReshuffleConfig {
            coder: self.element,
        })
        .expect("a coder serializes");
        let (main, _) = apply_pardo(
            &p,
            input.id(),
            self.windowing,
            FnRef::Named {
                name: self.function.into(),
                config,
            },
            &O::coder(),
            Parts {
                extra: vec![],
                sides: &[],
                stateful: &StatefulDecl::default(),
            },
        );
        PCollection::from_id(p, main)
    }
}

/// An element as a random key and its encoding with timestamp, window and pane.
struct ReifyFn {
    coder: Coder,
}

impl DoFnInvoker for ReifyFn {
    fn process(&mut self, wv: WindowedValue, ctx: &mut Context<'_>) -> Result<(), UserError> {
        let mut bytes = Vec::new();
        encode_windowed(&self.coder, &wv, &mut bytes)?;
        ctx.output(
            0,
            WindowedValue {
                value: Value::kv(
                    Value::I64(rand::random::<u32>() as i64),
                    Value::Bytes(bytes),
                ),
                timestamp: wv.timestamp,
                window: Window::Global,
                pane: PaneInfo::NO_FIRING,
            },
        );
        Ok(())
    }
}

/// The grouped encodings back as elements in their own windows and at their timestamps.
struct RestoreFn {
    coder: Coder,
}

impl DoFnInvoker for RestoreFn {
    fn process(&mut self, wv: WindowedValue, ctx: &mut Context<'_>) -> Result<(), UserError> {
        let (_, values) = wv
            .value
            .into_kv()
            .ok_or("Reshuffle: grouped input is not key/value")?;
        let Value::List(items) = values else {
            return Err("Reshuffle: grouped values are not a list".into());
        };
        for item in items {
            let Value::Bytes(bytes) = item else {
                return Err("Reshuffle: a grouped value is not bytes".into());
            };
            let mut restored = decode_windowed(&self.coder, &mut bytes.as_slice())?;
            restored.pane = PaneInfo::NO_FIRING;
            ctx.output(0, restored);
        }
        Ok(())
    }
}

inventory::submit! {
    NamedDoFn {
        name: REIFY_FN,
        build: |config, _, _| {
            let c: ReshuffleConfig = serde_json::from_str(config)?;
            Ok(Box::new(ReifyFn { coder: c.coder }))
        },
    }
}

inventory::submit! {
    NamedDoFn {
        name: RESTORE_FN,
        build: |config, _, _| {
            let c: ReshuffleConfig = serde_json::from_str(config)?;
            Ok(Box::new(RestoreFn { coder: c.coder }))
        },
    }
}
