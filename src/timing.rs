//! Timing spans: `timing!("phase")` makes a tracing span (target `sectl::timing`, level
//! debug) around one phase of a command. They cost nothing unless enabled; with
//! `RUST_LOG=sectl::timing=debug` every span's close is logged to stderr with its
//! time (`close time.busy=.. time.idle=..`), and `benches/etcd.rs` adds them up into
//! the breakdown of an apply.

/// A debug span named `$name` with target `sectl::timing`.
#[macro_export]
macro_rules! timing {
    ($name:literal) => {
        tracing::debug_span!(target: "sectl::timing", $name)
    };
}
