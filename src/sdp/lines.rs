//! Line splitting shared by the inspector and the editor.
//!
//! RFC 8866 §5 ends every line with CRLF but tells parsers to accept a bare LF too, so a
//! line ends at LF and a CR just before it belongs to the terminator. The terminator is kept
//! apart from the content so that the editor can copy it back unchanged.

use memchr::memchr;

/// One line of an SDP body: `content` excludes the terminator, `term` is `b"\r\n"`, `b"\n"`
/// or empty (last line without a line end). `start` is the offset of the line in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Line<'a> {
    pub(crate) start: usize,
    pub(crate) content: &'a [u8],
    pub(crate) term: &'a [u8],
}

impl<'a> Line<'a> {
    /// Offset just past the terminator.
    pub(crate) fn end(&self) -> usize {
        self.start + self.content.len() + self.term.len()
    }

    /// The type letter and the value of a `<type>=<value>` line.
    pub(crate) fn kind(&self) -> Option<(u8, &'a [u8])> {
        match self.content {
            [t, b'=', rest @ ..] => Some((*t, rest)),
            _ => None,
        }
    }

    /// True for an `m=` line.
    pub(crate) fn is_media(&self) -> bool {
        self.content.starts_with(b"m=")
    }
}

/// Iterator over the lines of a body; never yields a line past the end of the input.
pub(crate) struct Lines<'a> {
    buf: &'a [u8],
    pos: usize,
}

pub(crate) fn lines(buf: &[u8]) -> Lines<'_> {
    Lines { buf, pos: 0 }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        let rest = self.buf.get(self.pos..)?;
        if rest.is_empty() {
            return None;
        }
        let start = self.pos;
        let (line, term_len) = match memchr(b'\n', rest) {
            Some(lf) => {
                let with_lf = rest.get(..=lf)?;
                match with_lf.get(..lf) {
                    Some([head @ .., b'\r']) => (head, 2),
                    Some(head) => (head, 1),
                    None => return None,
                }
            }
            None => (rest, 0),
        };
        let content_end = start + line.len();
        let term = self.buf.get(content_end..content_end + term_len)?;
        self.pos = content_end + term_len;
        Some(Line {
            start,
            content: line,
            term,
        })
    }
}

/// The line terminator a body uses, judged by its first line; CRLF when it has none.
pub(crate) fn terminator(buf: &[u8]) -> &'static [u8] {
    match lines(buf).next().map(|l| l.term) {
        Some(b"\n") => b"\n",
        _ => b"\r\n",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_crlf_lf_and_unterminated_last_line() {
        let body = b"v=0\r\no=x\ns=-";
        let got: Vec<_> = lines(body).map(|l| (l.start, l.content, l.term)).collect();
        assert_eq!(
            got,
            vec![
                (0, &b"v=0"[..], &b"\r\n"[..]),
                (5, &b"o=x"[..], &b"\n"[..]),
                (9, &b"s=-"[..], &b""[..]),
            ]
        );
        let total: usize = lines(body).map(|l| l.end() - l.start).sum();
        assert_eq!(total, body.len());
    }

    #[test]
    fn empty_lines_and_lone_cr() {
        let body = b"\r\n\n\ra=x\r\n";
        let got: Vec<_> = lines(body).map(|l| l.content).collect();
        assert_eq!(got, vec![&b""[..], &b""[..], &b"\ra=x"[..]]);
        assert_eq!(terminator(b"v=0\nx"), b"\n");
        assert_eq!(terminator(b"v=0\r\n"), b"\r\n");
        assert_eq!(terminator(b"v=0"), b"\r\n");
    }
}
