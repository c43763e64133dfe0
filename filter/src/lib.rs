//! Prefix-aware routing for vLLM fleets.
