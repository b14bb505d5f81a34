//! Charts as SVG text, drawn with plotters: per-version traffic over time and the bucket
//! distribution of a tenant list. Plain functions from data to SVG, so they are tested as
//! strings; the server renders them into the page (readable without JavaScript) and the
//! simulator redraws its chart in the browser with the same code.
//!
//! Stable is blue and solid, canary amber and dashed (readable without colour), as elsewhere.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use splitter::VersionRole;

pub const STABLE: RGBColor = RGBColor(0x1d, 0x5f, 0xd1);
pub const CANARY: RGBColor = RGBColor(0xb4, 0x53, 0x09);
const OTHERS: [RGBColor; 3] = [
    RGBColor(0x55, 0x55, 0x55),
    RGBColor(0x7c, 0x3a, 0xed),
    RGBColor(0x0f, 0x76, 0x6e),
];
const INK: RGBColor = RGBColor(0x22, 0x22, 0x22);
const MARKER: RGBColor = RGBColor(0x99, 0x1b, 0x1b);

/// What a series stands for, which fixes its colour and line style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A version's series; `nth` tells earlier versions apart (their colours cycle).
    Version { role: VersionRole, nth: usize },
    /// The configured share (a step line).
    Configured,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    pub role: Role,
    /// (minute since the Unix epoch, value); gaps are minutes without data.
    pub points: Vec<(i64, f64)>,
}

/// A time chart over whole minutes `from..=to` (UTC).
#[derive(Debug, Clone, PartialEq)]
pub struct TimeChart {
    pub title: String,
    pub y_label: String,
    /// Minutes per point: consecutive points `step` apart are joined, wider gaps stay gaps.
    pub step: i64,
    pub from: i64,
    pub to: i64,
    /// At least this high (so that an idle chart still has a scale).
    pub y_min_top: f64,
    pub series: Vec<Series>,
    /// Config changes: (minute, short label).
    pub markers: Vec<(i64, String)>,
    /// Formats a y value for the axis.
    pub percent: bool,
}

const W: u32 = 720;
const H: u32 = 280;

fn style_of(role: Role) -> (RGBColor, bool) {
    match role {
        Role::Version {
            role: VersionRole::Stable,
            ..
        } => (STABLE, false),
        Role::Version {
            role: VersionRole::Canary,
            ..
        } => (CANARY, true),
        Role::Version {
            role: VersionRole::Earlier,
            nth,
        } => (OTHERS[nth % OTHERS.len()], false),
        Role::Configured => (INK, true),
    }
}

/// `HH:MM` (UTC) of a minute since the epoch.
pub fn clock(minute: i64) -> String {
    let m = minute.rem_euclid(24 * 60);
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// Makes the SVG scale with its container while keeping its drawing size as the viewBox.
fn responsive(svg: String) -> String {
    svg.replacen(
        &format!("<svg width=\"{W}\" height=\"{H}\""),
        &format!("<svg width=\"100%\" preserveAspectRatio=\"xMinYMin meet\" focusable=\"false\" aria-hidden=\"true\" data-w=\"{W}\" data-h=\"{H}\""),
        1,
    )
}

pub fn time_chart(c: &TimeChart) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        // Drawing into a String cannot fail; a failure would only lose the picture, and the
        // numbers table next to it still holds every value.
        let _ = draw_time_chart(&root, c);
        let _ = root.present();
    }
    responsive(svg)
}

