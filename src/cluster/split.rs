//! Commands whose keys fall in several slots, split into one command per slot where the
//! result is the same.
//!
//! A cluster refuses a command whose keys hash to different slots (`CROSSSLOT`). A
//! standalone source sends such commands freely. `DEL`, `UNLINK`, `EXISTS`, `TOUCH` act
//! on each key independently, and `MSET` sets each pair independently, so one command per
//! slot with that slot's keys (in their original order) leaves the same data. `MSETNX`
//! is all-or-nothing: it is split only when the caller's policy says so (a replicated
//! `MSETNX` has already succeeded on the source, so per-slot `MSET`s give the same data
//! when the target is in step). Anything else is reported as cross-slot.

use super::slot::key_slot;

/// What to do with a command, by slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Split {
    /// Send as it is: no key (`None`), or every key in one slot.
    Whole(Option<u16>),
    /// One command per slot, in the order the slots first appear.
    PerSlot(Vec<(u16, Vec<Vec<u8>>)>),
    /// Keys in these slots, and no exact split.
    CrossSlot(Vec<u16>),
}

/// Splits `args` (with its key positions) by slot. `msetnx_as_mset`: split a cross-slot
/// `MSETNX` into `MSET`s (see the module doc).
pub fn split(args: &[&[u8]], positions: &[usize], msetnx_as_mset: bool) -> Split {
    let slots: Vec<u16> = positions.iter().map(|&p| key_slot(args[p])).collect();
    let Some(&first) = slots.first() else {
        return Split::Whole(None);
    };
    if slots.iter().all(|&s| s == first) {
        return Split::Whole(Some(first));
    }
    let name = args[0].to_ascii_uppercase();
    let mut groups: Vec<(u16, Vec<Vec<u8>>)> = Vec::new();
    let mut group = |slot: u16, head: &[u8], items: &[&[u8]]| {
        let g = match groups.iter_mut().position(|(s, _)| *s == slot) {
            Some(i) => &mut groups[i].1,
            None => {
                groups.push((slot, vec![head.to_vec()]));
                &mut groups.last_mut().expect("just pushed").1
            }
        };
        g.extend(items.iter().map(|a| a.to_vec()));
    };
    match &name[..] {
        b"DEL" | b"UNLINK" | b"EXISTS" | b"TOUCH" => {
            for (&p, &s) in positions.iter().zip(&slots) {
                group(s, args[0], &[args[p]]);
            }
        }
        b"MSET" | b"MSETNX" if name == b"MSET" || msetnx_as_mset => {
            for (&p, &s) in positions.iter().zip(&slots) {
                let Some(&value) = args.get(p + 1) else {
                    return cross(slots);
                };
                group(s, b"MSET", &[args[p], value]);
            }
        }
        _ => return cross(slots),
    }
    Split::PerSlot(groups)
}

fn cross(mut slots: Vec<u16>) -> Split {
    slots.sort_unstable();
    slots.dedup();
    Split::CrossSlot(slots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<&[u8]> {
        s.split(' ').map(str::as_bytes).collect()
    }

    #[test]
    fn splits_per_slot_where_the_result_is_the_same() {
        // foo → 12182, bar → 5061, {foo}x → 12182.
        let a = args("DEL foo bar {foo}x");
        assert_eq!(
            split(&a, &[1, 2, 3], false),
            Split::PerSlot(vec![
                (
                    12182,
                    vec![b"DEL".to_vec(), b"foo".to_vec(), b"{foo}x".to_vec()]
                ),
                (5061, vec![b"DEL".to_vec(), b"bar".to_vec()]),
            ])
        );
        let a = args("unlink foo {foo}y");
        assert_eq!(split(&a, &[1, 2], false), Split::Whole(Some(12182)));
        let a = args("MSET foo 1 bar 2 {foo}z 3");
        assert_eq!(
            split(&a, &[1, 3, 5], false),
            Split::PerSlot(vec![
                (
                    12182,
                    ["MSET", "foo", "1", "{foo}z", "3"]
                        .map(|s| s.as_bytes().to_vec())
                        .to_vec()
                ),
                (
                    5061,
                    ["MSET", "bar", "2"].map(|s| s.as_bytes().to_vec()).to_vec()
                ),
            ])
        );
        let a = args("MSETNX foo 1 bar 2");
        assert_eq!(
            split(&a, &[1, 3], false),
            Split::CrossSlot(vec![5061, 12182])
        );
        assert!(matches!(split(&a, &[1, 3], true), Split::PerSlot(v) if v.len() == 2));
        let a = args("MSETNX foo 1 {foo}b 2");
        assert_eq!(split(&a, &[1, 3], false), Split::Whole(Some(12182)));
        let a = args("RENAME foo bar");
        assert_eq!(
            split(&a, &[1, 2], false),
            Split::CrossSlot(vec![5061, 12182])
        );
        assert_eq!(split(&args("FLUSHALL"), &[], false), Split::Whole(None));
        for c in ["EXISTS foo bar", "TOUCH foo bar"] {
            assert!(matches!(split(&args(c), &[1, 2], false), Split::PerSlot(v) if v.len() == 2));
        }
    }
}
