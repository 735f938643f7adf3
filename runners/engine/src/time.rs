//! Event-time constants: Beam timestamps are milliseconds since the Unix epoch.

/// A point in event time, in milliseconds since 1970-01-01T00:00:00Z.
pub type Timestamp = i64;

/// The smallest timestamp an element or window boundary may have.
pub const MIN_TIMESTAMP: Timestamp = -9_223_372_036_854_775;

/// The largest timestamp an element or window boundary may have.
pub const MAX_TIMESTAMP: Timestamp = 9_223_372_036_854_775;

/// The maximum timestamp of the global window (one day before [`MAX_TIMESTAMP`]).
pub const GLOBAL_WINDOW_MAX_TIMESTAMP: Timestamp = 9_223_371_950_454_775;
