//! sectl: a declarative reconciliation controller for the cluster functions of
//! BS2000 SE Servers. See ARCHITECTURE.md for the map of modules and the flow of data.

pub mod alarm;
pub mod api;
pub mod auth;
pub mod check;
pub mod cli;
pub mod client;
pub mod controller;
pub mod manifest;
pub mod safe_read;
pub mod server;
pub mod sim;
pub mod store;
pub mod timing;
pub mod ui;

/// The allocator of every program built on this library (the `sectl` binary, its
/// tests and benches): mimalloc instead of the C library's. The controller's work is
/// many short-lived allocations beside sled's large node buffers, and glibc's malloc
/// spent a quarter of a converge in its own bookkeeping (`malloc_consolidate`,
/// `unlink_chunk`); measured with `cargo bench --bench controller converge`, the
/// reconciles of 10,000 VMs took 12-25% less time (README, "Throughput").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
