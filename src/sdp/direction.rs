//! Media direction attributes (RFC 3264 §5.1, §6.1; RFC 8866 §6.7).

use std::fmt;

/// The direction of a media stream as seen by the side that wrote the SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// `a=sendrecv`, also the default when no direction attribute is present.
    #[default]
    SendRecv,
    /// `a=sendonly`: what a UA offers to put the peer on hold.
    SendOnly,
    /// `a=recvonly`: the answer to a `sendonly` offer.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

impl Direction {
    /// The attribute name, without `a=`.
    pub const fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Parses an attribute value (the bytes after `a=`); trailing blanks are tolerated.
    /// Attribute names are case-sensitive (RFC 8866 §5.13).
    pub fn from_attribute(value: &[u8]) -> Option<Direction> {
        match value.trim_ascii_end() {
            b"sendrecv" => Some(Direction::SendRecv),
            b"sendonly" => Some(Direction::SendOnly),
            b"recvonly" => Some(Direction::RecvOnly),
            b"inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    /// The direction an answerer uses to accept an offer with this direction
    /// (RFC 3264 §6.1: sendonly is answered recvonly, recvonly sendonly, the rest unchanged).
    pub const fn answer(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }

    /// True when this side sends media.
    pub const fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// True when this side receives media.
    pub const fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// The answer direction for an offered direction; see [`Direction::answer`].
pub const fn answer_direction(offer: Direction) -> Direction {
    offer.answer()
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.attribute())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Direction; 4] = [
        Direction::SendRecv,
        Direction::SendOnly,
        Direction::RecvOnly,
        Direction::Inactive,
    ];

    #[test]
    fn answers_follow_rfc3264() {
        assert_eq!(answer_direction(Direction::SendOnly), Direction::RecvOnly);
        assert_eq!(answer_direction(Direction::RecvOnly), Direction::SendOnly);
        assert_eq!(answer_direction(Direction::SendRecv), Direction::SendRecv);
        assert_eq!(answer_direction(Direction::Inactive), Direction::Inactive);
        for d in ALL {
            assert_eq!(d.answer().answer(), d);
            // What one side sends, the other receives.
            assert_eq!(d.sends(), d.answer().receives());
        }
    }

    #[test]
    fn attribute_round_trip() {
        for d in ALL {
            assert_eq!(Direction::from_attribute(d.attribute().as_bytes()), Some(d));
            assert_eq!(d.to_string(), d.attribute());
        }
        assert_eq!(
            Direction::from_attribute(b"sendonly \t"),
            Some(Direction::SendOnly)
        );
        assert_eq!(Direction::from_attribute(b"SENDONLY"), None);
        assert_eq!(Direction::from_attribute(b"sendonlyx"), None);
        assert_eq!(Direction::from_attribute(b" sendonly"), None);
    }
}
