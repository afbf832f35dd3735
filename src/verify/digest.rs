//! Order-independent digests of unordered collections (sets, hashes, sorted sets).
//!
//! Each element (member, or field and value, or member and score bits) is hashed to 64 bits;
//! the digest keeps the count and two commutative folds of those hashes (a wrapping sum and
//! a sum of a second mix), so two scans that return the same elements in any order give the
//! same digest. A SCAN may return an element twice (a table resized while we scan); that
//! changes the digest, so a mismatch is only a hint: the caller then looks for a concrete
//! differing element and reports equality when it finds none.

use std::hash::Hasher;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Digest {
    pub count: u64,
    sum: u64,
    mix: u64,
}

impl Digest {
    /// Adds one element made of `parts` (lengths are hashed too, so `("ab","c")` and
    /// `("a","bc")` differ).
    pub fn add(&mut self, parts: &[&[u8]]) {
        let h = hash(parts);
        self.count += 1;
        self.sum = self.sum.wrapping_add(h);
        // A second, independent fold: a collision must defeat both.
        let m = (h ^ (h >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        self.mix = self.mix.wrapping_add(m ^ (m >> 32));
    }
}

/// std's SipHash with fixed keys: `DefaultHasher::new()` is the same in both scans of a
/// run (its algorithm may change between Rust releases; digests are never stored).
fn hash(parts: &[&[u8]]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for p in parts {
        h.write_usize(p.len());
        h.write(p);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_independent_and_sensitive_to_content() {
        let mut a = Digest::default();
        let mut b = Digest::default();
        for x in [&b"x"[..], b"y", b"z"] {
            a.add(&[x, b"1"]);
        }
        for x in [&b"z"[..], b"x", b"y"] {
            b.add(&[x, b"1"]);
        }
        assert_eq!(a, b);
        let mut c = Digest::default();
        for x in [&b"z"[..], b"x", b"y"] {
            c.add(&[x, if x == b"y" { b"2" } else { b"1" }]);
        }
        assert_ne!(a, c);
        let (mut d, mut e) = (Digest::default(), Digest::default());
        d.add(&[b"ab", b"c"]);
        e.add(&[b"a", b"bc"]);
        assert_ne!(d, e);
    }
}
