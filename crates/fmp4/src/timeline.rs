//! The DASH `SegmentTimeline` of a run of segments (ISO/IEC 23009-1 5.3.9.6), shared by the
//! live manifests and the recordings' DVR manifests so both compress alike.

use std::fmt::Write;

/// Writes one `<S>` per run of segments that each start where the one before ended and last
/// as long (`r` counts the repeats). `t` is written where a run does not start where the
/// previous one (or `next_t`, the end of what was written before) ended. `segments` are
/// `(start, duration)` in the representation's timescale; `indent` goes before each `<S`.
pub fn write_segment_timeline(
    out: &mut String,
    indent: &str,
    segments: impl IntoIterator<Item = (u64, u64)>,
    mut next_t: Option<u64>,
) {
    // (t, d, r, explicit t)
    let mut run: Option<(u64, u64, u64, bool)> = None;
    let flush = |run: Option<(u64, u64, u64, bool)>, out: &mut String| {
        if let Some((t, d, r, explicit_t)) = run {
            out.push_str(indent);
            out.push_str("<S");
            if explicit_t {
                let _ = write!(out, " t=\"{t}\"");
            }
            let _ = write!(out, " d=\"{d}\"");
            if r > 0 {
                let _ = write!(out, " r=\"{r}\"");
            }
            out.push_str("/>\n");
        }
    };
    for (t, d) in segments {
        let contiguous = next_t == Some(t);
        match run {
            Some((_, run_d, ref mut r, _)) if contiguous && run_d == d => *r += 1,
            _ => {
                flush(run, out);
                run = Some((t, d, 0, !contiguous));
            }
        }
        next_t = t.checked_add(d);
    }
    flush(run, out);
}

#[cfg(test)]
mod timeline_tests {
    use super::write_segment_timeline;

    fn timeline(segments: &[(u64, u64)], next_t: Option<u64>) -> String {
        let mut out = String::new();
        write_segment_timeline(&mut out, "  ", segments.iter().copied(), next_t);
        out
    }

    #[test]
    fn runs_of_equal_contiguous_segments_share_an_s() {
        assert_eq!(
            timeline(&[(100, 10), (110, 10), (120, 10), (130, 5)], None),
            "  <S t=\"100\" d=\"10\" r=\"2\"/>\n  <S d=\"5\"/>\n"
        );
        // A gap starts a new run with its own `t`.
        assert_eq!(
            timeline(&[(0, 10), (10, 10), (25, 10)], None),
            "  <S t=\"0\" d=\"10\" r=\"1\"/>\n  <S t=\"25\" d=\"10\"/>\n"
        );
        // Continuing what was written before: no `t`.
        assert_eq!(timeline(&[(50, 10)], Some(50)), "  <S d=\"10\"/>\n");
        assert_eq!(timeline(&[], None), "");
    }
}
