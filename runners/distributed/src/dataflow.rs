//! A translated graph as a Timely dataflow on every worker: each transform is the engine's
//! operator ([`beamline_engine::operators::build`]) inside a Timely operator; keyed
//! transforms read their input exchanged by key hash, side inputs are broadcast.
//!
//! Bounded pipelines only, for now: every element is at Timely time 0 and a transform's
//! input is complete when the frontier passes it; the engine's operator then sees the
//! watermark jump to the end of time (panes and timers fire), as in the local runner's
//! streaming scheduler over a finished input.

use crate::adapter::{self, Batch, Input, Output, Route, Scope, Stream, Time};
use beamline_engine::coder::Coder;
use beamline_engine::element_codec::{decode_windowed, encode_windowed};
use beamline_engine::graph::{Graph, NodeKind};
use beamline_engine::metrics::MetricResults;
use beamline_engine::operators::partition::key_hash;
use beamline_engine::operators::{call_bounded, Op, OpCx, END_OF_TIME};
use beamline_engine::window::WindowedValue;
use beamline_engine::EngineError;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::Capability;

/// What the workers of one process share: the metrics of finished transforms.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Metrics of finished transforms.
    pub metrics: Mutex<MetricResults>,
}

impl Shared {
    /// A transform failed: the worker process reports the error and ends at once, so no
    /// other process can finish the job (and commit output) without this one's share;
    /// the launcher then stops the others.
    pub(crate) fn fail(&self, e: EngineError) -> ! {
        crate::worker::fail(&e.to_string());
        std::process::exit(1);
    }
}

/// Encodes elements of a PCollection for the wire: the element, and its key's hash when
/// the PCollection is key/value.
#[derive(Clone)]
struct Encoder {
    coder: Coder,
    key: Option<Coder>,
    name: String,
}

impl Encoder {
    fn new(graph: &Graph, pc: usize, transform: &str) -> Self {
        let coder = graph.pcollections[pc].coder.clone();
        let key = match &coder {
            Coder::Kv(k, _) => Some((**k).clone()),
            _ => None,
        };
        Encoder {
            coder,
            key,
            name: transform.to_string(),
        }
    }

    fn encode(&self, wv: &WindowedValue, out: &mut Batch) -> Result<(), EngineError> {
        let coder_err = |source| EngineError::Coder {
            transform: self.name.clone(),
            source,
        };
        let mut bytes = Vec::new();
        encode_windowed(&self.coder, wv, &mut bytes).map_err(coder_err)?;
        let hash = match (&self.key, wv.value.as_kv()) {
            (Some(kc), Some((k, _))) => key_hash(&kc.encode_to_vec(&k).map_err(coder_err)?),
            _ => 0,
        };
        out.push((hash, bytes));
        Ok(())
    }
}

/// Builds the dataflow of `graph` on this worker.
///
/// # Errors
/// A transform this runner cannot run yet (unbounded sources, TestStream), or one whose
/// operator cannot be built.
pub(crate) fn build<'s>(
    scope: Scope<'s, Time>,
    graph: &Arc<Graph>,
    worker: usize,
    shared: &Arc<Shared>,
) -> Result<(), EngineError> {
    let mut streams: Vec<Option<Stream<'s>>> = vec![None; graph.pcollections.len()];
    for n in graph.topological_order()? {
        let node = &graph.nodes[n];
        let input = |pc: usize| -> Result<Stream<'s>, EngineError> {
            streams[pc].clone().ok_or_else(|| {
                EngineError::InvalidPipeline(format!("'{}' reads a missing input", node.name))
            })
        };
        let outs: Vec<Stream<'s>> = match &node.kind {
            NodeKind::TestStream { .. } | NodeKind::Source { .. } => {
                return Err(EngineError::InvalidPipeline(format!(
                    "'{}' is unbounded: the distributed runner runs bounded pipelines for now \
                     (use --runner=local for streaming)",
                    node.name
                )))
            }
            NodeKind::Flatten => {
                let ins = node
                    .inputs
                    .iter()
                    .map(|&pc| input(pc))
                    .collect::<Result<_, _>>()?;
                vec![adapter::concatenate(scope, ins)]
            }
            NodeKind::Reshuffle => {
                // Spread over every worker, round robin from this worker's position (the
                // file ranges a read expands to, above all).
                let mut next = worker as u64;
                let spread = adapter::pass(
                    scope,
                    &format!("{}/Spread", node.name),
                    input(node.inputs[0])?,
                    Route::Local,
                    move |r| {
                        r.0 = next;
                        next = next.wrapping_add(1);
                    },
                );
                vec![adapter::pass(
                    scope,
                    &node.name,
                    spread,
                    Route::ByKey,
                    |_| {},
                )]
            }
            NodeKind::Impulse => {
                let enc = Encoder::new(graph, node.outputs[0], &node.name);
                let shared = shared.clone();
                adapter::operator(scope, &node.name, Vec::new(), 1, move |_, _, outs, cap| {
                    let Some(c) = cap.take() else { return };
                    // One Impulse element for the whole job, as Beam's.
                    if worker == 0 {
                        let mut batch = Vec::new();
                        let wv = WindowedValue::in_global_window(beamline_engine::Value::Bytes(
                            Vec::new(),
                        ));
                        match enc.encode(&wv, &mut batch) {
                            Ok(()) => adapter::give(&mut outs[0], &c, &mut batch),
                            Err(e) => shared.fail(e),
                        }
                    }
                })
            }
            kind => {
                let keyed = matches!(
                    kind,
                    NodeKind::GroupByKey
                        | NodeKind::CombinePerKey { .. }
                        | NodeKind::ParDo {
                            stateful: Some(_),
                            ..
                        }
                );
                let mut ins = vec![(
                    input(node.inputs[0])?,
                    if keyed { Route::ByKey } else { Route::Local },
                )];
                let mut in_coders = vec![graph.pcollections[node.inputs[0]].coder.clone()];
                for &pc in node.side_inputs() {
                    ins.push((input(pc)?, Route::Everywhere));
                    in_coders.push(graph.pcollections[pc].coder.clone());
                }
                let op = beamline_engine::operators::build(graph, node)?;
                let encoders = node
                    .outputs
                    .iter()
                    .map(|&pc| Encoder::new(graph, pc, &node.name))
                    .collect();
                let mut driver = Driver {
                    op,
                    name: node.name.clone(),
                    in_coders,
                    encoders,
                    outs: vec![Vec::new(); node.outputs.len()],
                    input_watermark: i64::MIN,
                    finished: false,
                    shared: shared.clone(),
                };
                adapter::operator(
                    scope,
                    &node.name,
                    ins,
                    node.outputs.len(),
                    move |inputs, done, outs, cap| driver.activate(inputs, done, outs, cap),
                )
            }
        };
        for (&pc, s) in node.outputs.iter().zip(outs) {
            streams[pc] = Some(s);
        }
    }
    Ok(())
}

