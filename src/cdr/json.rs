//! The CDR line, written straight into a byte buffer.
//!
//! A record is a fixed shape of strings, numbers and nulls, and it is written once per call
//! on the call's own task. serde_json spent ~10,000 instructions per record on its
//! per-field machinery and a byte-at-a-time escape loop; this writer checks each value for
//! characters to escape in one vectorised pass and copies it whole. The output is byte for byte what
//! `serde_json::to_vec(&record)` produces (field order, `null`, escapes), which the tests
//! check against serde_json itself; the records stay `Serialize`/`Deserialize` for readers.

use super::{CdrLeg, CdrRecord, CdrTransfer};

/// Room for `rec`'s line: its text plus the keys, punctuation and numbers around it (a line
/// grows only when a value needs escapes).
pub(super) fn line_capacity(rec: &CdrRecord) -> usize {
    const RECORD: usize = 260;
    const LEG: usize = 160;
    const TRANSFER: usize = 130;
    let text = |parts: &[&str]| parts.iter().map(|s| s.len()).sum::<usize>();
    RECORD
        + text(&[
            &rec.call_id,
            &rec.interaction_id,
            &rec.direction,
            &rec.from,
            &rec.to,
            &rec.release_cause,
        ])
        + rec
            .legs
            .iter()
            .map(|l| {
                LEG + text(&[
                    &l.role,
                    &l.party,
                    l.agent.as_deref().unwrap_or_default(),
                    &l.end_reason,
                ])
            })
            .sum::<usize>()
        + rec
            .transfers
            .iter()
            .map(|t| TRANSFER + text(&[&t.transfer_type, &t.target, &t.outcome, &t.released_by]))
            .sum::<usize>()
}

/// Appends `rec` as one JSON object (no newline).
pub(super) fn write_record(out: &mut Vec<u8>, rec: &CdrRecord) {
    let mut o = Object::open(out);
    o.string("call_id", &rec.call_id);
    o.string("interaction_id", &rec.interaction_id);
    o.string("direction", &rec.direction);
    o.string("from", &rec.from);
    o.string("to", &rec.to);
    o.number("start_ms", rec.start_ms);
    o.optional_number("answer_ms", rec.answer_ms);
    o.number("end_ms", rec.end_ms);
    o.key("legs");
    write_array(o.out, &rec.legs, write_leg);
    o.key("transfers");
    write_array(o.out, &rec.transfers, write_transfer);
    o.string("release_cause", &rec.release_cause);
    o.close();
}

fn write_leg(out: &mut Vec<u8>, leg: &CdrLeg) {
    let mut o = Object::open(out);
    o.string("role", &leg.role);
    o.string("party", &leg.party);
    o.optional_string("agent", leg.agent.as_deref());
    o.number("start_ms", leg.start_ms);
    o.optional_number("answer_ms", leg.answer_ms);
    o.number("end_ms", leg.end_ms);
    o.string("end_reason", &leg.end_reason);
    o.close();
}

fn write_transfer(out: &mut Vec<u8>, t: &CdrTransfer) {
    let mut o = Object::open(out);
    o.string("transfer_type", &t.transfer_type);
    o.string("target", &t.target);
    o.string("outcome", &t.outcome);
    o.optional_number("agent_released_ms", t.agent_released_ms);
    o.string("released_by", &t.released_by);
    o.close();
}

fn write_array<T>(out: &mut Vec<u8>, items: &[T], write: fn(&mut Vec<u8>, &T)) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(out, item);
    }
    out.push(b']');
}

