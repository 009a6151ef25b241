//! Paging of every List RPC (AIP-158), in one place: the page size (its default and
//! maximum) and the opaque page token.
//!
//! A token is the base64url (no padding) of a small versioned binary record: a version
//! byte, a fingerprint of the request's filters, then the keys where the next page
//! starts (each a big-endian `u32` length and its UTF-8 bytes). Keyset lists put the
//! last row's sort key there; offset lists put the offset. A token handed back with other
//! filters, or not made here, is INVALID_ARGUMENT on `page_token`. Clients treat tokens
//! as opaque, so the format may change: bump [`VERSION`] and refuse the old one.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::ApiError;

/// The request field of the page size.
pub const PAGE_SIZE_FIELD: &str = "page_size";
/// The request field of the page token.
pub const PAGE_TOKEN_FIELD: &str = "page_token";
/// The version byte of the tokens made by this build.
pub const VERSION: u8 = 1;
/// The message of a token that is not a token of this list (or of these filters).
pub const BAD_TOKEN: &str = "not a token from a previous response of this list";
/// The message of a token made for other filters.
pub const OTHER_FILTERS: &str = "was made for other filters";

/// The page size limits of a List RPC (docs/api.md "Limits").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageLimits {
    /// The size of a page when the request says 0.
    pub default: u64,
    /// The largest page; larger requests are clamped to it.
    pub max: u64,
}

impl PageLimits {
    /// Most lists: 100 by default, at most 1,000.
    pub const STANDARD: Self = Self::new(100, 1000);

    /// Limits of `default` and `max` rows.
    pub const fn new(default: u64, max: u64) -> Self {
        Self { default, max }
    }

    /// The page size of a request: 0 means the default, above the maximum is the maximum,
    /// negative is INVALID_ARGUMENT on `page_size`.
    pub fn size(self, page_size: i32) -> Result<u64, ApiError> {
        match u64::try_from(page_size) {
            Err(_) => Err(ApiError::invalid(PAGE_SIZE_FIELD, "must not be negative")),
            Ok(0) => Ok(self.default),
            Ok(n) => Ok(n.min(self.max)),
        }
    }
}

/// A stable fingerprint of a request's filters (FNV-1a over the parts, each followed by
/// a byte no UTF-8 text holds), so a token is refused when the filters change.
pub fn fingerprint(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The token of the page that starts after `keys`, for a request whose filters have the
/// fingerprint `filters`.
pub fn encode(filters: u64, keys: &[&str]) -> String {
    let mut b = Vec::with_capacity(9 + keys.iter().map(|k| 4 + k.len()).sum::<usize>());
    b.push(VERSION);
    b.extend_from_slice(&filters.to_be_bytes());
    for k in keys {
        // Keys are ids and offsets, far below 4 GiB.
        b.extend_from_slice(&(k.len() as u32).to_be_bytes());
        b.extend_from_slice(k.as_bytes());
    }
    URL_SAFE_NO_PAD.encode(b)
}

/// The `N` keys of `token`, `None` for the first page (an empty token); INVALID_ARGUMENT
/// on `page_token` when it was not made by [`encode`] with `N` keys, or was made for
/// other filters than `filters`.
pub fn decode<const N: usize>(token: &str, filters: u64) -> Result<Option<[String; N]>, ApiError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || ApiError::invalid(PAGE_TOKEN_FIELD, BAD_TOKEN);
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let (head, mut rest) = bytes.split_at_checked(9).ok_or_else(bad)?;
    if head[0] != VERSION {
        return Err(bad());
    }
    let mut keys = Vec::with_capacity(N);
    while !rest.is_empty() {
        let (len, tail) = rest.split_at_checked(4).ok_or_else(bad)?;
        let len = u32::from_be_bytes(len.try_into().map_err(|_| bad())?) as usize;
        let (key, tail) = tail.split_at_checked(len).ok_or_else(bad)?;
        let key = std::str::from_utf8(key).map_err(|_| bad())?;
        // Never made by `encode` (ids hold no control character), and PostgreSQL text
        // cannot hold a NUL.
        if key.contains('\0') {
            return Err(bad());
        }
        keys.push(key.to_owned());
        rest = tail;
    }
    let keys: [String; N] = keys.try_into().map_err(|_| bad())?;
    if head[1..] != filters.to_be_bytes() {
        return Err(ApiError::invalid(PAGE_TOKEN_FIELD, OTHER_FILTERS));
    }
    Ok(Some(keys))
}

