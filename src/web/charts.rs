//! Inline SVG charts of a target's recent runs: bars (side by side or
//! stacked) and lines, one point per run, oldest left. No script: each point
//! carries a `<title>`, which the browser shows on hover. Sizes are in the
//! viewBox; the SVG scales to the width of its box, keeping its proportions.

use std::fmt::Write;

use super::html::{count, esc};

/// Width and height of the viewBox.
const W: f64 = 440.0;
const H: f64 = 128.0;
/// Room for the y labels, the x labels, and breathing space.
const LEFT: f64 = 34.0;
const RIGHT: f64 = 6.0;
const TOP: f64 = 8.0;
const BOTTOM: f64 = 16.0;

/// Colours of series, in order (a target with more fields cycles them).
pub const PALETTE: [&str; 8] = [
    "#3b82f6", "#e5484d", "#22a06b", "#f59e0b", "#8b5cf6", "#14b8a6", "#ec4899", "#64748b",
];

/// How a chart draws its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// One bar per series, side by side.
    Bars,
    /// The series' bars on top of each other (for parts of one whole).
    Stacked,
    /// A line per series, with a dot per point; `None` leaves a gap.
    Lines,
}

/// One series: a value per run (`None`: the run has no such figure).
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub values: Vec<Option<f64>>,
}

/// A chart: its points are the runs, named by `points` (the hover text).
#[derive(Debug, Clone)]
pub struct Chart<'a> {
    pub title: &'a str,
    pub style: Style,
    /// Values are shares (0 to 1), shown as percentages on a fixed 0–100 % axis.
    pub percent: bool,
    /// Per point: what the hover text calls it (`run 12, full, completed`).
    pub points: &'a [String],
    /// Short labels under the first and last point.
    pub ends: (&'a str, &'a str),
    /// What the chart says when it has nothing to draw.
    pub empty: &'a str,
    pub series: Vec<Series>,
}

/// The smallest "nice" number (1, 2 or 5 × 10^k) at or above `v`.
fn nice(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|c| *c >= v - 1e-9)
        .unwrap_or(10.0 * mag)
}

fn label(v: f64, percent: bool) -> String {
    if percent {
        format!("{:.0}%", v * 100.0)
    } else if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else {
        count(v.round() as u64)
    }
}