/// An engine operator inside a Timely operator.
struct Driver {
    op: Box<dyn Op>,
    name: String,
    /// Coders of the inputs: main, then side inputs.
    in_coders: Vec<Coder>,
    encoders: Vec<Encoder>,
    outs: Vec<Vec<WindowedValue>>,
    input_watermark: i64,
    finished: bool,
    shared: Arc<Shared>,
}

impl Driver {
    fn activate(
        &mut self,
        inputs: &mut [Input],
        done: &[bool],
        outs: &mut [Output],
        cap: &mut Option<Capability<Time>>,
    ) {
        let Some(c) = cap.clone() else {
            // Finished: drain whatever still arrives (nothing should).
            for input in inputs.iter_mut() {
                input(&mut |data: &mut Batch| data.clear());
            }
            return;
        };
        if let Err(e) = self.step(inputs, done, outs, &c) {
            self.shared.fail(e);
        }
        if self.finished {
            *cap = None;
        }
    }

    fn step(
        &mut self,
        inputs: &mut [Input],
        done: &[bool],
        outs: &mut [Output],
        cap: &Capability<Time>,
    ) -> Result<(), EngineError> {
        // Side inputs first: main input waits for them in the operator.
        let order: Vec<usize> = (1..inputs.len()).chain([0]).collect();
        for slot in order {
            let coder = self.in_coders[slot].clone();
            let mut batches: Vec<Batch> = Vec::new();
            inputs[slot](&mut |data: &mut Batch| batches.push(std::mem::take(data)));
            for batch in batches {
                let mut elements = Vec::with_capacity(batch.len());
                for (_, bytes) in batch {
                    let wv = decode_windowed(&coder, &mut bytes.as_slice()).map_err(|source| {
                        EngineError::Coder {
                            transform: self.name.clone(),
                            source,
                        }
                    })?;
                    elements.push(wv);
                }
                self.call(outs, cap, |op, cx| op.process(slot, &mut elements, cx))?;
            }
        }
        let sides: Vec<i64> = done[1..]
            .iter()
            .map(|&d| if d { END_OF_TIME } else { i64::MIN })
            .collect();
        if !sides.is_empty() {
            self.op.side_watermarks(&sides);
        }
        self.call(outs, cap, |op, cx| op.end_bundle(cx))?;
        if done.iter().all(|&d| d) && !self.finished {
            // The input is complete: processing-time timers due now, then the watermark
            // to the end of time (panes fire, timers fire, windows expire).
            self.call(outs, cap, |op, cx| op.on_processing_time(cx))?;
            self.input_watermark = END_OF_TIME;
            self.call(outs, cap, |op, cx| op.advance(END_OF_TIME, cx))?;
            self.call(outs, cap, |op, cx| op.end_bundle(cx))?;
            let mut metrics = MetricResults::default();
            self.op.finish(&self.name, &mut metrics)?;
            self.shared
                .metrics
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .merge(metrics);
            self.finished = true;
        }
        Ok(())
    }

    /// Calls the operator, then sends what it emitted.
    fn call(
        &mut self,
        outs: &mut [Output],
        cap: &Capability<Time>,
        f: impl FnOnce(&mut dyn Op, &mut OpCx<'_>) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        let op = &mut self.op;
        call_bounded(&mut self.outs, self.input_watermark, &self.name, |cx| {
            f(&mut **op, cx)
        })?;
        for (tag, elements) in self.outs.iter_mut().enumerate() {
            let mut batch = Vec::with_capacity(elements.len());
            for wv in elements.drain(..) {
                self.encoders[tag].encode(&wv, &mut batch)?;
            }
            adapter::give(&mut outs[tag], cap, &mut batch);
        }
        Ok(())
    }
}
