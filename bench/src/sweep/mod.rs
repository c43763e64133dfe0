//! `prefixgate-bench sweep`: the same benchmark against each routing strategy
//! in turn, each on a fresh simulated fleet behind `prefixgate` (or Envoy),
//! with one row per strategy in the results CSVs that `prefixgate-bench
//! report` charts.

pub mod config;
pub mod logs;
pub use prefixgate_launch::envoy_config;
pub mod results_csv;
pub mod router;
pub mod run;