impl Chart<'_> {
    fn n(&self) -> usize {
        self.points.len()
    }

    /// The top of the y axis.
    fn top(&self) -> f64 {
        if self.percent {
            return 1.0;
        }
        let per_point = (0..self.n()).map(|i| {
            let vals = self
                .series
                .iter()
                .filter_map(|s| s.values.get(i).copied().flatten());
            if self.style == Style::Stacked {
                vals.sum::<f64>()
            } else {
                vals.fold(0.0, f64::max)
            }
        });
        nice(per_point.fold(0.0, f64::max))
    }

    /// The whole figure: caption with legend, then the SVG.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            r#"<figure class="chart"><figcaption><span class="chart-title">{}</span>"#,
            esc(self.title)
        );
        for s in &self.series {
            let last = s.values.iter().rev().find_map(|v| *v);
            let shown = match (self.percent, last) {
                (true, Some(v)) => format!(" {}", label(v, true)),
                _ => String::new(),
            };
            let _ = write!(
                out,
                r#"<span class="key"><i style="background:{}"></i>{}{}</span>"#,
                s.color,
                esc(&s.name),
                esc(&shown)
            );
        }
        out.push_str("</figcaption>");
        if self.n() == 0
            || self
                .series
                .iter()
                .all(|s| s.values.iter().all(Option::is_none))
        {
            let _ = write!(
                out,
                r#"<div class="chart-empty">{}</div></figure>"#,
                esc(self.empty)
            );
            return out;
        }
        let _ = write!(
            out,
            r#"<svg viewBox="0 0 {W} {H}" role="img" aria-label="{}">"#,
            esc(self.title)
        );
        self.axes(&mut out);
        match self.style {
            Style::Bars | Style::Stacked => self.bars(&mut out),
            Style::Lines => self.lines(&mut out),
        }
        out.push_str("</svg></figure>");
        out
    }

    fn plot_w(&self) -> f64 {
        W - LEFT - RIGHT
    }

    fn plot_h(&self) -> f64 {
        H - TOP - BOTTOM
    }

    fn y(&self, v: f64, top: f64) -> f64 {
        TOP + self.plot_h() * (1.0 - (v / top).clamp(0.0, 1.0))
    }

    /// The slot of point `i`: its left edge and width.
    fn slot(&self, i: usize) -> (f64, f64) {
        let w = self.plot_w() / self.n() as f64;
        (LEFT + w * i as f64, w)
    }

    fn axes(&self, out: &mut String) {
        let top = self.top();
        for frac in [0.0, 0.5, 1.0] {
            let v = top * frac;
            let y = self.y(v, top);
            let _ = write!(
                out,
                r#"<line class="grid" x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}"/><text class="ylab" x="{}" y="{:.1}">{}</text>"#,
                W - RIGHT,
                LEFT - 4.0,
                y + 3.0,
                label(v, self.percent)
            );
        }
        let (first, last) = self.ends;
        let _ = write!(
            out,
            r#"<text class="xlab" x="{LEFT}" y="{}">{}</text>"#,
            H - 3.0,
            esc(first)
        );
        if self.n() > 1 {
            let _ = write!(
                out,
                r#"<text class="xlab end" x="{}" y="{}">{}</text>"#,
                W - RIGHT,
                H - 3.0,
                esc(last)
            );
        }
    }

    fn hover(&self, i: usize, s: &Series, v: f64) -> String {
        let shown = if self.percent {
            label(v, true)
        } else {
            count(v.round() as u64)
        };
        esc(&format!("{}: {} {}", self.points[i], shown, s.name))
    }

    fn bars(&self, out: &mut String) {
        let top = self.top();
        let k = self.series.len().max(1) as f64;
        for i in 0..self.n() {
            let (x0, w) = self.slot(i);
            // A few runs still look like bars, not like blocks.
            let widest = if self.style == Style::Stacked {
                18.0
            } else {
                11.0 * k
            };
            let group = (w * 0.72).min(widest);
            let gx = x0 + (w - group) / 2.0;
            let mut base = 0.0;
            for (j, s) in self.series.iter().enumerate() {
                let Some(v) = s.values.get(i).copied().flatten() else {
                    continue;
                };
                let (x, bw, from) = match self.style {
                    Style::Stacked => (gx, group, base),
                    _ => (gx + group / k * j as f64, group / k, 0.0),
                };
                let (y_top, y_bottom) = (self.y(from + v, top), self.y(from, top));
                // A zero still shows as a hairline, so a run with nothing is visible.
                let h = (y_bottom - y_top).max(if v > 0.0 { 1.0 } else { 0.5 });
                let _ = write!(
                    out,
                    r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" rx="1" fill="{}"><title>{}</title></rect>"#,
                    y_bottom - h,
                    (bw - 0.6).max(0.6),
                    s.color,
                    self.hover(i, s, v)
                );
                if self.style == Style::Stacked {
                    base += v;
                }
            }
        }
    }

    fn lines(&self, out: &mut String) {
        let top = self.top();
        for s in &self.series {
            let mut path = String::new();
            let mut pen_down = false;
            for i in 0..self.n() {
                let (x0, w) = self.slot(i);
                match s.values.get(i).copied().flatten() {
                    Some(v) => {
                        let _ = write!(
                            path,
                            "{}{:.1},{:.1} ",
                            if pen_down { "L" } else { "M" },
                            x0 + w / 2.0,
                            self.y(v, top)
                        );
                        pen_down = true;
                    }
                    None => pen_down = false,
                }
            }
            let _ = write!(
                out,
                r#"<path d="{}" fill="none" stroke="{}" stroke-width="1.8" stroke-linejoin="round"/>"#,
                path.trim_end(),
                s.color
            );
            for i in 0..self.n() {
                let (x0, w) = self.slot(i);
                if let Some(v) = s.values.get(i).copied().flatten() {
                    let _ = write!(
                        out,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="2.4" fill="{}"><title>{}</title></circle>"#,
                        x0 + w / 2.0,
                        self.y(v, top),
                        s.color,
                        self.hover(i, s, v)
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart<'a>(points: &'a [String], style: Style, values: Vec<Option<f64>>) -> Chart<'a> {
        Chart {
            title: "Pages",
            style,
            percent: false,
            points,
            ends: ("run 1", "run 3"),
            empty: "no data yet",
            series: vec![Series {
                name: "fetched <b>".into(),
                color: PALETTE[0],
                values,
            }],
        }
    }

    #[test]
    fn axes_end_at_a_nice_number() {
        assert_eq!(nice(0.0), 1.0);
        assert_eq!(nice(7.0), 10.0);
        assert_eq!(nice(12.0), 20.0);
        assert_eq!(nice(20.0), 20.0);
        assert_eq!(nice(430.0), 500.0);
    }

    #[test]
    fn bars_and_lines_draw_one_mark_per_point_and_escape_names() {
        let points: Vec<String> = (1..=3).map(|i| format!("run {i}")).collect();
        let bars = chart(&points, Style::Bars, vec![Some(4.0), Some(0.0), Some(9.0)]).render();
        assert_eq!(bars.matches("<rect").count(), 3);
        assert!(bars.contains("fetched &lt;b&gt;") && !bars.contains("<b>"));
        let lines = chart(&points, Style::Lines, vec![Some(4.0), None, Some(9.0)]).render();
        assert_eq!(lines.matches("<circle").count(), 2);
        // The gap: two sub-paths, each starting with M.
        assert_eq!(lines.matches('M').count(), 2);
        let empty = chart(&[], Style::Lines, vec![]).render();
        assert!(empty.contains("no data yet") && !empty.contains("<svg"));
    }
}
