//! User state of stateful DoFns: cells per key and window, and the timers they set.

use crate::coder::Coder;
use crate::combine::{Accumulator, CombineFnInvoker};
use crate::error::UserError;
use crate::value::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

pub use crate::trigger::Domain as TimeDomain;

/// What a state cell holds, with the coders that encode it (see [`crate::state_codec`]).
#[derive(Clone)]
pub enum StateKind {
    /// One value (Beam's ReadModifyWrite / ValueState), of the coder.
    Value(Coder),
    /// An unordered bag of values of the coder.
    Bag(Coder),
    /// Values combined with a CombineFn into one accumulator, of the coder.
    Combining(Arc<dyn CombineFnInvoker>, Coder),
    /// A map with keys of the first coder (compared by their encoding) and values of the
    /// second.
    Map(Coder, Coder),
    /// A set; elements compared by their encoding with the coder.
    Set(Coder),
    /// Values of the coder, sorted by a timestamp.
    OrderedList(Coder),
}

impl std::fmt::Debug for StateKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateKind::Value(c) => write!(f, "Value({c:?})"),
            StateKind::Bag(c) => write!(f, "Bag({c:?})"),
            StateKind::Combining(_, c) => write!(f, "Combining(accumulator {c:?})"),
            StateKind::Map(k, v) => write!(f, "Map({k:?}, {v:?})"),
            StateKind::Set(c) => write!(f, "Set({c:?})"),
            StateKind::OrderedList(c) => write!(f, "OrderedList({c:?})"),
        }
    }
}

/// The contents of one state cell.
#[derive(Debug, Default)]
pub enum StateCell {
    /// Not written yet.
    #[default]
    Empty,
    /// Value state.
    Value(Value),
    /// Bag.
    Bag(Vec<Value>),
    /// Combining state: the accumulator of everything added.
    Combining(Accumulator),
    /// Map from encoded key to (key, value).
    Map(BTreeMap<Vec<u8>, (Value, Value)>),
    /// Set from encoded element to element.
    Set(BTreeMap<Vec<u8>, Value>),
    /// Ordered list: (timestamp, insertion number) to value.
    OrderedList(BTreeMap<(i64, u64), Value>),
}

/// A timer change requested by user code.
#[derive(Clone, Debug, PartialEq)]
pub enum TimerRequest {
    /// Sets (or resets) the named timer.
    Set {
        /// Timer name.
        name: String,
        /// When it fires (event or processing time, by the timer's domain).
        timestamp: i64,
        /// Timestamp of what the callback outputs.
        output_timestamp: i64,
    },
    /// Clears the named timer.
    Clear {
        /// Timer name.
        name: String,
    },
}

/// The state of one key and window, as a stateful DoFn sees it.
pub struct KeyedState<'a> {
    /// The key.
    pub key: &'a Value,
    /// Declared cells: name to kind.
    pub decls: &'a [(String, StateKind)],
    /// Cell contents, in the order of `decls` (grown on first use).
    pub cells: &'a mut Vec<StateCell>,
    /// Timer changes made during the call.
    pub timers: &'a mut Vec<TimerRequest>,
    /// Declared timers: name to domain.
    pub timer_decls: &'a [(String, TimeDomain)],
    /// Current processing time (ms).
    pub now: i64,
    /// Current input watermark (ms).
    pub watermark: i64,
}

fn undeclared(name: &str) -> UserError {
    format!("state '{name}' is not declared on this ParDo").into()
}