/// A JSON object being written: keys are our own field names (plain ASCII, no escapes).
struct Object<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Object<'a> {
    fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Object { out, first: true }
    }

    #[inline]
    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    #[inline]
    fn string(&mut self, key: &str, value: &str) {
        self.key(key);
        push_string(self.out, value);
    }

    fn optional_string(&mut self, key: &str, value: Option<&str>) {
        self.key(key);
        match value {
            Some(v) => push_string(self.out, v),
            None => self.out.extend_from_slice(b"null"),
        }
    }

    #[inline]
    fn number(&mut self, key: &str, value: u64) {
        self.key(key);
        crate::sip::put_decimal(self.out, value);
    }

    fn optional_number(&mut self, key: &str, value: Option<u64>) {
        match value {
            Some(v) => self.number(key, v),
            None => {
                self.key(key);
                self.out.extend_from_slice(b"null");
            }
        }
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

/// Appends `s` as a JSON string, escaped as serde_json escapes (RFC 8259 §7): `"` and `\`,
/// the five short forms, every other control character as `\u00XX` (lower-case hex).
fn push_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // Almost every value needs no escape: check the whole value first with a fold the
    // compiler turns into SIMD compares (no early exit), then copy it in one go.
    if !bytes.iter().fold(false, |any, &b| any | needs_escape(b)) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut run_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !needs_escape(b) {
            continue;
        }
        out.extend_from_slice(bytes.get(run_start..i).unwrap_or_default());
        run_start = i + 1;
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\x08' => out.extend_from_slice(b"\\b"),
            b'\x0c' => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
    }
    out.extend_from_slice(bytes.get(run_start..).unwrap_or_default());
    out.push(b'"');
}

#[inline]
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::borrow::Cow;

    fn leg(agent: Option<&str>, answer: Option<u64>) -> CdrLeg<'_> {
        CdrLeg {
            role: "agent".into(),
            party: "<sip:2001@10.0.0.5>".into(),
            agent: agent.map(Cow::Borrowed),
            start_ms: 1_764_000_000_000,
            answer_ms: answer,
            end_ms: u64::MAX,
            end_reason: "bye".into(),
        }
    }

    fn record(text: &str) -> CdrRecord<'_> {
        CdrRecord {
            call_id: text.into(),
            interaction_id: "ia-1".into(),
            direction: "inbound".into(),
            from: format!("\"{text}\" <sip:caller@trunk>;tag=a").into(),
            to: "<sip:100@cc>".into(),
            start_ms: 0,
            answer_ms: Some(12),
            end_ms: 99,
            legs: vec![leg(Some("2001"), Some(5)), leg(None, None)],
            transfers: Cow::Owned(vec![CdrTransfer {
                transfer_type: "release".into(),
                target: text.to_owned(),
                outcome: "failed:486".into(),
                agent_released_ms: None,
                released_by: "none".into(),
            }]),
            release_cause: "customer hung up".into(),
        }
    }

    fn ours(rec: &CdrRecord) -> Vec<u8> {
        let mut out = Vec::with_capacity(line_capacity(rec));
        let capacity = out.capacity();
        write_record(&mut out, rec);
        if !out.contains(&b'\\') {
            assert!(out.len() <= capacity, "{} > {capacity}", out.len());
        }
        out
    }

    #[test]
    fn a_record_is_written_as_serde_json_writes_it() {
        for text in [
            "",
            "plain",
            "q\"uote and back\\slash",
            "\u{0}\u{1}\u{8}\u{9}\u{a}\u{b}\u{c}\u{d}\u{1f}\u{7f}",
            "ünïcödé ✓ 𝄞",
        ] {
            let rec = record(text);
            assert_eq!(
                String::from_utf8(ours(&rec)).unwrap(),
                serde_json::to_string(&rec).unwrap()
            );
        }
        let mut empty = record("x");
        empty.legs.clear();
        empty.transfers = Cow::Borrowed(&[]);
        empty.answer_ms = None;
        assert_eq!(ours(&empty), serde_json::to_vec(&empty).unwrap());
    }

    #[test]
    fn a_written_record_reads_back_equal() {
        let rec = record("a\"b\\c\nd\u{2}");
        let back: CdrRecord = serde_json::from_slice(&ours(&rec)).unwrap();
        assert_eq!(back, rec);
    }

    proptest! {
        #[test]
        fn any_text_is_escaped_as_serde_json_escapes_it(text in any::<String>(), n in any::<u64>()) {
            let mut rec = record(&text);
            rec.start_ms = n;
            rec.legs[1].agent = Some(Cow::Borrowed(&text));
            prop_assert_eq!(ours(&rec), serde_json::to_vec(&rec).unwrap());
        }
    }
}
