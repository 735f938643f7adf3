//! The planner every scheduler uses: which transforms fuse into stages, what each stage
//! ends in (a materialized PCollection or an exchange by key, with the lifting of each
//! combine), and a run order.
//!
//! The batch scheduler ([`crate::exec`]) runs the [`Plan`]'s stages one unit after
//! another; the streaming scheduler ([`crate::stream`]) runs the line of each stage rooted
//! at an unbounded source ([`StagePlan::line`]) on the source's worker threads, lifting
//! the combine it feeds, and the rest operator by operator. A new scheduler (a
//! distributed one, a Fn API harness) plans with the same [`Plan::build`].

mod rules;
mod stages;

pub use rules::{lifting, lifts, Lift, Panes};
pub use stages::{OpPlan, Plan, PlanOptions, SinkPlan, StagePlan, Target, Unit};
