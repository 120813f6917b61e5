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
