//! Fuzz target: the SDP inspector and line-preserving rewriter on arbitrary bytes.
//!
//! `inspect` must return Ok or a typed error; `LegSdpOrigin::apply` and `set_direction`
//! must not panic on anything; and on a body `inspect` accepted, rewriting the origin or the
//! direction must yield a body that `inspect` still accepts, with the direction applied.

#![no_main]

use handover::sdp::{inspect, set_direction, Direction, LegSdpOrigin};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let summary = inspect(data);
    let mut leg = LegSdpOrigin::new(42);
    let first = leg.apply(data, false);
    let second = leg.apply(&first, true);
    let _ = leg.last_sent();
    for d in [
        Direction::SendRecv,
        Direction::SendOnly,
        Direction::RecvOnly,
        Direction::Inactive,
    ] {
        let held = set_direction(data, d);
        // Bodies under webrtc-sdp's 51-byte minimum are only line-checked by `inspect`; a
        // rewrite can push them over it (a longer o= line), so the property holds for bodies
        // the parser checked.
        if summary.as_ref().is_ok_and(|s| s.parser_checked) && held.len() >= 51 {
            let s = inspect(&held).unwrap_or_else(|e| {
                panic!("set_direction({d:?}) broke a valid body: {e:?}\n{held:?}")
            });
            for m in &s.media {
                if !m.is_rejected() {
                    assert_eq!(m.direction, d, "direction not applied\n{held:?}");
                }
            }
        }
    }
    if summary.as_ref().is_ok_and(|s| s.parser_checked) {
        inspect(&second).unwrap_or_else(|e| panic!("apply broke a valid body: {e:?}\n{second:?}"));
    }
});
