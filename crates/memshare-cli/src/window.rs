//! Large ranges a window at a time: `cat` and `write` never map more than
//! [`WINDOW`] bytes of a segment at once, whatever its size.

/// The most bytes mapped at once: 64 MiB.
pub const WINDOW: u64 = 64 << 20;

/// The windows `(offset, len)` that cover `len` bytes from `offset`, each
/// at most [`WINDOW`] long. Nothing for `len == 0`.
pub fn windows(offset: u64, len: u64) -> impl Iterator<Item = (u64, u64)> {
    let end = offset.saturating_add(len);
    (offset..end)
        .step_by(WINDOW as usize)
        .map(move |start| (start, (end - start).min(WINDOW)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_the_range_in_windows() {
        assert_eq!(windows(5, 0).count(), 0);
        assert_eq!(windows(5, 10).collect::<Vec<_>>(), [(5, 10)]);
        assert_eq!(
            windows(1, 2 * WINDOW + 3).collect::<Vec<_>>(),
            [(1, WINDOW), (1 + WINDOW, WINDOW), (1 + 2 * WINDOW, 3)]
        );
        let big = 8u64 << 30;
        assert_eq!(windows(0, big).map(|(_, len)| len).sum::<u64>(), big);
    }
}
