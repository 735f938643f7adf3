//! Stateful DoFns: typed access to per-key-and-window state cells and timers, and the
//! state and timer declarations a ParDo carries.

use crate::element::Element;
use crate::transforms::CombineFn;
use beamline_engine::coder::Coder;
use beamline_engine::state::{KeyedState, TimeDomain};
use beamline_engine::{UserError, Value};
use std::sync::Arc;

/// Declares a state cell of a stateful ParDo (see [`ParDo::with_state`](crate::ParDo::with_state)).
#[derive(Clone)]
pub struct StateSpec {
    pub(crate) name: String,
    pub(crate) kind: StateSpecKind,
}

#[derive(Clone)]
pub(crate) enum StateSpecKind {
    Value(Coder),
    Bag(Coder),
    /// The CombineFn and the coder of its inputs.
    Combining(Arc<dyn beamline_engine::combine::CombineFnInvoker>, Coder),
    Map(Coder, Coder),
    Set(Coder),
    OrderedList(Coder),
}

impl StateSpec {
    /// A single value of type `T` (Beam's ValueState / ReadModifyWriteState).
    pub fn value<T: Element>(name: &str) -> Self {
        Self::new(name, StateSpecKind::Value(T::coder()))
    }
    /// An unordered bag of `T`.
    pub fn bag<T: Element>(name: &str) -> Self {
        Self::new(name, StateSpecKind::Bag(T::coder()))
    }
    /// Values combined with a CombineFn; read gives the combined output.
    pub fn combining<C: CombineFn>(name: &str, f: C) -> Self {
        Self::new(
            name,
            StateSpecKind::Combining(crate::transforms::combine::invoker(f), C::In::coder()),
        )
    }
    /// A map from `K` to `V` (keys compared by encoding).
    pub fn map<K: Element, V: Element>(name: &str) -> Self {
        Self::new(name, StateSpecKind::Map(K::coder(), V::coder()))
    }
    /// A set of `T` (compared by encoding).
    pub fn set<T: Element>(name: &str) -> Self {
        Self::new(name, StateSpecKind::Set(T::coder()))
    }
    /// `T`s sorted by a timestamp.
    pub fn ordered_list<T: Element>(name: &str) -> Self {
        Self::new(name, StateSpecKind::OrderedList(T::coder()))
    }
    fn new(name: &str, kind: StateSpecKind) -> Self {
        StateSpec {
            name: name.to_string(),
            kind,
        }
    }
}

/// Declares a timer of a stateful ParDo (see [`ParDo::with_timer`](crate::ParDo::with_timer)).
#[derive(Clone, Debug)]
pub struct TimerSpec {
    pub(crate) name: String,
    pub(crate) domain: TimeDomain,
}

impl TimerSpec {
    /// A timer that fires when the input watermark passes its time.
    pub fn event_time(name: &str) -> Self {
        TimerSpec {
            name: name.to_string(),
            domain: TimeDomain::Watermark,
        }
    }
    /// A timer that fires when processing time passes its time.
    pub fn processing_time(name: &str) -> Self {
        TimerSpec {
            name: name.to_string(),
            domain: TimeDomain::ProcessingTime,
        }
    }
}

/// The state and timers of the current key and window.
pub struct State<'s, 'a> {
    pub(crate) inner: &'s mut KeyedState<'a>,
}

fn decode_all<T: Element>(vs: Vec<Value>) -> Result<Vec<T>, UserError> {
    vs.into_iter()
        .map(|v| T::from_value(v).map_err(Into::into))
        .collect()
}

impl State<'_, '_> {
    /// The key being processed.
    ///
    /// # Errors
    /// When the key is not a `K`.
    pub fn key<K: Element>(&self) -> Result<K, UserError> {
        Ok(K::from_value(self.inner.key.clone())?)
    }

    /// Current processing time (ms).
    pub fn processing_time(&self) -> i64 {
        self.inner.now
    }

    /// Current input watermark (ms).
    pub fn watermark(&self) -> i64 {
        self.inner.watermark
    }

    /// Reads a value cell.
    ///
    /// # Errors
    /// Undeclared cell or wrong type.
    pub fn read<T: Element>(&mut self, name: &str) -> Result<Option<T>, UserError> {
        self.inner
            .read_value(name)?
            .map(|v| T::from_value(v).map_err(Into::into))
            .transpose()
    }

    /// Writes a value cell.
    ///
    /// # Errors
    /// Undeclared cell.
    pub fn write<T: Element>(&mut self, name: &str, v: T) -> Result<(), UserError> {
        self.inner.write_value(name, v.into_value())
    }

    /// Adds to a bag or combining cell.
    ///
    /// # Errors
    /// Undeclared cell.
    pub fn add<T: Element>(&mut self, name: &str, v: T) -> Result<(), UserError> {
        self.inner.add(name, v.into_value())
    }

    /// Reads a bag cell.
    ///
    /// # Errors
    /// Undeclared cell or wrong type.
    pub fn read_bag<T: Element>(&mut self, name: &str) -> Result<Vec<T>, UserError> {
        decode_all(self.inner.read_bag(name)?)
    }

