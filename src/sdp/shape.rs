//! The body shapes webrtc-sdp has accepted, remembered per thread, so that the same kind of
//! offer is not parsed by it again on every call.
//!
//! webrtc-sdp is the costliest step of a basic call (~35,000 instructions for a 300-byte
//! offer, a sixth of the call; it allocates for every line). A trunk's gateway or a phone
//! model sends the same body on every call except for a few fields: the `o=` session id and
//! version, the `o=` and `c=` addresses and the `m=` ports. A body's *shape* is the body as
//! webrtc-sdp is shown it, with exactly those fields masked, and only when their values are of
//! a kind on which webrtc-sdp's verdict cannot depend:
//!
//! | field | masked when it is | what webrtc-sdp does with it |
//! |---|---|---|
//! | `o=` session id, version | 1–19 ASCII digits | `u64` parse, nothing else |
//! | `o=` address | an IP literal of the line's `IP4`/`IP6` | parse, compare with the type |
//! | `c=` address | an IP literal of the line's `IP4`/`IP6`, no `/ttl` | the same |
//! | `m=` port | 1–5 ASCII digits, at most 65535 | `u32` parse, `<= 65535` |
//!
//! Anything else stays in the shape byte for byte: a twenty-digit session id, a domain
//! name, a port with `/count`, a line spelt `M=`, and every line of a body that is not all
//! ASCII (where webrtc-sdp's Unicode whitespace could split tokens differently). A masked
//! field is one [`MASK`] byte, which no `str` contains, so a shape is never the text of
//! another body. Two bodies of one shape thus differ only in masked fields, each in the same
//! role (its line and position are the same bytes) and of a kind webrtc-sdp accepts whatever
//! its value; webrtc-sdp accepts both or neither. `bodies_of_one_shape_get_one_verdict` in
//! `shape_tests.rs` checks that claim against webrtc-sdp itself. The claim is about 0.3.17,
//! the version `Cargo.toml` pins.
//!
//! Bodies shorter than webrtc-sdp's 51-byte minimum have no shape: it refuses them for their
//! length alone, which masking changes. Only accepted shapes are remembered: a refusal
//! carries the offending line, which differs per body, and refusals are rare. The memory is
//! bounded: [`SLOTS`] shapes of at most [`MAX_SHAPE_BYTES`] per thread, placed by hash; a new
//! shape replaces the one in its slot. It is per thread (no lock between calls): a worker
//! thread that has not seen a shape parses it once itself.

use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::net::IpAddr;
use std::ops::Range;

use super::lines::lines;
use super::validate::WEBRTC_MIN_LEN;

/// Bodies longer than this are not remembered (a softphone offer is 200–900 bytes).
const MAX_SHAPE_BYTES: usize = 2048;
/// Shapes remembered per thread.
const SLOTS: usize = 128;
/// Stands for a masked field; not a byte of any UTF-8 text.
const MASK: u8 = 0xFF;

thread_local! {
    static ACCEPTED: RefCell<AcceptedShapes> = RefCell::new(AcceptedShapes::new());
}

/// Runs `check` (webrtc-sdp) on `shown` unless a body of its shape passed it on this thread
/// before; remembers the shape when it passes.
pub(crate) fn check_unless_accepted<E>(
    shown: &str,
    check: impl FnOnce(&str) -> Result<(), E>,
) -> Result<(), E> {
    ACCEPTED.with(|accepted| {
        // `check` is webrtc-sdp, which never reaches back here, so the borrow cannot clash.
        let mut accepted = accepted.borrow_mut();
        let slot = accepted.shape(shown);
        if slot.is_some_and(|slot| accepted.holds(slot)) {
            return Ok(());
        }
        check(shown)?;
        if let Some(slot) = slot {
            accepted.fill(slot);
        }
        Ok(())
    })
}

/// A direct-mapped table of accepted shapes.
struct AcceptedShapes {
    slots: Vec<Option<Box<[u8]>>>,
    /// The shape being looked up; kept to reuse its allocation.
    key: Vec<u8>,
}

impl AcceptedShapes {
    fn new() -> AcceptedShapes {
        AcceptedShapes {
            slots: vec![None; SLOTS],
            key: Vec::new(),
        }
    }

    /// Builds `shown`'s shape into `self.key`; returns its slot, or None if it is not to be
    /// remembered: too long, or shorter than webrtc-sdp's minimum, below which masking (which
    /// changes the length) could give an accepted body and a refused one the same shape.
    fn shape(&mut self, shown: &str) -> Option<usize> {
        if shown.len() > MAX_SHAPE_BYTES || shown.len() < WEBRTC_MIN_LEN {
            return None;
        }
        shape_into(shown, &mut self.key);
        let mut hasher = DefaultHasher::new();
        hasher.write(&self.key);
        // The remainder is below SLOTS, so the cast back cannot truncate.
        Some((hasher.finish() % SLOTS as u64) as usize)
    }

