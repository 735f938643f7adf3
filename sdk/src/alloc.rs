//! The fast allocator every program built on Beamline gets (feature `mimalloc`, on by default).
//!
//! The engine allocates per element, which mimalloc's thread-local heaps serve far better
//! than the system allocator. A program that wants its own allocator turns the facade's
//! default features off (`beamline = { default-features = false, features = ["local"] }`).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc 2's `mi_option_purge_delay`: its position in the C header's `mi_option_e`
/// (the sys crate declares no constant for it).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory in the process for reuse instead of returning it to the OS, where
/// it would be faulted in and zeroed again (10-16% of batch workloads' time on 2-core
/// VMs). Not under a memory budget, where returning memory is the point; and not when
/// the user set `MIMALLOC_PURGE_DELAY` themselves.
pub(crate) fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: `mi_option_set` only stores an option value; any option and value is
    // accepted, at any time, from any thread.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, -1);
    }
}
