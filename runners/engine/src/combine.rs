//! The CombineFn invoker trait: associative, commutative aggregation with accumulators.

use crate::coder::Coder;
use crate::error::UserError;
use crate::value::Value;
use std::any::Any;

/// An accumulator, opaque to the engine.
///
/// Counts and sums (`i64`) and (sum, count) pairs (`(f64, i64)`) are stored inline, so
/// the per-key tables of lifted combiners do not chase a pointer per element; anything
/// else is boxed.
///
/// # Examples
///
/// ```
/// use beamline_engine::combine::Accumulator;
/// let mut a = Accumulator::new(1i64);
/// *a.downcast_mut::<i64>().unwrap() += 1;
/// assert_eq!(a.downcast::<i64>().ok(), Some(2));
/// let v = Accumulator::new(vec![1, 2]);
/// assert!(v.downcast::<String>().is_err());
/// ```
pub struct Accumulator(Inner);

enum Inner {
    I64(i64),
    F64I64((f64, i64)),
    Boxed(Box<dyn Any + Send>),
}

impl std::fmt::Debug for Accumulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Inner::I64(i) => write!(f, "Accumulator({i})"),
            Inner::F64I64(p) => write!(f, "Accumulator({p:?})"),
            Inner::Boxed(_) => f.write_str("Accumulator(..)"),
        }
    }
}

impl Accumulator {
    /// Wraps an accumulator value.
    pub fn new<T: Any + Send>(value: T) -> Self {
        let any = &value as &dyn Any;
        if let Some(&i) = any.downcast_ref::<i64>() {
            return Accumulator(Inner::I64(i));
        }
        if let Some(&p) = any.downcast_ref::<(f64, i64)>() {
            return Accumulator(Inner::F64I64(p));
        }
        Accumulator(Inner::Boxed(Box::new(value)))
    }

    /// A copy of an inline accumulator (counts, sums, (sum, count) pairs); `None` for a
    /// boxed one, which cannot be copied.
    ///
    /// # Examples
    ///
    /// ```
    /// use beamline_engine::combine::Accumulator;
    /// let a = Accumulator::new(3i64);
    /// assert_eq!(a.try_clone().and_then(|c| c.downcast::<i64>().ok()), Some(3));
    /// assert!(Accumulator::new(vec![1]).try_clone().is_none());
    /// ```
    pub fn try_clone(&self) -> Option<Accumulator> {
        match &self.0 {
            Inner::I64(i) => Some(Accumulator(Inner::I64(*i))),
            Inner::F64I64(p) => Some(Accumulator(Inner::F64I64(*p))),
            Inner::Boxed(_) => None,
        }
    }

    /// The value, if it is a `T`.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        match &self.0 {
            Inner::I64(i) => (i as &dyn Any).downcast_ref::<T>(),
            Inner::F64I64(p) => (p as &dyn Any).downcast_ref::<T>(),
            Inner::Boxed(b) => b.downcast_ref::<T>(),
        }
    }

    /// The value, if it is a `T`.
    pub fn downcast_mut<T: Any>(&mut self) -> Option<&mut T> {
        match &mut self.0 {
            Inner::I64(i) => (i as &mut dyn Any).downcast_mut::<T>(),
            Inner::F64I64(p) => (p as &mut dyn Any).downcast_mut::<T>(),
            Inner::Boxed(b) => b.downcast_mut::<T>(),
        }
    }

    /// Takes the value out if it is a `T`; gives the accumulator back otherwise.
    ///
    /// # Errors
    /// The accumulator itself when it holds another type.
    pub fn downcast<T: Any>(self) -> Result<T, Accumulator> {
        fn take<S: Any, T: Any>(s: S) -> Result<T, S> {
            let mut slot = Some(s);
            match (&mut slot as &mut dyn Any).downcast_mut::<Option<T>>() {
                Some(t) => Ok(t.take().expect("filled above")),
                None => Err(slot.expect("untouched")),
            }
        }
        match self.0 {
            Inner::I64(i) => take(i).map_err(|i| Accumulator(Inner::I64(i))),
            Inner::F64I64(p) => take(p).map_err(|p| Accumulator(Inner::F64I64(p))),
            Inner::Boxed(b) => b
                .downcast::<T>()
                .map(|t| *t)
                .map_err(|b| Accumulator(Inner::Boxed(b))),
        }
    }
}

