//! Charts drawn as inline SVG by the server: a histogram of hits over time and a day's
//! sessions as bars with the opening hours shaded. No script, no external image: they print and
//! pass the pages' content security policy (attributes, not inline styles).

use std::fmt::Write;

use crate::ui::escape;

/// Bars of `counts` (each with its label for the tooltip) across `width` × `height`.
pub fn histogram(counts: &[(String, u64)], width: u32, height: u32) -> String {
    let mut out = format!(
        "<svg class=\"histogram\" viewBox=\"0 0 {width} {height}\" width=\"100%\" height=\"{height}\" role=\"img\" preserveAspectRatio=\"none\">"
    );
    let max = counts.iter().map(|c| c.1).max().unwrap_or(0).max(1);
    let n = counts.len().max(1) as f64;
    let step = f64::from(width) / n;
    for (i, (label, count)) in counts.iter().enumerate() {
        let h = (*count as f64 / max as f64) * f64::from(height - 2);
        let _ = write!(
            out,
            "<rect x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{:.2}\" fill=\"#3b6ea5\"><title>{} : {}</title></rect>",
            i as f64 * step,
            f64::from(height) - h,
            (step - 1.0).max(0.5),
            h,
            escape(label),
            count
        );
    }
    out.push_str("</svg>");
    out
}

/// One day as a line of 24 hours: `open` spans shaded, `sessions` as bars; times in minutes
/// since local midnight. Sessions outside the opening hours are drawn in the warning colour.
pub fn day_timeline(open: &[(u32, u32)], sessions: &[(u32, u32, String)]) -> String {
    const W: f64 = 960.0;
    const H: f64 = 22.0;
    let x = |m: u32| f64::from(m.min(1440)) * W / 1440.0;
    let mut out = format!(
        "<svg class=\"timeline\" viewBox=\"0 0 {W} {H}\" width=\"100%\" height=\"{H}\" role=\"img\" preserveAspectRatio=\"none\">"
    );
    let _ = write!(
        out,
        "<rect x=\"0\" y=\"0\" width=\"{W}\" height=\"{H}\" fill=\"#f3f3f3\"/>"
    );
    for (from, to) in open {
        let _ = write!(
            out,
            "<rect x=\"{:.1}\" y=\"0\" width=\"{:.1}\" height=\"{H}\" fill=\"#dcefdc\"/>",
            x(*from),
            (x(*to) - x(*from)).max(0.0)
        );
    }
    for hour in (0..=24).step_by(3) {
        let _ = write!(
            out,
            "<line x1=\"{0:.1}\" y1=\"0\" x2=\"{0:.1}\" y2=\"{H}\" stroke=\"#bbb\" stroke-width=\"0.5\"/>",
            x(hour * 60)
        );
    }
    for (from, to, label) in sessions {
        let inside = open.iter().any(|(a, b)| from >= a && to <= b);
        let _ = write!(
            out,
            "<rect x=\"{:.1}\" y=\"4\" width=\"{:.1}\" height=\"{}\" fill=\"{}\"><title>{}</title></rect>",
            x(*from),
            (x(*to) - x(*from)).max(2.0),
            H - 8.0,
            if inside { "#3b6ea5" } else { "#c0392b" },
            escape(label)
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_escape_their_labels_and_scale_to_the_largest() {
        let svg = histogram(&[("<a>".into(), 2), ("b".into(), 4)], 100, 50);
        assert!(svg.contains("&lt;a&gt;"));
        assert!(!svg.contains("<a>"));
        assert!(svg.contains("height=\"48.00\""), "{svg}");
        let day = day_timeline(
            &[(540, 1080)],
            &[(600, 660, "x".into()), (1300, 1320, "y".into())],
        );
        assert_eq!(
            day.matches("#c0392b").count(),
            1,
            "one session outside hours"
        );
    }
}
