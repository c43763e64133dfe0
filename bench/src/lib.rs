//! prefixgate-bench: the load driver (`prefixgate-bench run`, in [`load`]), the sweep over
//! routing strategies ([`sweep`]), its HTML report ([`report`]) and the policy lab
//! ([`lab`]): the routing filter's native code in front of simulated engines
//! ([`vllm_sim`]) in virtual time.
//!
//! The `vllm-sim` binary of this package is a thin command line over the `vllm-sim`
//! library's wall-clock server.

pub mod lab;
pub mod load;
pub mod report;
pub mod sweep;