fn draw_time_chart(
    root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    c: &TimeChart,
) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    root.fill(&WHITE)?;
    let top = c
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(c.y_min_top, f64::max)
        * 1.1;
    let to = c.to.max(c.from + 1);
    let mut chart = ChartBuilder::on(root)
        .caption(&c.title, ("sans-serif", 16).into_font().color(&INK))
        .margin(8)
        .margin_right(28)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(c.from..to, 0f64..top)?;
    let percent = c.percent;
    chart
        .configure_mesh()
        .light_line_style(RGBColor(0xee, 0xee, 0xee))
        .x_labels(7)
        .y_labels(5)
        .x_label_formatter(&|m| clock(*m))
        .y_label_formatter(&|v| {
            if percent {
                format!("{:.0}%", v * 100.0)
            } else if *v >= 10.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            }
        })
        .x_desc("time (UTC)")
        .y_desc(&c.y_label)
        .label_style(("sans-serif", 12).into_font().color(&INK))
        .draw()?;
    for (minute, label) in &c.markers {
        if *minute < c.from || *minute > to {
            continue;
        }
        chart.draw_series(DashedLineSeries::new(
            [(*minute, 0.0), (*minute, top)],
            3,
            3,
            MARKER.stroke_width(1),
        ))?;
        let pos = chart.backend_coord(&(*minute, top));
        root.draw(&Text::new(
            label.clone(),
            (pos.0 + 3, pos.1 + 2),
            ("sans-serif", 11)
                .into_font()
                .color(&MARKER)
                .pos(Pos::new(HPos::Left, VPos::Top)),
        ))?;
    }
    for s in &c.series {
        let (color, dashed) = style_of(s.role);
        let stepped;
        let points = if s.role == Role::Configured {
            // A setting holds until it changes: draw steps, not slopes.
            stepped = steps(&s.points);
            &stepped
        } else {
            &s.points
        };
        let style = color.stroke_width(2);
        // Split into runs of consecutive minutes so that gaps stay gaps.
        let mut runs: Vec<Vec<(i64, f64)>> = Vec::new();
        for p in points {
            match runs.last_mut() {
                Some(run) if run.last().is_some_and(|l| p.0 - l.0 <= c.step.max(1)) => run.push(*p),
                _ => runs.push(vec![*p]),
            }
        }
        let mut first = true;
        for run in runs {
            let run = if run.len() == 1 {
                // A lone point is drawn as a short flat stroke so it is visible.
                vec![run[0], (run[0].0 + c.step.max(1), run[0].1)]
            } else {
                run
            };
            let anno = if dashed {
                chart.draw_series(DashedLineSeries::new(run, 6, 4, style))?
            } else {
                chart.draw_series(LineSeries::new(run, style))?
            };
            if first {
                anno.label(s.label.clone()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
                });
                first = false;
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(0xcc, 0xcc, 0xcc))
        .label_font(("sans-serif", 12).into_font().color(&INK))
        .draw()?;
    Ok(())
}

/// A step line through `points`: each value holds until the next point's value. Only the
/// corners and the ends are kept.
fn steps(points: &[(i64, f64)]) -> Vec<(i64, f64)> {
    let mut out: Vec<(i64, f64)> = Vec::new();
    for (i, &(m, y)) in points.iter().enumerate() {
        let last = i + 1 == points.len();
        match out.last() {
            Some(&(_, prev)) if prev != y => {
                out.push((m, prev));
                out.push((m, y));
            }
            Some(_) if !last => {}
            _ => out.push((m, y)),
        }
    }
    out
}

/// Tenants per 1 % of the bucket range (100 bars of 100 buckets); bars below `threshold`
/// (the proposed share in basis points) are canary.
pub fn bucket_chart(title: &str, bins: &[u64; 100], threshold: u16) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        let _ = draw_bucket_chart(&root, title, bins, threshold);
        let _ = root.present();
    }
    responsive(svg)
}

fn draw_bucket_chart(
    root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    title: &str,
    bins: &[u64; 100],
    threshold: u16,
) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    root.fill(&WHITE)?;
    // Headroom for the legend above the tallest bar.
    let top = (*bins.iter().max().unwrap_or(&0)).max(1) as f64 * 1.5;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 16).into_font().color(&INK))
        .margin(8)
        .margin_right(28)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0u32..10_000u32, 0f64..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(RGBColor(0xee, 0xee, 0xee))
        .x_labels(11)
        .y_labels(5)
        .x_label_formatter(&|b| format!("{}%", b / 100))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .x_desc("bucket (as a share of 0–9 999)")
        .y_desc("tenants")
        .label_style(("sans-serif", 12).into_font().color(&INK))
        .draw()?;
    let bar = |i: usize, canary: bool| {
        let (x0, x1) = (i as u32 * 100, i as u32 * 100 + 100);
        let color = if canary { CANARY } else { STABLE };
        Rectangle::new([(x0 + 8, 0.0), (x1 - 8, bins[i] as f64)], color.filled())
    };
    // A bin straddling the threshold is drawn in the colour of its majority.
    let canary_bin = |i: usize| (i as u32 * 100 + 50) < u32::from(threshold);
    chart
        .draw_series((0..100).filter(|&i| !canary_bin(i)).map(|i| bar(i, false)))?
        .label("stable")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], STABLE.filled()));
    chart
        .draw_series((0..100).filter(|&i| canary_bin(i)).map(|i| bar(i, true)))?
        .label("canary")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], CANARY.filled()));
    let t = u32::from(threshold);
    chart
        .draw_series(DashedLineSeries::new(
            [(t, 0.0), (t, top)],
            4,
            3,
            INK.stroke_width(1),
        ))?
        .label(format!("proposed share: below {t}"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], INK.stroke_width(1)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(0xcc, 0xcc, 0xcc))
        .label_font(("sans-serif", 12).into_font().color(&INK))
        .draw()?;
    Ok(())
}

