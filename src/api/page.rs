//! Page tokens: opaque to clients, base64 of a small JSON record holding the
//! position to continue after and a fingerprint of the request's filters, so
//! that a token reused with other filters is refused instead of misread.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::engine::{Error, RankCursor, Result};

/// Default and maximum page sizes of list calls.
pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const MAX_PAGE_SIZE: usize = 1000;

/// Longest key a token continues after: item keys (a 64-character source
/// id, "/" and a 256-character external id) and link keys (an item key and
/// a hypothesis id) fit with room to spare.
const MAX_TOKEN_KEY: usize = 1024;
/// Highest rank a token may carry; the engine also refuses a rank beyond
/// the number of items.
const MAX_RANK: u32 = i32::MAX as u32;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct PageToken {
    /// Fingerprint of the filters the first page was asked with.
    pub q: String,
    /// Key of the last item returned.
    pub k: String,
    /// Ranking only: bits of the last returned item's ranking number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v: Option<u64>,
    /// Ranking only: rank of the last returned item.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub r: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The first 16 bytes of the fingerprint's SHA-256, in hex.
fn digest(fingerprint: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(fingerprint.as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl PageToken {
    /// The token as sent: the filters' fingerprint as a digest, so that a
    /// token (kept in a client's logs or a URL) does not carry the filters
    /// themselves (a customer's id, for one).
    pub fn encode(&self) -> String {
        let sent = PageToken {
            q: digest(&self.q),
            ..self.clone()
        };
        let json = serde_json::to_vec(&sent)
            .unwrap_or_else(|e| unreachable!("plain record serializes: {e}"));
        URL_SAFE_NO_PAD.encode(json)
    }

    /// Decodes `token` (empty means first page) and checks it was made for
    /// the same filters.
    pub fn decode(token: &str, fingerprint: &str) -> Result<Option<PageToken>> {
        if token.is_empty() {
            return Ok(None);
        }
        let bad = || {
            Error::invalid(
                "page_token",
                "not a page token from this call; start again without one",
            )
        };
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
        let mut t: PageToken = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        // Every field as this server writes it: a key no longer than keys
        // are, a finite ranking number, a rank a ranking can hold (the
        // engine also checks it against the ranking's length).
        if t.k.len() > MAX_TOKEN_KEY
            || t.v.is_some_and(|bits| !f64::from_bits(bits).is_finite())
            || t.r > MAX_RANK
        {
            return Err(bad());
        }
        if t.q != digest(fingerprint) {
            return Err(Error::invalid(
                "page_token",
                "the token was made for other filters; keep them unchanged between pages",
            ));
        }
        t.q = fingerprint.to_string();
        Ok(Some(t))
    }
}

impl PageToken {
    /// The token of a ranking page that continues at `cursor`.
    pub fn for_ranking(fingerprint: String, cursor: RankCursor) -> Self {
        PageToken {
            q: fingerprint,
            k: cursor.item_key,
            v: Some(cursor.ranking_number.to_bits()),
            r: cursor.rank,
        }
    }

    /// Where the ranking page this token was made for continues.
    pub fn rank_cursor(self) -> Result<RankCursor> {
        let bits = self
            .v
            .ok_or_else(|| Error::invalid("page_token", "not a ranking page token"))?;
        Ok(RankCursor {
            ranking_number: f64::from_bits(bits),
            item_key: self.k,
            rank: self.r,
        })
    }
}

/// Validates a requested page size: 0 means the default, larger than the
/// maximum is lowered to it, negative is an error.
pub fn page_size(requested: i32, default: usize, max: usize) -> Result<usize> {
    match requested {
        n if n < 0 => Err(Error::invalid("page_size", "must not be negative")),
        0 => Ok(default),
        n => Ok((n as usize).min(max)),
    }
}

/// Takes one page: `fetch(after, limit)` returns the entries whose key is
/// greater than `after` in key order, at most `limit` (the engine's list
/// queries); this asks for one more than `size` to know whether a next page
/// follows, and makes its token.
pub fn paginate<T>(
    fetch: impl FnOnce(Option<&str>, usize) -> Vec<T>,
    key: impl Fn(&T) -> String,
    token: Option<PageToken>,
    fingerprint: &str,
    size: usize,
) -> (Vec<T>, String) {
    let after = token.map(|t| t.k);
    let mut page = fetch(after.as_deref(), size + 1);
    let next = if page.len() > size {
        page.truncate(size);
        page.last()
            .map(|last| {
                PageToken {
                    q: fingerprint.to_string(),
                    k: key(last),
                    ..Default::default()
                }
                .encode()
            })
            .unwrap_or_default()
    } else {
        String::new()
    };
    (page, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_carries_a_digest_of_its_filters_not_the_filters() {
        let fingerprint = "ListInsights|\"\"|\"\"|\"acme-co\"|\"\"";
        let t = PageToken {
            q: fingerprint.into(),
            k: "zendesk/4711".into(),
            ..Default::default()
        };
        let sent = t.encode();
        let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(&sent).unwrap()).unwrap();
        assert!(!raw.contains("acme-co"), "{raw}");
        let back = PageToken::decode(&sent, fingerprint).unwrap().unwrap();
        assert_eq!(back, t);
        assert_eq!(back.encode(), sent, "a decoded token encodes the same");
        assert!(PageToken::decode(&sent, "ListInsights|other").is_err());
    }

    #[test]
    fn tokens_round_trip_and_refuse_other_filters() {
        let t = PageToken {
            q: "src=web".into(),
            k: "web/9".into(),
            v: Some(42),
            r: 7,
        };
        let s = t.encode();
        assert_eq!(PageToken::decode(&s, "src=web").unwrap(), Some(t));
        assert!(PageToken::decode(&s, "src=ops").is_err());
        assert!(PageToken::decode("%%%", "").is_err());
        assert!(PageToken::decode("", "x").unwrap().is_none());
    }

    #[test]
    fn paginate_walks_every_entry_once() {
        let keys: Vec<String> = (0..25).map(|i| format!("k{i:02}")).collect();
        let mut seen = Vec::new();
        let mut token = None;
        loop {
            let fetch = |after: Option<&str>, n: usize| {
                keys.iter()
                    .filter(|k| after.is_none_or(|a| k.as_str() > a))
                    .take(n)
                    .cloned()
                    .collect()
            };
            let (page, next) = paginate(fetch, |k: &String| k.clone(), token, "", 10);
            seen.extend(page);
            if next.is_empty() {
                break;
            }
            token = PageToken::decode(&next, "").unwrap();
        }
        assert_eq!(seen, keys);
    }

    #[test]
    fn page_size_rules() {
        assert_eq!(page_size(0, 100, 1000).unwrap(), 100);
        assert_eq!(page_size(5000, 100, 1000).unwrap(), 1000);
        assert!(page_size(-1, 100, 1000).is_err());
    }
}
