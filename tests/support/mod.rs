//! Shared harness for the integration tests: free loopback ports, a test server built from a
//! generated config, polling helpers, and a SIPp runner.
//!
//! A test starts its own server on port 0 (`start_server`), starts the agent's SIPp UAS on a free
//! port, runs the customer's SIPp UAC against the server, asserts both SIPp exit codes and call
//! counts, then `assert_drained` (no call, no transaction left). Tests are skipped (and pass,
//! with a message) only when `sipp` is missing and `HANDOVER_REQUIRE_SIPP` is unset.
#![allow(dead_code, unused_imports)] // each test binary uses a different subset

pub mod checks;
pub mod pjsua;
pub mod ports;
pub mod server;
pub mod sipp;

pub use ports::{free_media_port, free_port, free_tcp_port, free_udp_port, wait_bound};
pub use server::{
    assert_drained, sip_addr, start_server, wait_agent_state, wait_until, within, TestConfig,
    DOMAIN, SIPP_DIGEST_COMPAT, TEST_T1_MS,
};
pub use sipp::{
    run_pair, run_pair_ok, skip_without_sipp, Sipp, SippOutcome, SippProcess, Transport,
};
