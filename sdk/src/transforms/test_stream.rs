//! TestStream: a deterministic unbounded source for tests (elements, watermark and
//! processing-time advances, replayed in order).

use crate::element::Element;
use crate::pcollection::{PBegin, PCollection};
use crate::pipeline::PTransform;
use beamline_proto::pipeline as pb;
use beamline_proto::prost::Message;
use beamline_proto::urns;

enum Event<T> {
    Add(Vec<(T, i64)>),
    Watermark(i64),
    ProcessingTime(i64),
}

/// Replays a script of events; the watermark ends at infinity after the last one.
///
/// Processing time is virtual: it starts at 0 and moves only with
/// [`advance_processing_time`](TestStream::advance_processing_time).
///
/// # Examples
///
/// ```
/// use beamline::{Pipeline, PipelineOptions, TestStream};
/// let p = Pipeline::new(PipelineOptions::default());
/// let events = p.apply(
///     "Events",
///     TestStream::new()
///         .add_elements(vec![("a".to_string(), 1_000)])
///         .advance_watermark_to(10_000)
///         .add_elements(vec![("late".to_string(), 2_000)]),
/// );
/// # let _ = events;
/// ```
pub struct TestStream<T> {
    events: Vec<Event<T>>,
}

impl<T: Element> Default for TestStream<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Element> TestStream<T> {
    /// An empty script.
    pub fn new() -> Self {
        TestStream { events: Vec::new() }
    }

    /// Emits elements `(value, timestamp ms)` as one bundle.
    pub fn add_elements(mut self, elements: Vec<(T, i64)>) -> Self {
        self.events.push(Event::Add(elements));
        self
    }

    /// Advances the watermark to `ts` (ms).
    pub fn advance_watermark_to(mut self, ts: i64) -> Self {
        self.events.push(Event::Watermark(ts));
        self
    }

    /// Advances processing time by `ms`.
    pub fn advance_processing_time(mut self, ms: i64) -> Self {
        self.events.push(Event::ProcessingTime(ms));
        self
    }
}

impl<T: Element> PTransform<PBegin> for TestStream<T> {
    type Output = PCollection<T>;
    fn expand(self, input: &PBegin) -> PCollection<T> {
        let p = input.0.clone();
        let coder = T::coder();
        let coder_id = p.coder_id(&coder);
        use pb::test_stream_payload::{event, Event as PbEvent, TimestampedElement};
        let events = self
            .events
            .into_iter()
            .map(|e| PbEvent {
                event: Some(match e {
                    Event::Add(items) => event::Event::ElementEvent(event::AddElements {
                        elements: items
                            .into_iter()
                            .map(|(v, ts)| TimestampedElement {
                                encoded_element: coder
                                    .encode_to_vec(&v.into_value())
                                    .expect("a value encodes with its own type's coder"),
                                timestamp: ts,
                            })
                            .collect(),
                        tag: String::new(),
                    }),
                    Event::Watermark(ts) => event::Event::WatermarkEvent(event::AdvanceWatermark {
                        new_watermark: ts,
                        tag: String::new(),
                    }),
                    Event::ProcessingTime(d) => {
                        event::Event::ProcessingTimeEvent(event::AdvanceProcessingTime {
                            advance_duration: d,
                        })
                    }
                }),
            })
            .collect();
        let out: PCollection<T> = p.new_output("out", Default::default());
        p.mark_unbounded(out.id());
        let payload = pb::TestStreamPayload {
            coder_id,
            events,
            endpoint: None,
        };
        p.set_primitive(
            pb::FunctionSpec {
                urn: urns::TEST_STREAM.into(),
                payload: payload.encode_to_vec(),
            },
            vec![],
            vec![("out".into(), out.id().to_string())],
            false,
        );
        out
    }
}
