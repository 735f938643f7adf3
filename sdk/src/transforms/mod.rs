//! The SDK's transforms, one per file.

pub mod combine;
pub mod combiners;
mod create;
mod flatten;
mod group;
mod kv;
mod map;
mod pardo;
mod partition;
mod reshuffle;
mod test_stream;
mod window;

pub use combine::{invoker as combine_invoker, CombineFn, CombineGlobally, CombinePerKey};
pub use combiners::{Count, Distinct, Max, Mean, Min, Sample, Sum, Top};
pub use create::{Create, Impulse};
pub use flatten::Flatten;
pub use group::{CoGroupByKey, GroupByKey};
pub use kv::{Keys, KvSwap, Values};
pub use map::{Filter, FlatMap, Map};
pub use pardo::{NamedValueParDo, ParDo, ParDoWithOutputs, TaggedOutputs, MAIN_TAG};
pub use partition::Partition;
pub use reshuffle::Reshuffle;
pub use test_stream::TestStream;
pub use window::{WindowInto, WithTimestamps};