/// User aggregation code as the engine sees it.
///
/// The engine lifts it before the shuffle: inputs are folded into accumulators per key
/// within each bundle, accumulators are merged after the shuffle, then extracted.
pub trait CombineFnInvoker: Send + Sync {
    /// A fresh, empty accumulator.
    fn create_accumulator(&self) -> Accumulator;
    /// Folds one input into `acc`.
    ///
    /// # Errors
    /// When the input has the wrong type or the user code fails.
    fn add_input(&self, acc: &mut Accumulator, input: Value) -> Result<(), UserError>;
    /// Merges several accumulators into one.
    ///
    /// # Errors
    /// When the user code fails.
    fn merge_accumulators(&self, accs: Vec<Accumulator>) -> Result<Accumulator, UserError>;
    /// Merges `other` into `acc`.
    ///
    /// The runner merges pre-combined accumulators pairwise, once per key and bundle;
    /// the default goes through [`CombineFnInvoker::merge_accumulators`], combiners with
    /// cheap accumulators override it to skip the vector.
    ///
    /// # Errors
    /// As [`CombineFnInvoker::merge_accumulators`].
    fn merge_into(&self, acc: &mut Accumulator, other: Accumulator) -> Result<(), UserError> {
        let prev = std::mem::replace(acc, Accumulator::new(()));
        *acc = self.merge_accumulators(vec![prev, other])?;
        Ok(())
    }
    /// Produces the output from a final accumulator.
    ///
    /// # Errors
    /// When the user code fails.
    fn extract_output(&self, acc: Accumulator) -> Result<Value, UserError>;

    /// The coder of this CombineFn's accumulators (as values, see
    /// [`CombineFnInvoker::accumulator_to_value`]) for inputs encoded with `input`: what
    /// crosses a process boundary or reaches a disk.
    fn accumulator_coder(&self, input: &Coder) -> Coder;

    /// The accumulator as a value of [`CombineFnInvoker::accumulator_coder`]; `acc` stays
    /// usable.
    ///
    /// # Errors
    /// When `acc` is not this CombineFn's, or user code fails to convert it.
    fn accumulator_to_value(&self, acc: &Accumulator) -> Result<Value, UserError>;

    /// The accumulator a value of [`CombineFnInvoker::accumulator_coder`] stands for.
    ///
    /// # Errors
    /// When the value is not of the accumulator's shape.
    fn accumulator_from_value(&self, value: Value) -> Result<Accumulator, UserError>;
}

/// Encodes `acc` of `combine` (inputs encoded with `input`) with its accumulator coder.
///
/// # Errors
/// When the accumulator cannot be converted or encoded.
pub fn encode_accumulator(
    combine: &dyn CombineFnInvoker,
    input: &Coder,
    acc: &Accumulator,
) -> Result<Vec<u8>, UserError> {
    let value = combine.accumulator_to_value(acc)?;
    Ok(combine.accumulator_coder(input).encode_to_vec(&value)?)
}

/// Decodes an accumulator of `combine` that [`encode_accumulator`] encoded.
///
/// # Errors
/// When the bytes are not an accumulator of this CombineFn.
pub fn decode_accumulator(
    combine: &dyn CombineFnInvoker,
    input: &Coder,
    mut bytes: &[u8],
) -> Result<Accumulator, UserError> {
    let value = combine.accumulator_coder(input).decode(&mut bytes, false)?;
    if !bytes.is_empty() {
        return Err(format!("{} bytes left after an accumulator", bytes.len()).into());
    }
    combine.accumulator_from_value(value)
}
