//! The chart of a plan's last runs: plain SVG rendered on the server.

use super::*;

/// A chart of a plan's runs: bars of duration (left scale) and a line of bytes added
/// (right scale), over time; every point has a tooltip. Plain SVG, no script.
pub fn chart_svg(plan: &str, points: &[ChartPoint]) -> String {
    const W: f64 = 640.0;
    const H: f64 = 180.0;
    const L: f64 = 56.0; // left margin (duration labels)
    const R: f64 = 88.0; // right margin (bytes labels such as "1023.999 MiB")
    const T: f64 = 14.0;
    const B: f64 = 26.0;
    let id = esc(plan);
    let mut s = format!(
        r#"<svg id="chart-{id}" class="chart" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="duration and bytes added of {id}'s last runs" xmlns="http://www.w3.org/2000/svg"><title>{id}: duration (bars) and bytes added (line) per run</title>"#
    );
    let (pw, ph) = (W - L - R, H - T - B);
    let _ = write!(
        s,
        r##"<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="none" stroke="#8888" stroke-width="1"/>"##
    );
    if points.is_empty() {
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" text-anchor="middle" font-size="12" fill="currentColor">no finished runs yet</text></svg>"##,
            L + pw / 2.0,
            T + ph / 2.0
        );
        return s;
    }
    let t0 = points.first().map(|p| p.started).unwrap_or(0.0);
    let t1 = points.last().map(|p| p.started).unwrap_or(t0);
    let span = (t1 - t0).max(1.0);
    let n = points.len() as f64;
    let bar_w = (pw / n * 0.6).clamp(2.0, 24.0);
    let x = |p: &ChartPoint| {
        if points.len() == 1 {
            L + pw / 2.0
        } else {
            L + bar_w / 2.0 + (p.started - t0) / span * (pw - bar_w)
        }
    };
    let max_d = points
        .iter()
        .map(|p| p.duration)
        .fold(0.0f64, f64::max)
        .max(0.1);
    let max_b = points
        .iter()
        .filter_map(|p| p.bytes_added)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    // Bars: duration.
    for p in points {
        let h = p.duration / max_d * ph;
        let class = result_class(p.result);
        let _ = write!(
            s,
            r##"<rect class="bar-{class}" x="{:.1}" y="{:.1}" width="{bar_w:.1}" height="{:.1}" fill="{}" opacity="0.7"><title>run {} · {} · {}{}</title></rect>"##,
            x(p) - bar_w / 2.0,
            T + ph - h,
            h.max(1.0),
            if p.result.ok() { "#4a90d9" } else { "#d9534f" },
            p.run_id,
            DateTime::<Utc>::from_timestamp(p.started as i64, 0)
                .map(|d| d.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_default(),
            duration(p.duration),
            p.bytes_added
                .map(|b| format!(" · {} added", bytes(b)))
                .unwrap_or_default(),
        );
    }
    // Line: bytes added.
    let pts: Vec<(f64, f64, &ChartPoint)> = points
        .iter()
        .filter_map(|p| {
            let b = p.bytes_added? as f64;
            Some((x(p), T + ph - b / max_b * ph, p))
        })
        .collect();
    if pts.len() > 1 {
        let path: Vec<String> = pts
            .iter()
            .map(|(x, y, _)| format!("{x:.1},{y:.1}"))
            .collect();
        let _ = write!(
            s,
            r##"<polyline class="added" points="{}" fill="none" stroke="#e08a00" stroke-width="2"/>"##,
            path.join(" ")
        );
    }
    for (x, y, p) in &pts {
        let _ = write!(
            s,
            r##"<circle class="added" cx="{x:.1}" cy="{y:.1}" r="3" fill="#e08a00"><title>run {} · {} added</title></circle>"##,
            p.run_id,
            bytes(p.bytes_added.unwrap_or(0))
        );
    }
    // Scales and dates.
    let date = |t: f64| {
        DateTime::<Utc>::from_timestamp(t as i64, 0)
            .map(|d| d.with_timezone(&Local).format("%m-%d %H:%M").to_string())
            .unwrap_or_default()
    };
    let _ = write!(
        s,
        r##"<g font-size="11" fill="currentColor"><text x="{lx}" y="{ty}" text-anchor="end">{md}</text><text x="{lx}" y="{by}" text-anchor="end">0s</text><text x="{rx}" y="{ty}">{mb}</text><text x="{rx}" y="{by}">0 B</text><text x="{L}" y="{dy}">{d0}</text><text x="{ex}" y="{dy}" text-anchor="end">{d1}</text><text x="{cx}" y="{dy}" text-anchor="middle"><tspan fill="#4a90d9">■ duration</tspan> <tspan fill="#e08a00">● added</tspan></text></g></svg>"##,
        lx = L - 4.0,
        rx = W - R + 4.0,
        ty = T + 10.0,
        by = T + ph,
        dy = H - 8.0,
        ex = W - R,
        cx = L + pw / 2.0,
        md = duration(max_d),
        mb = esc(&bytes(max_b as u64)),
        d0 = date(t0),
        d1 = date(t1),
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(id: i64, started: f64, duration: f64, bytes: u64, ok: bool) -> ChartPoint {
        ChartPoint {
            run_id: id,
            started,
            duration,
            bytes_added: Some(bytes),
            result: if ok {
                Outcome::Success
            } else {
                Outcome::Failure
            },
        }
    }

    #[test]
    fn the_chart_has_a_bar_per_run_scaled_to_the_longest_and_a_line_of_bytes() {
        let pts = [
            point(1, 1000.0, 10.0, 100, true),
            point(2, 2000.0, 40.0, 400, false),
            point(3, 3000.0, 20.0, 200, true),
        ];
        let svg = chart_svg("home<&>", &pts);
        assert!(
            svg.starts_with(r#"<svg id="chart-home&lt;&amp;&gt;""#),
            "{svg}"
        );
        assert!(svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<rect class=\"bar-").count(), 3);
        assert_eq!(svg.matches("<circle class=\"added\"").count(), 3);
        assert!(svg.contains("<polyline class=\"added\""));
        assert!(svg.contains("bar-failed"), "the failed run is marked");
        // The longest bar spans the plot's height (180 - 14 - 26 = 140).
        assert!(svg.contains(r#"height="140.0""#), "{svg}");
        assert!(svg.contains(r#"height="35.0""#), "10s of 40s is a quarter");
        assert!(!svg.contains("home<&>"), "names are escaped");
        let empty = chart_svg("x", &[]);
        assert!(empty.contains("no finished runs yet"));
    }

    #[test]
    fn the_right_hand_scale_label_fits_inside_the_chart() {
        let most = 1024 * 1024 * 1024 - 1024;
        let label = bytes(most);
        assert_eq!(label, "1023.999 MiB");
        let svg = chart_svg("p", &[point(1, 1000.0, 10.0, most, true)]);
        let end = svg
            .find(&format!(">{label}</text>"))
            .expect("the label is drawn");
        let x_at = svg[..end].rfind(" x=\"").expect("the label has an x") + 4;
        let x: f64 = svg[x_at..end]
            .split('"')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("a number");
        let width: f64 = svg
            .split("width=\"")
            .nth(1)
            .and_then(|v| v.split('"').next())
            .and_then(|v| v.parse().ok())
            .expect("the svg's width");
        // 11px text: a digit or letter is at most ~0.6em wide in common sans fonts.
        let needed = label.len() as f64 * 11.0 * 0.6;
        assert!(
            x + needed <= width,
            "label at x={x} needs {needed} of {width}"
        );
    }
}