/// The offset of an offset-paged list: 0 for an empty token, else the offset in a token
/// of [`encode_offset`].
pub fn decode_offset(token: &str, filters: u64) -> Result<u64, ApiError> {
    match decode::<1>(token, filters)? {
        None => Ok(0),
        Some([o]) => o
            .parse()
            .map_err(|_| ApiError::invalid(PAGE_TOKEN_FIELD, BAD_TOKEN)),
    }
}

/// The token of the page at `offset` of an offset-paged list.
pub fn encode_offset(filters: u64, offset: u64) -> String {
    encode(filters, &[&offset.to_string()])
}

/// Keyset paging: `rows` were read with a limit of `size + 1`; keeps `size` of them and
/// returns the next page's token (made from the last row kept by `key`), or an empty
/// token when this was the last page.
pub fn next_after<T, const N: usize>(
    rows: &mut Vec<T>,
    size: u64,
    filters: u64,
    key: impl FnOnce(&T) -> [String; N],
) -> String {
    if rows.len() as u64 <= size {
        return String::new();
    }
    rows.truncate(size as usize);
    rows.last()
        .map(|r| {
            let k = key(r);
            encode(filters, &k.each_ref().map(String::as_str))
        })
        .unwrap_or_default()
}

/// A keyset-paged request, decoded: lists read from the store in key order, resuming
/// after the `N` keys of the last row of the previous page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeysetPage<const N: usize> {
    /// Rows per page.
    pub size: u64,
    /// The keys of the last row of the previous page (`None` on the first page).
    pub after: Option<[String; N]>,
    /// The fingerprint of the request's filters.
    pub filters: u64,
}

impl<const N: usize> KeysetPage<N> {
    /// The page asked for by `page_size` and `page_token` under `limits`, for a request
    /// whose filters have the fingerprint `filters`.
    pub fn decode(
        limits: PageLimits,
        page_size: i32,
        page_token: &str,
        filters: u64,
    ) -> Result<Self, ApiError> {
        Ok(Self {
            size: limits.size(page_size)?,
            after: decode::<N>(page_token, filters)?,
            filters,
        })
    }

    /// How many rows to read: one more than the page, to know whether another follows.
    pub fn limit(&self) -> u64 {
        self.size + 1
    }

    /// Keeps this page of `rows` (read with [`Self::limit`]) and returns the next page's
    /// token (empty after the last page).
    pub fn next<T>(&self, rows: &mut Vec<T>, key: impl FnOnce(&T) -> [String; N]) -> String {
        next_after(rows, self.size, self.filters, key)
    }
}

/// An offset-paged request, decoded: lists that page over rows in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetPage {
    /// Rows per page.
    pub size: u64,
    /// Rows before this page.
    pub offset: u64,
    /// The fingerprint of the request's filters.
    pub filters: u64,
}

impl OffsetPage {
    /// The page asked for by `page_size` and `page_token` under `limits`, for a request
    /// whose filters have the fingerprint `filters`.
    pub fn decode(
        limits: PageLimits,
        page_size: i32,
        page_token: &str,
        filters: u64,
    ) -> Result<Self, ApiError> {
        Ok(Self {
            size: limits.size(page_size)?,
            offset: decode_offset(page_token, filters)?,
            filters,
        })
    }

