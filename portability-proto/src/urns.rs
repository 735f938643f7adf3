//! Standard URN strings of Beam's portability model, plus Beamline's own.

// Primitive transforms.
/// ParDo (payload: ParDoPayload).
pub const PAR_DO: &str = "beam:transform:pardo:v1";
/// Flatten.
pub const FLATTEN: &str = "beam:transform:flatten:v1";
/// GroupByKey.
pub const GROUP_BY_KEY: &str = "beam:transform:group_by_key:v1";
/// Impulse: one empty byte array in the global window.
pub const IMPULSE: &str = "beam:transform:impulse:v1";
/// WindowInto (payload: WindowIntoPayload).
pub const ASSIGN_WINDOWS: &str = "beam:transform:window_into:v1";
/// TestStream (payload: TestStreamPayload).
pub const TEST_STREAM: &str = "beam:transform:teststream:v1";

// Composites a runner may implement natively.
/// Combine.perKey (payload: CombinePayload).
pub const COMBINE_PER_KEY: &str = "beam:transform:combine_per_key:v1";
/// Combine.globally (payload: CombinePayload).
pub const COMBINE_GLOBALLY: &str = "beam:transform:combine_globally:v1";
/// Reshuffle.
pub const RESHUFFLE: &str = "beam:transform:reshuffle:v1";
/// Combine over already grouped values.
pub const COMBINE_GROUPED_VALUES: &str = "beam:transform:combine_grouped_values:v1";

// Side input access patterns.
/// Side input read as an iterable.
pub const SIDE_INPUT_ITERABLE: &str = "beam:side_input:iterable:v1";
/// Side input read as a multimap.
pub const SIDE_INPUT_MULTIMAP: &str = "beam:side_input:multimap:v1";

// Standard coders.
/// Raw bytes.
pub const CODER_BYTES: &str = "beam:coder:bytes:v1";
/// UTF-8 string.
pub const CODER_STRING_UTF8: &str = "beam:coder:string_utf8:v1";
/// Key/value pair.
pub const CODER_KV: &str = "beam:coder:kv:v1";
/// Boolean.
pub const CODER_BOOL: &str = "beam:coder:bool:v1";
/// Variable-length 64-bit integer.
pub const CODER_VARINT: &str = "beam:coder:varint:v1";
/// Big-endian IEEE 754 double.
pub const CODER_DOUBLE: &str = "beam:coder:double:v1";
/// Iterable of elements.
pub const CODER_ITERABLE: &str = "beam:coder:iterable:v1";
/// Timer.
pub const CODER_TIMER: &str = "beam:coder:timer:v1";
/// Interval window.
pub const CODER_INTERVAL_WINDOW: &str = "beam:coder:interval_window:v1";
/// Length-prefixed component.
pub const CODER_LENGTH_PREFIX: &str = "beam:coder:length_prefix:v1";
/// Global window.
pub const CODER_GLOBAL_WINDOW: &str = "beam:coder:global_window:v1";
/// Windowed value.
pub const CODER_WINDOWED_VALUE: &str = "beam:coder:windowed_value:v1";
/// Windowed value with parameterised metadata.
pub const CODER_PARAM_WINDOWED_VALUE: &str = "beam:coder:param_windowed_value:v1";
/// Nullable value.
pub const CODER_NULLABLE: &str = "beam:coder:nullable:v1";
/// Schema row.
pub const CODER_ROW: &str = "beam:coder:row:v1";

// Window functions.
/// Global windows.
pub const GLOBAL_WINDOWS: &str = "beam:window_fn:global_windows:v1";
/// Fixed windows.
pub const FIXED_WINDOWS: &str = "beam:window_fn:fixed_windows:v1";
/// Sliding windows.
pub const SLIDING_WINDOWS: &str = "beam:window_fn:sliding_windows:v1";
/// Session windows.
pub const SESSION_WINDOWS: &str = "beam:window_fn:session_windows:v1";

// Environments.
/// Externally managed worker pool.
pub const ENV_EXTERNAL: &str = "beam:env:external:v1";
/// Docker container.
pub const ENV_DOCKER: &str = "beam:env:docker:v1";
/// Beamline: the Rust binary itself (closures and `inventory`-registered functions).
pub const ENV_RUST: &str = "beamline:env:rust";

// Beamline user functions.
/// A DoFn resolved in the running binary (closure or named registration).
pub const BEAMLINE_DOFN: &str = "beamline:dofn:rust:v1";
/// A CombineFn resolved in the running binary.
pub const BEAMLINE_COMBINE_FN: &str = "beamline:combinefn:rust:v1";
/// A serde (bincode-like) coder for a Rust user type.
pub const BEAMLINE_CODER_SERDE: &str = "beamline:coder:serde:v1";
/// A side-input view function (payload names the view kind).
pub const BEAMLINE_VIEW_FN: &str = "beamline:view_fn:v1";
/// Side-input window mapping: main window maps to the side input's window fn.
pub const BEAMLINE_WINDOW_MAPPING: &str = "beamline:window_mapping_fn:v1";
/// Beamline: an unbounded source registered by name (payload: the function spec JSON).
pub const BEAMLINE_UNBOUNDED_SOURCE: &str = "beamline:transform:unbounded_source:v1";

// User state protocols.
/// Bag user state.
pub const USER_STATE_BAG: &str = "beam:user_state:bag:v1";
/// Multimap user state.
pub const USER_STATE_MULTIMAP: &str = "beam:user_state:multimap:v1";
/// Beamline: dynamically typed values (tag byte per type), used by the Python SDK.
pub const BEAMLINE_CODER_DYNAMIC: &str = "beamline:coder:dynamic:v1";