    /// Reads a combining cell.
    ///
    /// # Errors
    /// Undeclared cell or wrong type.
    pub fn read_combined<O: Element>(&mut self, name: &str) -> Result<O, UserError> {
        Ok(O::from_value(self.inner.read_combined(name)?)?)
    }

    /// Puts into a map cell.
    ///
    /// # Errors
    /// Undeclared cell.
    pub fn map_put<K: Element, V: Element>(
        &mut self,
        name: &str,
        k: K,
        v: V,
    ) -> Result<(), UserError> {
        self.inner.map_put(name, k.into_value(), v.into_value())
    }

    /// Looks up a map cell.
    ///
    /// # Errors
    /// Undeclared cell or wrong type.
    pub fn map_get<K: Element, V: Element>(
        &mut self,
        name: &str,
        k: &K,
    ) -> Result<Option<V>, UserError> {
        self.inner
            .map_get(name, &k.clone().into_value())?
            .map(|v| V::from_value(v).map_err(Into::into))
            .transpose()
    }

    /// Removes a map entry.
    ///
    /// # Errors
    /// Undeclared cell.
    pub fn map_remove<K: Element>(&mut self, name: &str, k: &K) -> Result<(), UserError> {
        self.inner.map_remove(name, &k.clone().into_value())
    }

    /// All map entries.
    ///
    /// # Errors
    /// Undeclared cell or wrong type.
    pub fn map_entries<K: Element, V: Element>(
        &mut self,
        name: &str,
    ) -> Result<Vec<(K, V)>, UserError> {
        self.inner
            .map_entries(name)?
            .into_iter()
            .map(|(k, v)| Ok((K::from_value(k)?, V::from_value(v)?)))
            .collect()
    }

    /// Adds to a set cell; true if new.
    ///
    /// # Errors
    /// Undeclared cell.
    pub fn set_add<T: Element>(&mut self, name: &str, v: T) -> Result<bool, UserError> {
        self.inner.set_add(name, v.into_value())
    }

    /// Whether a set cell contains `v`.
    ///
    /// # Errors
    /// Undeclared cell.
    pub fn set_contains<T: Element>(&mut self, name: &str, v: &T) -> Result<bool, UserError> {
        self.inner.set_contains(name, &v.clone().into_value())
    }

    /// Removes from a set cell.
    ///
    /// # Errors
    /// Undeclared cell.
    pub fn set_remove<T: Element>(&mut self, name: &str, v: &T) -> Result<(), UserError> {
        self.inner.set_remove(name, &v.clone().into_value())
    }

    /// All elements of a set cell.
    ///
    /// # Errors
    /// Undeclared cell or wrong type.
    pub fn set_read<T: Element>(&mut self, name: &str) -> Result<Vec<T>, UserError> {
        decode_all(self.inner.set_read(name)?)
    }

    /// Adds `v` at `ts` to an ordered-list cell.
    ///
    /// # Errors
    /// Undeclared cell.
    pub fn ordered_add<T: Element>(&mut self, name: &str, ts: i64, v: T) -> Result<(), UserError> {
        self.inner.ordered_add(name, ts, v.into_value())
    }

    /// Values with timestamps in `[from, to)`, in timestamp order.
    ///
    /// # Errors
    /// Undeclared cell or wrong type.
    pub fn ordered_range<T: Element>(
        &mut self,
        name: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, T)>, UserError> {
        self.inner
            .ordered_range(name, from, to)?
            .into_iter()
            .map(|(t, v)| Ok((t, T::from_value(v)?)))
            .collect()
    }

    /// Removes values with timestamps in `[from, to)`.
    ///
    /// # Errors
    /// Undeclared cell.
    pub fn ordered_clear_range(&mut self, name: &str, from: i64, to: i64) -> Result<(), UserError> {
        self.inner.ordered_clear_range(name, from, to)
    }

    /// Clears any cell.
    ///
    /// # Errors
    /// Undeclared cell.
    pub fn clear(&mut self, name: &str) -> Result<(), UserError> {
        self.inner.clear(name)
    }

    /// Sets a timer (event or processing time, as declared) to fire at `ts`; its callback
    /// outputs at `ts`.
    ///
    /// # Errors
    /// Undeclared timer.
    pub fn set_timer(&mut self, name: &str, ts: i64) -> Result<(), UserError> {
        self.inner.set_timer(name, ts, None)
    }

    /// Sets a timer whose callback outputs at `output_ts` (holding the watermark there).
    ///
    /// # Errors
    /// Undeclared timer.
    pub fn set_timer_with_output(
        &mut self,
        name: &str,
        ts: i64,
        output_ts: i64,
    ) -> Result<(), UserError> {
        self.inner.set_timer(name, ts, Some(output_ts))
    }

    /// Clears a timer.
    pub fn clear_timer(&mut self, name: &str) {
        self.inner.clear_timer(name)
    }
}