    /// This page of `items` and the next page's token (empty after the last page).
    pub fn of<T: Clone>(&self, items: &[T]) -> (Vec<T>, String) {
        let len = items.len();
        let start = usize::try_from(self.offset).unwrap_or(len).min(len);
        let end = start
            .saturating_add(usize::try_from(self.size).unwrap_or(len))
            .min(len);
        let next = if end < len {
            encode_offset(self.filters, end as u64)
        } else {
            String::new()
        };
        (items[start..end].to_vec(), next)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn msg(e: ApiError) -> String {
        e.to_string()
    }

    #[test]
    fn page_sizes() {
        let l = PageLimits::STANDARD;
        assert_eq!(l.size(0).unwrap(), 100);
        assert_eq!(l.size(7).unwrap(), 7);
        assert_eq!(l.size(5000).unwrap(), 1000);
        assert_eq!(
            msg(l.size(-1).unwrap_err()),
            "page_size: must not be negative"
        );
        assert_eq!(PageLimits::new(1000, 10_000).size(0).unwrap(), 1000);
    }

    #[test]
    fn tokens_round_trip_and_are_bound_to_their_filters() {
        let f = fingerprint(&["profiles/a", "2"]);
        let t = encode(f, &["acct\u{1f}1", ""]);
        assert!(
            t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(
            decode::<2>(&t, f).unwrap(),
            Some(["acct\u{1f}1".to_string(), String::new()])
        );
        assert_eq!(decode::<2>("", f).unwrap(), None);
        assert_eq!(
            msg(decode::<2>(&t, fingerprint(&["profiles/b", "2"])).unwrap_err()),
            "page_token: was made for other filters"
        );
        // Another list's token (another key count), garbage, another version.
        let bad = "page_token: not a token from a previous response of this list";
        assert_eq!(msg(decode::<1>(&t, f).unwrap_err()), bad);
        assert_eq!(msg(decode::<1>("zz", f).unwrap_err()), bad);
        assert_eq!(msg(decode::<1>("o100", f).unwrap_err()), bad);
        let mut v2 = URL_SAFE_NO_PAD.decode(encode(f, &["x"])).unwrap();
        v2[0] = 2;
        assert_eq!(
            msg(decode::<1>(&URL_SAFE_NO_PAD.encode(v2), f).unwrap_err()),
            bad
        );
        assert_eq!(msg(decode::<1>(&encode(f, &["a\0"]), f).unwrap_err()), bad);
    }

    #[test]
    fn offsets_and_pages() {
        let f = fingerprint(&[]);
        assert_eq!(decode_offset("", f).unwrap(), 0);
        assert_eq!(decode_offset(&encode_offset(f, 42), f).unwrap(), 42);
        assert!(decode_offset(&encode(f, &["x"]), f).is_err());
        let items: Vec<u32> = (0..5).collect();
        let limits = PageLimits::new(2, 3);
        let (p, next) = OffsetPage::decode(limits, 0, "", f).unwrap().of(&items);
        assert_eq!(p, vec![0, 1]);
        let (p, next) = OffsetPage::decode(limits, 0, &next, f).unwrap().of(&items);
        assert_eq!(p, vec![2, 3]);
        let (p, next) = OffsetPage::decode(limits, 9, &next, f).unwrap().of(&items);
        assert_eq!((p, next.as_str()), (vec![4], ""));
        let far = OffsetPage {
            size: 2,
            offset: 99,
            filters: f,
        };
        assert_eq!(far.of(&items), (vec![], String::new()));
        assert!(
            OffsetPage::decode(
                limits,
                0,
                &next_after(&mut vec![1, 2], 1, f, |_| [String::new()]),
                f
            )
            .is_err()
        );
    }

    #[test]
    fn keyset_next_token() {
        let f = fingerprint(&["x"]);
        let mut rows = vec!["a", "b", "c"];
        let t = next_after(&mut rows, 2, f, |r| [r.to_string()]);
        assert_eq!(rows, vec!["a", "b"]);
        assert_eq!(decode::<1>(&t, f).unwrap(), Some(["b".to_string()]));
        let mut rows = vec!["a", "b"];
        assert_eq!(next_after(&mut rows, 2, f, |r| [r.to_string()]), "");
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn keyset_pages() {
        let f = fingerprint(&["x"]);
        let first = KeysetPage::<1>::decode(PageLimits::new(2, 5), 0, "", f).unwrap();
        assert_eq!(
            (first.size, first.after.clone(), first.limit()),
            (2, None, 3)
        );
        let mut rows = vec!["a", "b", "c"];
        let token = first.next(&mut rows, |r| [r.to_string()]);
        let second = KeysetPage::<1>::decode(PageLimits::new(2, 5), 9, &token, f).unwrap();
        assert_eq!((second.size, second.after), (5, Some(["b".to_string()])));
    }

    proptest! {
        /// Whatever a client sends as a token, decoding answers a clear error or keys
        /// that PostgreSQL text can hold; it never panics.
        #[test]
        fn any_token_decodes_or_is_refused(token in ".{0,64}", f in any::<u64>()) {
            match decode::<2>(&token, f) {
                Ok(keys) => for k in keys.into_iter().flatten() { prop_assert!(!k.contains('\0')); },
                Err(e) => prop_assert!(e.to_string().starts_with("page_token: ")),
            }
        }

        #[test]
        fn keys_round_trip(a in "\\PC{0,20}", b in "\\PC{0,20}", f in any::<u64>()) {
            let t = encode(f, &[&a, &b]);
            prop_assert_eq!(decode::<2>(&t, f).unwrap(), Some([a, b]));
        }
    }
}
