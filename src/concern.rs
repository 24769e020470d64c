//! The write concern of a client write: how many replicas must hold it
//! before it is acknowledged (the `W` of a request, see the README).

/// How many replicas must hold a write before it is acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WriteConcern {
    /// The replica that took it (the default).
    #[default]
    One,
    /// At least this many members, that replica included.
    Count(usize),
    /// More than half the members of the view.
    Majority,
    /// Every member of the view.
    All,
}

impl WriteConcern {
    /// The concern named `text`: a positive number, `majority` or `all`.
    pub fn parse(text: &str) -> Option<WriteConcern> {
        match text.trim().to_ascii_lowercase().as_str() {
            "majority" => Some(WriteConcern::Majority),
            "all" => Some(WriteConcern::All),
            number => match number.parse::<usize>() {
                Ok(1) => Some(WriteConcern::One),
                Ok(n) if n > 1 => Some(WriteConcern::Count(n)),
                _ => None,
            },
        }
    }

    /// How many of `members` replicas must hold the write.
    pub fn needed(self, members: usize) -> usize {
        match self {
            WriteConcern::One => 1,
            WriteConcern::Count(n) => n,
            WriteConcern::Majority => members / 2 + 1,
            WriteConcern::All => members,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::WriteConcern;

    #[test]
    fn write_concerns_parse_and_count_members() {
        assert_eq!(WriteConcern::parse("1"), Some(WriteConcern::One));
        assert_eq!(
            WriteConcern::parse(" Majority "),
            Some(WriteConcern::Majority)
        );
        assert_eq!(WriteConcern::parse("all"), Some(WriteConcern::All));
        assert_eq!(WriteConcern::parse("3"), Some(WriteConcern::Count(3)));
        for bad in ["0", "-1", "", "most", "2.5"] {
            assert_eq!(WriteConcern::parse(bad), None, "{bad:?}");
        }
        let needed = |c: WriteConcern| [1, 2, 3, 4, 5].map(|n| c.needed(n));
        assert_eq!(needed(WriteConcern::One), [1, 1, 1, 1, 1]);
        assert_eq!(needed(WriteConcern::Majority), [1, 2, 2, 3, 3]);
        assert_eq!(needed(WriteConcern::All), [1, 2, 3, 4, 5]);
        assert_eq!(needed(WriteConcern::Count(2)), [2, 2, 2, 2, 2]);
    }
}
