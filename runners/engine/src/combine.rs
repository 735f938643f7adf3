//! The CombineFn invoker trait: associative, commutative aggregation with accumulators.

use crate::error::UserError;
use crate::value::Value;
use std::any::Any;

/// An accumulator, opaque to the engine.
pub type Accumulator = Box<dyn Any + Send>;

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
    /// Produces the output from a final accumulator.
    ///
    /// # Errors
    /// When the user code fails.
    fn extract_output(&self, acc: Accumulator) -> Result<Value, UserError>;
}
