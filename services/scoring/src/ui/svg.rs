//! Charts as SVG drawn on the server: line charts (time series, ROC, calibration) and bar
//! charts (histograms, counts). Each has a title, axes with ticks and labels, a legend,
//! and an accessible `<title>`/`<desc>`; it scales to the page's width (`viewBox`).

use chrono::{DateTime, TimeZone, Utc};
use maud::{Markup, html};

const W: f64 = 640.0;
const H: f64 = 320.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 72.0;

/// Colours of the charts (also the bands').
pub(crate) const BLUE: &str = "#1f5fbf";
pub(crate) const ORANGE: &str = "#d9730d";
pub(crate) const GREY: &str = "#8893aa";
pub(crate) const RED: &str = "#c62828";
pub(crate) const YELLOW: &str = "#b7950b";
pub(crate) const GREEN: &str = "#2e7d32";
/// Colours given to series in turn.
pub(crate) const PALETTE: [&str; 6] = [BLUE, ORANGE, GREEN, "#7b1fa2", RED, "#00838f"];

/// One axis: its label, its range and its ticks (position, text).
#[derive(Clone, Debug)]
pub(crate) struct Axis {
    pub label: String,
    pub min: f64,
    pub max: f64,
    pub ticks: Vec<(f64, String)>,
}

impl Axis {
    /// A numeric axis over `min..max` with about five round ticks.
    pub(crate) fn numeric(label: &str, min: f64, max: f64, digits: usize) -> Self {
        let (min, max) = if max > min {
            (min, max)
        } else {
            (min - 1.0, max + 1.0)
        };
        let raw = (max - min) / 5.0;
        let mag = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 2.5, 5.0, 10.0]
            .iter()
            .map(|m| m * mag)
            .find(|s| *s >= raw)
            .unwrap_or(raw);
        let mut ticks = Vec::new();
        let mut t = (min / step).ceil() * step;
        while t <= max + step * 1e-9 {
            ticks.push((t, format!("{t:.digits$}")));
            t += step;
        }
        Self {
            label: label.to_owned(),
            min,
            max,
            ticks,
        }
    }

    /// A time axis over `from..to` (x values are seconds since the epoch), ticks at up to
    /// six dates.
    pub(crate) fn time(label: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        let (mut a, mut b) = (from.timestamp() as f64, to.timestamp() as f64);
        if b <= a {
            a -= 43_200.0;
            b += 43_200.0;
        }
        let ticks = (0..6)
            .map(|k| {
                let x = a + (b - a) * f64::from(k) / 5.0;
                let t = Utc.timestamp_opt(x as i64, 0).single().unwrap_or(from);
                (x, t.format("%m-%d").to_string())
            })
            .collect();
        Self {
            label: label.to_owned(),
            min: a,
            max: b,
            ticks,
        }
    }

    fn at(&self, v: f64, lo: f64, hi: f64) -> f64 {
        let f = ((v - self.min) / (self.max - self.min)).clamp(0.0, 1.0);
        lo + f * (hi - lo)
    }
}

/// The x position of a time on a [`Axis::time`] axis.
pub(crate) fn t(at: DateTime<Utc>) -> f64 {
    at.timestamp() as f64
}

/// One line of a line chart.
#[derive(Clone, Debug)]
pub(crate) struct Series {
    pub name: String,
    pub color: &'static str,
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed (references such as the diagonal).
    pub dashed: bool,
}

/// A vertical mark on a line chart (a configuration or model change).
#[derive(Clone, Debug)]
pub(crate) struct Mark {
    pub x: f64,
    pub label: String,
}

/// The frame of a chart: `<svg>` with its accessible title and description, the title
/// drawn on top, and `content`.
fn frame(id: &str, title: &str, desc: &str, content: Markup) -> Markup {
    let tid = format!("{id}-title");
    let did = format!("{id}-desc");
    html! {
        svg.chart id=(id) xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (W) " " (H) }
            role="img" aria-labelledby={ (tid) " " (did) } {
            title id=(tid) { (title) }
            desc id=(did) { (desc) }
            text.title x=(LEFT) y="18" { (title) }
            (content)
        }
    }
}

/// Axes, grid lines, ticks and axis labels.
fn axes(x: &Axis, y: &Axis) -> Markup {
    let (x0, x1, y0, y1) = (LEFT, W - RIGHT, H - BOTTOM, TOP);
    html! {
        @for (v, label) in &y.ticks {
            @let py = y.at(*v, y0, y1);
            line.grid x1=(x0) x2=(x1) y1=(py) y2=(py) {}
            text x=(x0 - 6.0) y=(py + 4.0) text-anchor="end" { (label) }
        }
        @for (v, label) in &x.ticks {
            @let px = x.at(*v, x0, x1);
            line.axis x1=(px) x2=(px) y1=(y0) y2=(y0 + 4.0) {}
            text x=(px) y=(y0 + 17.0) text-anchor="middle" { (label) }
        }
        line.axis x1=(x0) x2=(x1) y1=(y0) y2=(y0) {}
        line.axis x1=(x0) x2=(x0) y1=(y0) y2=(y1) {}
        text x=((x0 + x1) / 2.0) y=(y0 + 34.0) text-anchor="middle" { (x.label) }
        text x="14" y=((y0 + y1) / 2.0) text-anchor="middle"
            transform={ "rotate(-90 14 " ((y0 + y1) / 2.0) ")" } { (y.label) }
    }
}