impl KeyedState<'_> {
    fn kind(&self, name: &str) -> Result<&StateKind, UserError> {
        self.decls
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, k)| k)
            .ok_or_else(|| undeclared(name))
    }

    fn cell(&mut self, name: &str) -> Result<&mut StateCell, UserError> {
        let i = self
            .decls
            .iter()
            .position(|(n, _)| n == name)
            .ok_or_else(|| undeclared(name))?;
        if self.cells.len() <= i {
            self.cells.resize_with(self.decls.len(), StateCell::default);
        }
        Ok(&mut self.cells[i])
    }

    /// Reads a value cell.
    ///
    /// # Errors
    /// When the cell is not declared.
    pub fn read_value(&mut self, name: &str) -> Result<Option<Value>, UserError> {
        Ok(match self.cell(name)? {
            StateCell::Value(v) => Some(v.clone()),
            _ => None,
        })
    }

    /// Writes a value cell.
    ///
    /// # Errors
    /// When the cell is not declared.
    pub fn write_value(&mut self, name: &str, v: Value) -> Result<(), UserError> {
        *self.cell(name)? = StateCell::Value(v);
        Ok(())
    }

    /// Adds to a bag or combining cell.
    ///
    /// # Errors
    /// When the cell is not declared, or the CombineFn of a combining cell fails.
    pub fn add(&mut self, name: &str, v: Value) -> Result<(), UserError> {
        let combine = match self.kind(name)? {
            StateKind::Combining(f, _) => Some(f.clone()),
            _ => None,
        };
        let cell = self.cell(name)?;
        match (combine, cell) {
            (Some(f), StateCell::Combining(acc)) => f.add_input(acc, v)?,
            (Some(f), cell) => {
                let mut acc = f.create_accumulator();
                f.add_input(&mut acc, v)?;
                *cell = StateCell::Combining(acc);
            }
            (None, StateCell::Bag(b)) => b.push(v),
            (None, cell) => *cell = StateCell::Bag(vec![v]),
        }
        Ok(())
    }

    /// Reads a bag cell.
    ///
    /// # Errors
    /// When the cell is not declared.
    pub fn read_bag(&mut self, name: &str) -> Result<Vec<Value>, UserError> {
        Ok(match self.cell(name)? {
            StateCell::Bag(b) => b.clone(),
            _ => Vec::new(),
        })
    }

    /// Reads a combining cell: the CombineFn's output over everything added.
    ///
    /// # Errors
    /// When the cell is not declared, not combining, or the CombineFn fails.
    pub fn read_combined(&mut self, name: &str) -> Result<Value, UserError> {
        let StateKind::Combining(f, _) = self.kind(name)?.clone() else {
            return Err(format!("state '{name}' is not a combining state").into());
        };
        let acc = match self.cell(name)? {
            // Extracting consumes an accumulator: read a copy, made through its value.
            StateCell::Combining(acc) => f.accumulator_from_value(f.accumulator_to_value(acc)?)?,
            _ => f.create_accumulator(),
        };
        f.extract_output(acc)
    }

    fn encoded(&self, name: &str, v: &Value) -> Result<Vec<u8>, UserError> {
        match self.kind(name)? {
            StateKind::Map(c, _) | StateKind::Set(c) => Ok(c.encode_to_vec(v)?),
            _ => Err(format!("state '{name}' is not a map or set").into()),
        }
    }

    /// Puts into a map cell.
    ///
    /// # Errors
    /// When the cell is not a declared map or the key does not fit its coder.
    pub fn map_put(&mut self, name: &str, k: Value, v: Value) -> Result<(), UserError> {
        let kb = self.encoded(name, &k)?;
        let cell = self.cell(name)?;
        if !matches!(cell, StateCell::Map(_)) {
            *cell = StateCell::Map(BTreeMap::new());
        }
        if let StateCell::Map(m) = cell {
            m.insert(kb, (k, v));
        }
        Ok(())
    }

    /// Looks up a key of a map cell.
    ///
    /// # Errors
    /// As [`KeyedState::map_put`].
    pub fn map_get(&mut self, name: &str, k: &Value) -> Result<Option<Value>, UserError> {
        let kb = self.encoded(name, k)?;
        Ok(match self.cell(name)? {
            StateCell::Map(m) => m.get(&kb).map(|(_, v)| v.clone()),
            _ => None,
        })
    }

    /// Removes a key of a map cell.
    ///
    /// # Errors
    /// As [`KeyedState::map_put`].
    pub fn map_remove(&mut self, name: &str, k: &Value) -> Result<(), UserError> {
        let kb = self.encoded(name, k)?;
        if let StateCell::Map(m) = self.cell(name)? {
            m.remove(&kb);
        }
        Ok(())
    }

    /// All entries of a map cell, ordered by encoded key.
    ///
    /// # Errors
    /// When the cell is not declared.
    pub fn map_entries(&mut self, name: &str) -> Result<Vec<(Value, Value)>, UserError> {
        Ok(match self.cell(name)? {
            StateCell::Map(m) => m.values().cloned().collect(),
            _ => Vec::new(),
        })
    }

    /// Adds to a set cell; returns true if it was new.
    ///
    /// # Errors
    /// When the cell is not a declared set or the element does not fit its coder.
    pub fn set_add(&mut self, name: &str, v: Value) -> Result<bool, UserError> {
        let kb = self.encoded(name, &v)?;
        let cell = self.cell(name)?;
        if !matches!(cell, StateCell::Set(_)) {
            *cell = StateCell::Set(BTreeMap::new());
        }
        let StateCell::Set(s) = cell else {
            unreachable!()
        };
        Ok(s.insert(kb, v).is_none())
    }

    /// Whether a set cell contains `v`.
    ///
    /// # Errors
    /// As [`KeyedState::set_add`].
    pub fn set_contains(&mut self, name: &str, v: &Value) -> Result<bool, UserError> {
        let kb = self.encoded(name, v)?;
        Ok(matches!(self.cell(name)?, StateCell::Set(s) if s.contains_key(&kb)))
    }

    /// Removes from a set cell.
    ///
    /// # Errors
    /// As [`KeyedState::set_add`].
    pub fn set_remove(&mut self, name: &str, v: &Value) -> Result<(), UserError> {
        let kb = self.encoded(name, v)?;
        if let StateCell::Set(s) = self.cell(name)? {
            s.remove(&kb);
        }
        Ok(())
    }

    /// All elements of a set cell, ordered by encoding.
    ///
    /// # Errors
    /// When the cell is not declared.
    pub fn set_read(&mut self, name: &str) -> Result<Vec<Value>, UserError> {
        Ok(match self.cell(name)? {
            StateCell::Set(s) => s.values().cloned().collect(),
            _ => Vec::new(),
        })
    }

    /// Adds a timestamped value to an ordered-list cell.
    ///
    /// # Errors
    /// When the cell is not declared.
    pub fn ordered_add(&mut self, name: &str, ts: i64, v: Value) -> Result<(), UserError> {
        let cell = self.cell(name)?;
        if !matches!(cell, StateCell::OrderedList(_)) {
            *cell = StateCell::OrderedList(BTreeMap::new());
        }
        let StateCell::OrderedList(l) = cell else {
            unreachable!()
        };
        let seq = l.len() as u64 + l.keys().map(|k| k.1).max().unwrap_or(0);
        l.insert((ts, seq), v);
        Ok(())
    }

    /// Values of an ordered-list cell with timestamps in `[from, to)`, in order.
    ///
    /// # Errors
    /// When the cell is not declared.
    pub fn ordered_range(
        &mut self,
        name: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, Value)>, UserError> {
        Ok(match self.cell(name)? {
            StateCell::OrderedList(l) => l
                .range((from, 0)..(to, 0))
                .map(|((t, _), v)| (*t, v.clone()))
                .collect(),
            _ => Vec::new(),
        })
    }

    /// Removes values of an ordered-list cell with timestamps in `[from, to)`.
    ///
    /// # Errors
    /// When the cell is not declared.
    pub fn ordered_clear_range(&mut self, name: &str, from: i64, to: i64) -> Result<(), UserError> {
        if let StateCell::OrderedList(l) = self.cell(name)? {
            l.retain(|(t, _), _| *t < from || *t >= to);
        }
        Ok(())
    }

    /// Clears any cell.
    ///
    /// # Errors
    /// When the cell is not declared.
    pub fn clear(&mut self, name: &str) -> Result<(), UserError> {
        *self.cell(name)? = StateCell::Empty;
        Ok(())
    }

    /// Sets a declared timer to fire at `timestamp` (in the timer's time domain).
    ///
    /// # Errors
    /// When the timer is not declared.
    pub fn set_timer(
        &mut self,
        name: &str,
        timestamp: i64,
        output_timestamp: Option<i64>,
    ) -> Result<(), UserError> {
        let (_, domain) = self
            .timer_decls
            .iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| format!("timer '{name}' is not declared on this ParDo"))?;
        let output_timestamp = output_timestamp.unwrap_or(match domain {
            TimeDomain::Watermark => timestamp,
            TimeDomain::ProcessingTime => timestamp,
        });
        self.timers.push(TimerRequest::Set {
            name: name.to_string(),
            timestamp,
            output_timestamp,
        });
        Ok(())
    }

    /// Clears a timer.
    pub fn clear_timer(&mut self, name: &str) {
        self.timers.push(TimerRequest::Clear {
            name: name.to_string(),
        });
    }
}