/// Tenants per 1 % of the bucket range.
pub fn bucket_bins(salt: &str, tenants: &[String]) -> [u64; 100] {
    let mut bins = [0u64; 100];
    for t in tenants {
        bins[(splitter::bucket(salt, t).get() / 100) as usize] += 1;
    }
    bins
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart() -> TimeChart {
        TimeChart {
            title: "Requests per second".into(),
            y_label: "requests/s".into(),
            step: 1,
            from: 100,
            to: 160,
            y_min_top: 1.0,
            series: vec![
                Series {
                    label: "v1 (stable)".into(),
                    role: Role::Version {
                        role: VersionRole::Stable,
                        nth: 0,
                    },
                    points: (100..=160).map(|m| (m, 5.0)).collect(),
                },
                Series {
                    label: "v2 (canary)".into(),
                    role: Role::Version {
                        role: VersionRole::Canary,
                        nth: 0,
                    },
                    points: vec![(130, 1.0), (131, 2.0), (150, 3.0)],
                },
            ],
            markers: vec![(130, "share 10%".into())],
            percent: false,
        }
    }

    #[test]
    fn time_chart_has_title_axes_legend_series_and_markers() {
        let svg = time_chart(&chart());
        assert!(svg.starts_with("<svg width=\"100%\""), "{}", &svg[..80]);
        for text in [
            "Requests per second",
            "requests/s",
            "time (UTC)",
            "v1 (stable)",
            "v2 (canary)",
            "share 10%",
            "01:40",
        ] {
            assert!(svg.contains(text), "missing {text}");
        }
        // Stable solid blue, canary dashed amber, the marker dashed red.
        assert!(svg.contains("#1D5FD1"), "stable colour");
        assert!(svg.contains("#B45309"), "canary colour");
        assert!(svg.contains("#991B1B"), "marker colour");
        let empty = time_chart(&TimeChart {
            series: vec![],
            markers: vec![],
            ..chart()
        });
        assert!(!empty.contains("#B45309"));
    }

    #[test]
    fn bucket_chart_colours_bins_by_the_threshold() {
        let tenants: Vec<String> = (0..5000).map(|i| format!("t-{i}")).collect();
        let bins = bucket_bins("salt", &tenants);
        assert_eq!(bins.iter().sum::<u64>(), 5000);
        let svg = bucket_chart("Bucket distribution of 5000 tenants", &bins, 2500);
        assert!(svg.contains("Bucket distribution of 5000 tenants"));
        assert!(svg.contains("proposed share: below 2500"));
        assert!(svg.contains("tenants") && svg.contains("bucket (as a share of 0–9 999)"));
        // 25 canary bars + the legend swatch; 75 stable bars + swatch.
        assert_eq!(svg.matches("fill=\"#B45309\"").count(), 26);
        assert_eq!(svg.matches("fill=\"#1D5FD1\"").count(), 76);
    }

    #[test]
    fn a_setting_is_drawn_as_steps() {
        assert_eq!(
            steps(&[(1, 0.0), (2, 0.0), (3, 0.5), (4, 0.5)]),
            [(1, 0.0), (3, 0.0), (3, 0.5), (4, 0.5)]
        );
    }

    #[test]
    fn clock_is_utc_hours_and_minutes() {
        assert_eq!(clock(0), "00:00");
        assert_eq!(clock(24 * 60 + 61), "01:01");
    }
}
