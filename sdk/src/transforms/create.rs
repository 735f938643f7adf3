//! Impulse and Create: the roots of a pipeline.

use super::pardo::NamedValueParDo;
use super::Reshuffle;
use crate::element::Element;
use crate::pcollection::{PBegin, PCollection};
use crate::pipeline::PTransform;
use beamline_engine::coder::Coder;
use beamline_engine::dofn::{Context, DoFnInvoker};
use beamline_engine::registry::NamedDoFn;
use beamline_engine::{UserError, WindowedValue};
use beamline_proto::pipeline as pb;
use beamline_proto::urns;

/// Emits a single empty element in the global window: the start of every source.
#[derive(Clone, Copy, Debug, Default)]
pub struct Impulse;

impl PTransform<PBegin> for Impulse {
    type Output = PCollection<()>;
    fn expand(self, input: &PBegin) -> PCollection<()> {
        let p = input.0.clone();
        let out: PCollection<()> = p.new_output("out", Default::default());
        p.set_primitive(
            pb::FunctionSpec {
                urn: urns::IMPULSE.into(),
                payload: vec![],
            },
            vec![],
            vec![("out".into(), out.id().to_string())],
            false,
        );
        out
    }
}

/// A collection of fixed values, stored encoded in the pipeline proto.
///
/// # Examples
///
/// ```
/// use beamline::{Create, Pipeline, PipelineOptions};
/// let p = Pipeline::new(PipelineOptions::default());
/// let nums = p.apply("Nums", Create::of(vec![1i64, 2, 3]));
/// # let _ = nums;
/// ```
pub struct Create<T> {
    values: Vec<T>,
}

impl<T: Element> Create<T> {
    /// The values, in this order.
    pub fn of(values: impl IntoIterator<Item = T>) -> Self {
        Create {
            values: values.into_iter().collect(),
        }
    }
}

const CREATE_FN: &str = "beamline.Create";

#[derive(serde::Serialize, serde::Deserialize)]
struct CreateConfig {
    coder: Coder,
    /// Each element encoded with `coder`, as lowercase hex.
    elements: Vec<String>,
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn from_hex(s: &str) -> Result<Vec<u8>, UserError> {
    if !s.len().is_multiple_of(2) {
        return Err("odd-length hex element".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| e.into()))
        .collect()
}

impl<T: Element> PTransform<PBegin> for Create<T> {
    type Output = PCollection<T>;
    fn expand(self, input: &PBegin) -> PCollection<T> {
        let coder = T::coder();
        let n = self.values.len();
        let elements = self
            .values
            .into_iter()
            .map(|v| {
                coder
                    .encode_to_vec(&v.into_value())
                    .map(|b| to_hex(&b))
                    .expect("a value encodes with its own type's coder")
            })
            .collect();
        let config = serde_json::to_value(CreateConfig { coder, elements }).expect("serializes");
        let impulse = input.0.apply("Impulse", Impulse);
        let decoded = impulse.apply("Decode", NamedValueParDo::<T>::new(CREATE_FN, config));
        if n > 1 {
            decoded.apply("Reshuffle", Reshuffle::new())
        } else {
            decoded
        }
    }
}

/// Emits the decoded elements of a [`Create`] when it sees the impulse.
struct CreateFn {
    config: CreateConfig,
}

impl DoFnInvoker for CreateFn {
    fn process(&mut self, _impulse: WindowedValue, ctx: &mut Context<'_>) -> Result<(), UserError> {
        for hex in &self.config.elements {
            let bytes = from_hex(hex)?;
            let value = self.config.coder.decode(&mut bytes.as_slice(), false)?;
            ctx.output(0, WindowedValue::in_global_window(value));
        }
        Ok(())
    }
}

inventory::submit! {
    NamedDoFn {
        name: CREATE_FN,
        build: |config, _, _| {
            let config: CreateConfig = serde_json::from_str(config)?;
            Ok(Box::new(CreateFn { config }))
        },
    }
}
