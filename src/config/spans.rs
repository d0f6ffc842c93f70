//! Where each value sits in the TOML source, so errors can name a line.
//!
//! The document is deserialized a second time into a tree of byte spans. `toml` hands out a
//! value's span to a `Deserialize` impl that asks for the `serde_spanned` struct name (the
//! protocol behind `toml::Spanned`); we speak that protocol by hand so that values the parser
//! keeps no span for (implicit tables such as `transfer` in `[transfer.prefixes]`, dotted
//! keys) are still walked instead of failing the whole tree. Tables span from their header to
//! their last value; a field that is absent is reported at its table.

use std::fmt;
use std::ops::Range;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

// The private field names of `serde_spanned` 0.6 (what `toml::Spanned` deserializes through).
const SPANNED_NAME: &str = "$__serde_spanned_private_Spanned";
const SPANNED_START: &str = "$__serde_spanned_private_start";
const SPANNED_END: &str = "$__serde_spanned_private_end";
const SPANNED_VALUE: &str = "$__serde_spanned_private_value";
const SPANNED_FIELDS: &[&str] = &[SPANNED_START, SPANNED_END, SPANNED_VALUE];

/// One value of the document and where it is.
#[derive(Debug, Default)]
pub(super) struct Node {
    span: Option<Range<usize>>,
    kind: Kind,
}

#[derive(Debug, Default)]
enum Kind {
    #[default]
    Leaf,
    Table(Vec<(String, Node)>),
    Array(Vec<Node>),
}

/// One step of a field path: `agents[1].password` is `agents`, `[1]`, `password`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// Splits a dotted field path (`agents[1].password`, `sip.listen[0]`) into segments.
/// Keys of this schema contain neither dots nor brackets.
fn segments(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = match part.find('[') {
            Some(i) => part.split_at(i),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Seg::Key(key));
        }
        while let Some(after) = rest.strip_prefix('[') {
            let Some((idx, tail)) = after.split_once(']') else {
                break;
            };
            if let Ok(i) = idx.parse() {
                out.push(Seg::Index(i));
            }
            rest = tail;
        }
    }
    out
}

impl Node {
    /// Parses the span tree of a document; `None` if the document does not parse.
    pub(super) fn parse(src: &str) -> Option<Node> {
        let mut root: Node = toml::from_str(src).ok()?;
        root.span = Some(0..src.len());
        Some(root)
    }

    /// Byte offset where the value at `path` starts, or where its nearest present ancestor
    /// starts when the value itself is absent.
    pub(super) fn offset_of(&self, path: &str) -> usize {
        let mut node = self;
        let mut best = self.span.as_ref().map_or(0, |s| s.start);
        for seg in segments(path) {
            let next = match (&node.kind, seg) {
                (Kind::Table(entries), Seg::Key(k)) => {
                    entries.iter().find(|(name, _)| name == k).map(|(_, n)| n)
                }
                (Kind::Array(items), Seg::Index(i)) => items.get(i),
                _ => None,
            };
            let Some(next) = next else { break };
            node = next;
            if let Some(span) = &node.span {
                best = span.start;
            }
        }
        best
    }

    /// The dotted path of the innermost value whose span contains `offset` (empty if none).
    pub(super) fn path_at(&self, offset: usize) -> String {
        let mut path = String::new();
        self.descend(offset, &mut path);
        path
    }

    fn descend(&self, offset: usize, path: &mut String) -> bool {
        let inside = |n: &Node| n.span.as_ref().is_some_and(|s| s.contains(&offset));
        match &self.kind {
            Kind::Leaf => false,
            Kind::Table(entries) => {
                for (key, child) in entries {
                    let before = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                    if inside(child) || (child.span.is_none() && child.contains_offset(offset)) {
                        child.descend(offset, path);
                        return true;
                    }
                    path.truncate(before);
                }
                false
            }
            Kind::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    let before = path.len();
                    path.push_str(&format!("[{i}]"));
                    if inside(child) || (child.span.is_none() && child.contains_offset(offset)) {
                        child.descend(offset, path);
                        return true;
                    }
                    path.truncate(before);
                }
                false
            }
        }
    }

    /// Whether any spanned descendant contains `offset` (for span-less implicit tables).
    fn contains_offset(&self, offset: usize) -> bool {
        if self.span.as_ref().is_some_and(|s| s.contains(&offset)) {
            return true;
        }
        match &self.kind {
            Kind::Leaf => false,
            Kind::Table(entries) => entries.iter().any(|(_, n)| n.contains_offset(offset)),
            Kind::Array(items) => items.iter().any(|n| n.contains_offset(offset)),
        }
    }
}

