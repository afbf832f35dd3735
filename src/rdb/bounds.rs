//! Bounds-checked reads shared by the blob walkers (ziplist, listpack, zipmap).
//!
//! Every walker knows where its blob's end byte is; an element must end at or before it.
//! These return `None` instead of slicing past it, so a hostile length can never index
//! out of bounds.

/// `blob[at..at + n]` if it ends at or before `end` (the end byte's position).
#[inline(always)]
pub(super) fn slice(blob: &[u8], at: usize, n: usize, end: usize) -> Option<&[u8]> {
    if n > end.checked_sub(at)? {
        return None;
    }
    blob.get(at..at + n)
}

/// `N` bytes at `at`, ending at or before `end`.
#[inline(always)]
pub(super) fn array<const N: usize>(blob: &[u8], at: usize, end: usize) -> Option<[u8; N]> {
    slice(blob, at, N, end)?.try_into().ok()
}

/// An element whose declared length `n` at `at` runs past the end byte at `end`.
#[cold]
pub(super) fn too_long(
    enc: &'static str,
    what: &str,
    at: usize,
    n: usize,
    end: usize,
) -> super::EncodingError {
    let left = end.saturating_sub(at);
    super::EncodingError::new(enc, at, format!("{what} {n} exceeds the {left} bytes left"))
}