/// A legend in one row under the chart.
fn legend(items: &[(String, &'static str, bool)]) -> Markup {
    let y = H - 14.0;
    let mut x = LEFT;
    let placed: Vec<(f64, &(String, &'static str, bool))> = items
        .iter()
        .map(|it| {
            let at = x;
            x += 30.0 + 7.0 * it.0.chars().count() as f64;
            (at, it)
        })
        .collect();
    html! {
        @for (x, (name, color, dashed)) in placed {
            line x1=(x) x2=(x + 18.0) y1=(y - 4.0) y2=(y - 4.0) stroke=(color) stroke-width="3"
                stroke-dasharray=[dashed.then_some("5 4")] {}
            text x=(x + 22.0) y=(y) { (name) }
        }
    }
}

/// A line chart of `series` over the axes, with vertical `marks`. Series of one point
/// show as a dot.
pub(crate) fn line_chart(
    id: &str,
    title: &str,
    desc: &str,
    x: &Axis,
    y: &Axis,
    series: &[Series],
    marks: &[Mark],
) -> Markup {
    let (x0, x1, y0, y1) = (LEFT, W - RIGHT, H - BOTTOM, TOP);
    let items: Vec<(String, &'static str, bool)> = series
        .iter()
        .map(|s| (s.name.clone(), s.color, s.dashed))
        .chain((!marks.is_empty()).then(|| ("change".to_owned(), GREY, true)))
        .collect();
    let content = html! {
        (axes(x, y))
        @for m in marks {
            @let px = x.at(m.x, x0, x1);
            line x1=(px) x2=(px) y1=(y0) y2=(y1) stroke=(GREY) stroke-dasharray="3 3" {
                title { (m.label) }
            }
            text x=(px + 3.0) y=(y1 + 10.0) font-size="10" { (m.label) }
        }
        @for s in series {
            @let pts: Vec<String> = s.points.iter()
                .map(|(a, b)| format!("{:.1},{:.1}", x.at(*a, x0, x1), y.at(*b, y0, y1)))
                .collect();
            @if pts.len() == 1 {
                @let (a, b) = s.points[0];
                circle cx=(x.at(a, x0, x1)) cy=(y.at(b, y0, y1)) r="4" fill=(s.color) {}
            } @else if !pts.is_empty() {
                polyline points=(pts.join(" ")) fill="none" stroke=(s.color) stroke-width="2"
                    stroke-dasharray=[s.dashed.then_some("5 4")] {}
            }
        }
        (legend(&items))
    };
    frame(id, title, desc, content)
}

/// One bar of a bar chart; a bar with `href` links there.
#[derive(Clone, Debug)]
pub(crate) struct Bar {
    pub label: String,
    pub value: f64,
    pub color: &'static str,
    pub href: Option<String>,
}

/// A bar chart of `bars` from zero, labelled under each bar, with the value on top.
pub(crate) fn bar_chart(
    id: &str,
    title: &str,
    desc: &str,
    x_label: &str,
    y_label: &str,
    bars: &[Bar],
) -> Markup {
    let (x0, x1, y0, y1) = (LEFT, W - RIGHT, H - BOTTOM, TOP);
    let top = bars.iter().map(|b| b.value).fold(0.0, f64::max).max(1.0);
    let y = Axis::numeric(y_label, 0.0, top * 1.1, 0);
    let x = Axis {
        label: x_label.to_owned(),
        min: 0.0,
        max: 1.0,
        ticks: Vec::new(),
    };
    let slot = (x1 - x0) / bars.len().max(1) as f64;
    let content = html! {
        (axes(&x, &y))
        @for (i, b) in bars.iter().enumerate() {
            @let bx = x0 + slot * i as f64 + slot * 0.12;
            @let by = y.at(b.value, y0, y1);
            @let rect = html! {
                rect x=(bx) y=(by) width=(slot * 0.76) height=((y0 - by).max(0.0)) fill=(b.color) {
                    title { (b.label) ": " (b.value) }
                }
            };
            @if let Some(href) = &b.href {
                a href=(href) { (rect) }
            } @else {
                (rect)
            }
            text x=(bx + slot * 0.38) y=(by - 4.0) text-anchor="middle" font-size="11" { (b.value) }
            text x=(bx + slot * 0.38) y=(y0 + 17.0) text-anchor="middle" { (b.label) }
        }
    };
    frame(id, title, desc, content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_axes_have_round_ticks_inside_the_range() {
        let a = Axis::numeric("score", 0.0, 10.0, 0);
        let ticks: Vec<&str> = a.ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(ticks, ["0", "2", "4", "6", "8", "10"]);
        let b = Axis::numeric("p", 0.0, 1.0, 1);
        assert_eq!(b.ticks.first().map(|t| t.0), Some(0.0));
        assert!(b.ticks.iter().all(|t| t.0 >= 0.0 && t.0 <= 1.0 + 1e-9));
        // An empty range still draws.
        let c = Axis::numeric("n", 3.0, 3.0, 0);
        assert!(c.max > c.min && !c.ticks.is_empty());
    }

    #[test]
    fn charts_carry_an_accessible_title_and_escape_their_labels() {
        let x = Axis::numeric("x", 0.0, 1.0, 1);
        let s = Series {
            name: "<b>".into(),
            color: BLUE,
            points: vec![(0.0, 0.0), (1.0, 1.0)],
            dashed: false,
        };
        let svg = line_chart("c", "T <1>", "D", &x, &x, &[s], &[]).into_string();
        assert!(
            svg.contains("<title id=\"c-title\">T &lt;1&gt;</title>"),
            "{svg}"
        );
        assert!(svg.contains("<desc id=\"c-desc\">D</desc>"));
        assert!(svg.contains("<polyline"));
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b>"));
        let bars = [Bar {
            label: "0-1".into(),
            value: 3.0,
            color: RED,
            href: Some("/ui/risk?band=red".into()),
        }];
        let svg = bar_chart("h", "H", "D", "x", "y", &bars).into_string();
        assert!(svg.contains("<a href=\"/ui/risk?band=red\"><rect"), "{svg}");
    }
}