    /// Whether `slot` holds the shape last built.
    fn holds(&self, slot: usize) -> bool {
        self.slots
            .get(slot)
            .and_then(Option::as_deref)
            .is_some_and(|remembered| remembered == self.key.as_slice())
    }

    /// Puts the shape last built into `slot`, replacing what was there.
    fn fill(&mut self, slot: usize) {
        if let Some(entry) = self.slots.get_mut(slot) {
            *entry = Some(self.key.as_slice().into());
        }
    }
}

/// Writes `text` into `key` with the fields of the table in the module doc masked.
fn shape_into(text: &str, key: &mut Vec<u8>) {
    key.clear();
    let ascii = text.is_ascii();
    for line in lines(text.as_bytes()) {
        let masked = if ascii {
            masked_fields(line.content)
        } else {
            [None, None, None]
        };
        let mut at = 0;
        for field in masked.into_iter().flatten() {
            debug_assert!(field.start >= at, "masked fields in line order");
            key.extend_from_slice(line.content.get(at..field.start).unwrap_or_default());
            key.push(MASK);
            at = field.end;
        }
        key.extend_from_slice(line.content.get(at..).unwrap_or_default());
        key.extend_from_slice(line.term);
    }
}

/// The byte ranges of `content` (one ASCII line) that its shape masks, in order.
fn masked_fields(content: &[u8]) -> [Option<Range<usize>>; 3] {
    let mut masked = [None, None, None];
    match content {
        // webrtc-sdp: `split_whitespace`, then username, id, version, net, type, address.
        [b'o', b'=', ..] => {
            let mut tokens = tokens(content, 2);
            let (_user, id, version, _net, ty, address) = (
                tokens.next(),
                tokens.next(),
                tokens.next(),
                tokens.next(),
                tokens.next(),
                tokens.next(),
            );
            let u64_digits = |r: &Range<usize>| all_digits(content, r.clone(), 19).is_some();
            masked = [
                id.filter(u64_digits),
                version.filter(u64_digits),
                address.filter(|a| ip_of_type(content, ty, a.clone())),
            ];
        }
        // webrtc-sdp: exactly three whitespace-separated tokens; the third may carry `/ttl`.
        [b'c', b'=', ..] => {
            let mut tokens = tokens(content, 2);
            let (_net, ty, address) = (tokens.next(), tokens.next(), tokens.next());
            masked[0] = address.filter(|a| ip_of_type(content, ty, a.clone()));
        }
        // webrtc-sdp: the trimmed value `splitn(4, whitespace)`: the port is what lies
        // between the first and the second whitespace character, then `u32` and `<= 65535`.
        [b'm', b'=', ..] => {
            let value_start = 2 + leading_whitespace(content.get(2..).unwrap_or_default());
            let after_media = content
                .iter()
                .skip(value_start)
                .position(|b| is_whitespace(*b))
                .map(|p| value_start + p + 1);
            if let Some(start) = after_media {
                let end = content
                    .iter()
                    .skip(start)
                    .position(|b| is_whitespace(*b))
                    .map_or(content.len(), |p| start + p);
                masked[0] = all_digits(content, start..end, 5)
                    .filter(|port| *port <= 65535)
                    .map(|_| start..end);
            }
        }
        _ => {}
    }
    masked
}

/// `char::is_whitespace` on ASCII: what webrtc-sdp's `split_whitespace` and `trim` split on.
fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

fn leading_whitespace(s: &[u8]) -> usize {
    s.iter().take_while(|b| is_whitespace(**b)).count()
}

/// The whitespace-separated tokens of `content` from `from` on, as ranges.
fn tokens(content: &[u8], from: usize) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut at = from;
    std::iter::from_fn(move || {
        let rest = content.get(at..)?;
        let start = at + leading_whitespace(rest);
        let len = content
            .get(start..)?
            .iter()
            .take_while(|b| !is_whitespace(**b))
            .count();
        at = start + len;
        (len > 0).then_some(start..start + len)
    })
}

/// The value of `content[range]` if it is 1 to `max_len` ASCII digits.
fn all_digits(content: &[u8], range: Range<usize>, max_len: usize) -> Option<u64> {
    let digits = content.get(range)?;
    if digits.is_empty() || digits.len() > max_len || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0')),
    )
}

/// Whether `content[address]` is an IP literal of the version `content[ty]` names.
fn ip_of_type(content: &[u8], ty: Option<Range<usize>>, address: Range<usize>) -> bool {
    let (Some(ty), Some(address)) = (ty.and_then(|t| content.get(t)), content.get(address)) else {
        return false;
    };
    let Ok(address) = std::str::from_utf8(address) else {
        return false;
    };
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => ty.eq_ignore_ascii_case(b"IP4"),
        Ok(IpAddr::V6(_)) => ty.eq_ignore_ascii_case(b"IP6"),
        Err(_) => false,
    }
}

#[cfg(test)]
#[path = "shape_tests.rs"]
mod tests;