/// 1-based line number of a byte offset.
pub(super) fn line_of(src: &str, offset: usize) -> usize {
    let end = offset.min(src.len());
    src.as_bytes()
        .get(..end)
        .map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
        + 1
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_struct(SPANNED_NAME, SPANNED_FIELDS, NodeVisitor)
    }
}

/// A value read without asking for its span: the inside of a spanned value.
struct Unspanned(Node);

impl<'de> Deserialize<'de> for Unspanned {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor).map(Unspanned)
    }
}

struct NodeVisitor;

impl NodeVisitor {
    fn leaf<E>(self) -> Result<Node, E> {
        Ok(Node::default())
    }
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any TOML value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        self.leaf()
    }
    fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
        self.leaf()
    }
    fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
        self.leaf()
    }
    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        self.leaf()
    }
    fn visit_str<E>(self, _: &str) -> Result<Node, E> {
        self.leaf()
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let Some(first) = map.next_key::<String>()? else {
            return Ok(Node {
                span: None,
                kind: Kind::Table(Vec::new()),
            });
        };
        if first == SPANNED_START {
            // The spanned protocol: start, end, value, in that order.
            let start: usize = map.next_value()?;
            let mut end = start;
            let mut inner = Node::default();
            while let Some(key) = map.next_key::<String>()? {
                if key == SPANNED_END {
                    end = map.next_value()?;
                } else if key == SPANNED_VALUE {
                    // The value itself, not spanned again (asking again would recurse forever).
                    inner = map.next_value::<Unspanned>()?.0;
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            return Ok(Node {
                span: Some(start..end.max(start)),
                kind: inner.kind,
            });
        }
        let mut entries = vec![(first, map.next_value::<Node>()?)];
        while let Some((k, v)) = map.next_entry::<String, Node>()? {
            entries.push((k, v));
        }
        Ok(Node {
            span: None,
            kind: Kind::Table(entries),
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            items.push(n);
        }
        Ok(Node {
            span: None,
            kind: Kind::Array(items),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "# comment\n\
[sip]\n\
listen = [\"udp:1\", \"tcp:2\"]\n\
t1_ms = 500\n\
\n\
[[agents]]\n\
id = \"1\"\n\
\n\
[[agents]]\n\
id = \"2\"\n\
skills = [\"a\", \"b\"]\n\
[transfer.prefixes]\n\
success = \"*1\"\n";

    fn line(path: &str) -> usize {
        let tree = Node::parse(DOC).unwrap();
        line_of(DOC, tree.offset_of(path))
    }

    #[test]
    fn lines_of_present_values() {
        assert_eq!(line("sip"), 2);
        assert_eq!(line("sip.listen[1]"), 3);
        assert_eq!(line("sip.t1_ms"), 4);
        assert_eq!(line("agents[0].id"), 7);
        assert_eq!(line("agents[1]"), 9);
        assert_eq!(line("agents[1].skills[1]"), 11);
        // `transfer` is an implicit table without a span of its own.
        assert_eq!(line("transfer.prefixes.success"), 13);
    }

    #[test]
    fn absent_values_fall_back_to_their_table() {
        assert_eq!(line("sip.t2_ms"), 2);
        assert_eq!(line("agents[1].password"), 9);
        assert_eq!(line("agents[7].password"), 6);
        assert_eq!(line("cdr.path"), 1);
    }

    #[test]
    fn path_at_offsets() {
        let tree = Node::parse(DOC).unwrap();
        let at = |needle: &str| tree.path_at(DOC.find(needle).unwrap());
        assert_eq!(at("500"), "sip.t1_ms");
        assert_eq!(at("\"tcp:2\""), "sip.listen[1]");
        assert_eq!(at("\"b\""), "agents[1].skills[1]");
        assert_eq!(at("\"*1\""), "transfer.prefixes.success");
        // A key (not a value) resolves to its table.
        assert_eq!(at("t1_ms"), "sip");
        assert_eq!(at("# comment"), "");
    }

    #[test]
    fn path_segments() {
        assert_eq!(
            segments("agents[1].skills[0]"),
            vec![
                Seg::Key("agents"),
                Seg::Index(1),
                Seg::Key("skills"),
                Seg::Index(0)
            ]
        );
        assert_eq!(segments(""), vec![]);
    }

    #[test]
    fn line_of_counts_newlines() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 999), 3);
    }
}
